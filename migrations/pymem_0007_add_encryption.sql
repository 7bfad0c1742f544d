-- Encryption at rest: per-tenant data keys, wrapped by a master key that
-- never enters the database (it travels in a connection's startup options).
--
-- messages and summaries gain `sealed` (pgcrypto OpenPGP ciphertext) and
-- `key_version`; a row holds either `content` or `sealed`, never both. The
-- full-text column `search` stops being generated so that append can leave it
-- empty for tenants that keep no searchable index of their text.
-- sessions.key_version marks the data key all of a session's rows are under
-- (null: plaintext), which is what online re-encryption walks.
--
-- Locks: ACCESS EXCLUSIVE on messages, summaries, sessions and tenants for the
-- catalog changes only (no rewrite; the two checks are added NOT VALID and
-- validated under SHARE UPDATE EXCLUSIVE, which lets appends run).
-- depends: pymem_0006_add_roles_and_row_security
alter table memory.tenants
    add column encryption text not null default 'none',
    add constraint tenants_encryption_known
        check (encryption in ('none', 'content', 'content_with_search'));

create table memory.tenant_keys (
    tenant_id          text not null,
    key_version        integer not null,
    wrapped_key        bytea not null,
    master_fingerprint text not null,
    created_at         timestamptz not null default now(),
    retired_at         timestamptz,
    primary key (tenant_id, key_version),
    constraint tenant_keys_version_positive check (key_version >= 1)
);
alter table memory.tenant_keys owner to pymem_owner;
alter table memory.tenant_keys enable row level security;
alter table memory.tenant_keys force row level security;

alter table memory.messages alter column search drop expression;
alter table memory.messages alter column content drop not null;
alter table memory.messages
    add column sealed bytea,
    add column key_version integer;
alter table memory.messages
    add constraint messages_content_or_sealed check ((content is null) <> (sealed is null)) not valid;
alter table memory.messages validate constraint messages_content_or_sealed;

alter table memory.summaries alter column content drop not null;
alter table memory.summaries
    add column sealed bytea,
    add column key_version integer;
alter table memory.summaries
    add constraint summaries_content_or_sealed check ((content is null) <> (sealed is null)) not valid;
alter table memory.summaries validate constraint summaries_content_or_sealed;

alter table memory.sessions add column key_version integer;
create index sessions_key_version_idx on memory.sessions (tenant_id, key_version);
