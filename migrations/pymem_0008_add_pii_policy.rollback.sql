-- Drops every tenant's personal data policy: appends store text as it comes.
alter table memory.tenants drop constraint tenants_pii_policy_object;
alter table memory.tenants drop column pii_policy;
