-- Forgets every tenant's retention: messages are kept until removed otherwise.
alter table memory.tenants drop constraint tenants_retention_range;
alter table memory.tenants drop column retention;
