-- The audit log: who changed what and when, hash-chained per tenant.
-- Rows hold identifiers and changed settings, never message content.

-------------------------------------------------------------------------------
-- _audit_hash: the SHA-256 that links an audit row to the previous one.
-- Stable, as the functions it calls (convert_to, to_char), and not pinned:
-- so PostgreSQL inlines it (declared immutable or pinned, it was a SQL
-- function call planned again in every transaction). The body names its
-- schemas and is bound when it was created.
create or replace function memory._audit_hash(
    prev_hash  bytea,
    tenant_id  text,
    audit_id   bigint,
    at         timestamptz,
    actor      text,
    action     text,
    object     text,
    object_key text,
    details    jsonb
)
returns bytea
language sql
stable parallel safe security invoker
return public.digest(
    prev_hash || pg_catalog.convert_to(
                     pg_catalog.concat_ws(pg_catalog.chr(31), tenant_id, audit_id::text,
                                          pg_catalog.to_char(at at time zone 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS.US'),
                                          actor, action, object, object_key, details::text),
                     'UTF8'),
    'sha256');

comment on function memory._audit_hash(bytea, text, bigint, timestamptz, text, text, text, text, jsonb) is
$$SHA-256 of the previous row's hash followed by this row's fields (UTC time,
jsonb in its canonical text form), so changing any field, or any earlier row,
changes every later hash.$$;

-------------------------------------------------------------------------------
-- _audit: append one row to a tenant's chain.
create or replace function memory._audit(
    tenant     text,
    action     text,
    object     text,
    object_key text,
    details    jsonb default '{}'::jsonb
)
returns void
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_head  memory.audit_heads;
    v_at    timestamptz := clock_timestamp();
    v_actor text := coalesce(nullif(current_setting('pymem.actor', true), ''), session_user);
    v_hash  bytea;
begin
    -- The head's row lock puts concurrent writers of one tenant in one line.
    loop
        select h.* into v_head from memory.audit_heads as h
         where h.tenant_id = _audit.tenant for update;
        exit when found;
        -- The tenant's first audit row (a twin may create the head meanwhile).
        insert into memory.audit_heads as h (tenant_id) values (_audit.tenant)
        on conflict do nothing;
    end loop;
    v_hash := memory._audit_hash(v_head.last_hash, _audit.tenant, v_head.last_id + 1, v_at,
                                 v_actor, _audit.action, _audit.object, _audit.object_key,
                                 coalesce(_audit.details, '{}'::jsonb));
    insert into memory.audit_log
           (tenant_id, audit_id, at, actor, action, object, object_key, details, prev_hash, hash)
    values (_audit.tenant, v_head.last_id + 1, v_at, v_actor, _audit.action, _audit.object,
            _audit.object_key, coalesce(_audit.details, '{}'::jsonb), v_head.last_hash, v_hash);
    update memory.audit_heads as h
       set last_id = v_head.last_id + 1, last_hash = v_hash
     where h.tenant_id = _audit.tenant;
end;
$fn$;

comment on function memory._audit(text, text, text, text, jsonb) is
$$Append an audit row to `tenant`'s hash chain. The actor is the setting
pymem.actor when set (an application's end user), else the login role
(session_user: inside pymem's security definer functions current_user is
their owner).$$;

-------------------------------------------------------------------------------
-- Trigger functions: what each table's changes record.
create or replace function memory._audit_tenants()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._audit(new.tenant_id,
        case tg_op when 'INSERT' then 'tenant.create' else 'tenant.policy' end,
        'tenant', new.tenant_id,
        jsonb_build_object('max_messages', new.max_messages, 'max_tokens', new.max_tokens,
                           'default_ttl', new.default_ttl,
                           'summary_every_tokens', new.summary_every_tokens,
                           'embed_messages', new.embed_messages, 'encryption', new.encryption,
                           'pii_policy', new.pii_policy,
                           'settings', new.settings));
    return null;
end;
$fn$;

comment on function memory._audit_tenants() is
$$Trigger: record a tenant's creation and every policy change (the new policy).$$;

create or replace function memory._audit_sessions()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_changes jsonb := '{}'::jsonb;
begin
    if tg_op = 'INSERT' then
        perform memory._audit(new.tenant_id, 'session.create', 'session', new.session_id,
                              jsonb_build_object('user_ref',
                                                 memory._subject_ref(new.tenant_id, new.user_id)));
    elsif tg_op = 'DELETE' then
        perform memory._audit(old.tenant_id, 'session.purge', 'session', old.session_id,
                              jsonb_build_object('messages', old.message_count));
    else
        if old.deleted_at is distinct from new.deleted_at then
            v_changes := v_changes || jsonb_build_object('deleted_at', new.deleted_at);
        end if;
        if old.expires_at is distinct from new.expires_at then
            v_changes := v_changes || jsonb_build_object('expires_at', new.expires_at);
        end if;
        if old.max_messages is distinct from new.max_messages
           or old.max_tokens is distinct from new.max_tokens
           or old.summary_every_tokens is distinct from new.summary_every_tokens then
            v_changes := v_changes || jsonb_build_object(
                'max_messages', new.max_messages, 'max_tokens', new.max_tokens,
                'summary_every_tokens', new.summary_every_tokens);
        end if;
        if old.user_id is distinct from new.user_id then
            v_changes := v_changes || jsonb_build_object(
                'user_ref', memory._subject_ref(new.tenant_id, new.user_id));
        end if;
        if old.metadata is distinct from new.metadata then
            v_changes := v_changes || jsonb_build_object('metadata_changed', true);
        end if;
        perform memory._audit(new.tenant_id, 'session.update', 'session', new.session_id,
                              v_changes);
    end if;
    return null;
end;
$fn$;

comment on function memory._audit_sessions() is
$$Trigger: record session creation, purge, and changes of its deletion, expiry,
caps, cadence, owner or metadata (counters that every append moves are not
audited).$$;

create or replace function memory._audit_message_deletes()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    r record;
begin
    for r in
        select o.tenant_id, o.session_id, count(*) as n, min(o.seq) as seq_from,
               max(o.seq) as seq_to
          from gone as o
         group by o.tenant_id, o.session_id
    loop
        perform memory._audit(r.tenant_id, 'messages.delete', 'session', r.session_id,
                              jsonb_build_object('count', r.n, 'seq_from', r.seq_from,
                                                 'seq_to', r.seq_to));
    end loop;
    return null;
end;
$fn$;

comment on function memory._audit_message_deletes() is
$$Trigger (per statement): record which turns a trim, purge or erasure deleted,
one row per session, without their content.$$;

create or replace function memory._audit_message_updates()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._audit(new.tenant_id, 'message.update', 'message',
                          new.session_id || '/' || new.seq,
                          jsonb_build_object(
                              'content_changed', old.content is distinct from new.content
                                                 or old.sealed is distinct from new.sealed,
                              'role_changed', old.role is distinct from new.role,
                              'metadata_changed', old.metadata is distinct from new.metadata));
    return null;
end;
$fn$;

comment on function memory._audit_message_updates() is
$$Trigger: record a change of a stored message's content, role or metadata
(which fields changed, not their values). A change of data key alone
(memory.reencrypt) is recorded once per batch as key.reencrypt instead.$$;

create or replace function memory._audit_summaries()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._audit(new.tenant_id, 'summary.create', 'session', new.session_id,
                          jsonb_build_object('summary_id', new.summary_id, 'level', new.level,
                                             'seq_from', new.seq_from, 'seq_to', new.seq_to));
    return null;
end;
$fn$;

comment on function memory._audit_summaries() is
$$Trigger: record each digest written (its range and level).$$;

create or replace function memory._audit_keys()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if tg_op = 'INSERT' then
        perform memory._audit(new.tenant_id, 'key.create', 'key', new.key_version::text,
                              jsonb_build_object('master', new.master_fingerprint));
    elsif tg_op = 'DELETE' then
        perform memory._audit(old.tenant_id, 'key.destroy', 'key', old.key_version::text, '{}');
    elsif old.master_fingerprint is distinct from new.master_fingerprint then
        perform memory._audit(new.tenant_id, 'key.rewrap', 'key', new.key_version::text,
                              jsonb_build_object('from', old.master_fingerprint,
                                                 'to', new.master_fingerprint));
    elsif old.retired_at is null and new.retired_at is not null then
        perform memory._audit(new.tenant_id, 'key.retire', 'key', new.key_version::text, '{}');
    end if;
    return null;
end;
$fn$;

comment on function memory._audit_keys() is
$$Trigger: record data key creation, retirement, re-wrapping and destruction
(version and master key fingerprint; never key material).$$;

create or replace function memory._audit_log_append_only()
returns trigger
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    raise exception 'memory: the audit log is append-only (% refused)', tg_op
        using errcode = 'ME016', hint = 'audit rows are never changed or removed';
end;
$fn$;

comment on function memory._audit_log_append_only() is
$$Trigger: refuse UPDATE, DELETE and TRUNCATE on memory.audit_log for every
role that does not disable triggers (a superuser can: see memory.verify_audit
and `pymem audit checkpoint`).$$;

-------------------------------------------------------------------------------
-- verify_audit: the first row of each chain that does not check out.
create or replace function memory.verify_audit(
    tenant text default null
)
returns table (
    tenant_id text,
    audit_id  bigint,
    problem   text
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    t         record;
    r         record;
    v_prev    bytea;
    v_expect  bigint;
    v_bad     boolean;
    v_started timestamptz := clock_timestamp();
    v_chains  integer := 0;
    v_broken  integer := 0;
begin
    for t in
        select h.tenant_id, h.last_id, h.last_hash
          from memory.audit_heads as h
         where verify_audit.tenant is null or h.tenant_id = verify_audit.tenant
         order by h.tenant_id
    loop
        v_prev := '\x'::bytea;
        v_expect := 1;
        v_bad := false;
        for r in
            select a.*
              from memory.audit_log as a
             where a.tenant_id = t.tenant_id
             order by a.audit_id
        loop
            if r.audit_id <> v_expect then
                return query select t.tenant_id, v_expect, 'row missing'::text;
                v_bad := true;
                exit;
            end if;
            if r.prev_hash <> v_prev then
                return query select t.tenant_id, r.audit_id, 'prev_hash does not match'::text;
                v_bad := true;
                exit;
            end if;
            if r.hash <> memory._audit_hash(r.prev_hash, r.tenant_id, r.audit_id, r.at, r.actor,
                                            r.action, r.object, r.object_key, r.details) then
                return query select t.tenant_id, r.audit_id, 'row content changed'::text;
                v_bad := true;
                exit;
            end if;
            v_prev := r.hash;
            v_expect := v_expect + 1;
        end loop;
        if not v_bad and (v_expect - 1 <> t.last_id or v_prev <> t.last_hash) then
            return query select t.tenant_id, v_expect, 'chain ends before its head'::text;
            v_bad := true;
        end if;
        v_chains := v_chains + 1;
        v_broken := v_broken + v_bad::integer;
    end loop;
    -- A check of every chain is what monitoring reports (memory.metrics).
    if verify_audit.tenant is null then
        perform memory._record_task('verify_audit', v_started,
                                    jsonb_build_object('chains', v_chains, 'broken', v_broken));
    end if;
end;
$fn$;

comment on function memory.verify_audit(text) is
$$Walk each tenant's chain (or only `tenant`'s) and return its first broken row:
a missing id, a prev_hash that is not the previous row's hash, a row whose
content no longer matches its hash, or a chain that stops before its head.
No rows: every chain checks out. A superuser who rewrites a whole chain and
its head is caught only against a checkpoint kept outside the database
(memory.audit_checkpoint, `pymem audit checkpoint`). A check of every chain
is recorded for memory.metrics() (when it ran, how many chains were broken).
Example: select * from memory.verify_audit();$$;

-------------------------------------------------------------------------------
-- audit_checkpoint: the current head of each chain, to keep outside the database.
create or replace function memory.audit_checkpoint()
returns table (
    tenant_id text,
    audit_id  bigint,
    hash      text
)
language sql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
    select h.tenant_id, h.last_id, encode(h.last_hash, 'hex')
      from memory.audit_heads as h
     where h.last_id > 0
     order by h.tenant_id;
$fn$;

comment on function memory.audit_checkpoint() is
$$Return each tenant's chain head (last id and hash, hex). `pymem audit
checkpoint` signs these with a key and writes them outside the database;
`pymem audit verify --checkpoint FILE` later checks that each recorded row
still exists with the same hash, which a recomputed or truncated chain fails.
Example: select * from memory.audit_checkpoint();$$;

-------------------------------------------------------------------------------
-- audit_hash_at: a row's stored hash, to compare with a checkpoint.
create or replace function memory.audit_hash_at(
    tenant   text,
    audit_id bigint
)
returns text
language sql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
    select encode(a.hash, 'hex')
      from memory.audit_log as a
     where a.tenant_id = audit_hash_at.tenant
       and a.audit_id = audit_hash_at.audit_id;
$fn$;

comment on function memory.audit_hash_at(text, bigint) is
$$The stored hash (hex) of one audit row, or null when the row is gone.
Example: select memory.audit_hash_at('acme', 42);$$;
