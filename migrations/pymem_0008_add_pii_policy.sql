-- Personal data policy per tenant, applied by memory.append before a message
-- is hashed, sealed, cached, audited or stored: per kind of personal data
-- (email, phone, card, iban, ip, national_id, secret, or "default"), one of
-- off, redact, mask, block, tag. '{}' (the default) leaves text as it comes.
-- Locks: ACCESS EXCLUSIVE on memory.tenants for the catalog change only.
-- depends: pymem_0007_add_encryption
alter table memory.tenants
    add column pii_policy jsonb not null default '{}'::jsonb,
    add constraint tenants_pii_policy_object check (jsonb_typeof(pii_policy) = 'object');
