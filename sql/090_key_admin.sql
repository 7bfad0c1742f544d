-- Key operations: a tenant's encryption mode, rotation, re-encryption in
-- batches, retiring keys and re-wrapping them under a new master key. The
-- keys and sealing helpers they use are in 020_keys_and_sealing.sql.

-------------------------------------------------------------------------------
-- configure_encryption: the tenant's choice.
create or replace function memory.configure_encryption(
    tenant text,
    mode   text
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_old text;
begin
    perform memory._tenant_guard(configure_encryption.tenant);
    perform memory._check_ident('tenant', configure_encryption.tenant);
    if configure_encryption.mode is null
       or configure_encryption.mode not in ('none', 'content', 'content_with_search') then
        raise exception 'memory: unknown encryption mode %',
                coalesce(quote_literal(configure_encryption.mode), 'null')
            using errcode = 'ME002', hint = 'use none, content or content_with_search';
    end if;
    insert into memory.tenants as t (tenant_id) values (configure_encryption.tenant)
    on conflict do nothing;
    select t.encryption into v_old
      from memory.tenants as t
     where t.tenant_id = configure_encryption.tenant
       for update;
    if v_old is distinct from configure_encryption.mode then
        if configure_encryption.mode <> 'none' then
            -- A new key for a new mode: memory.reencrypt then brings every
            -- row (and its search column) to it.
            perform memory._new_data_key(configure_encryption.tenant);
        end if;
        update memory.tenants as t
           set encryption = configure_encryption.mode
         where t.tenant_id = configure_encryption.tenant;
    end if;
    return memory._active_key(configure_encryption.tenant);
end;
$fn$;

comment on function memory.configure_encryption(text, text) is
$$Choose how `tenant` stores text: none, content (sealed, no full-text
index) or content_with_search (sealed, full-text index in clear). New rows
follow at once; existing rows follow memory.reencrypt. Turning encryption on,
or changing between the two sealed modes, creates a new data key and needs the
master key on the connection. Returns the active data key version (null for
none). Errors: ME002 unknown mode; ME018 master key missing or malformed.
Example: select memory.configure_encryption('acme', 'content_with_search');$$;

-------------------------------------------------------------------------------
-- rotate_key: a new data key for new rows.
create or replace function memory.rotate_key(
    tenant text
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(rotate_key.tenant);
    perform memory._check_ident('tenant', rotate_key.tenant);
    if not exists (select from memory.tenants as t
                    where t.tenant_id = rotate_key.tenant and t.encryption <> 'none') then
        raise exception 'memory: tenant % does not encrypt its content', rotate_key.tenant
            using errcode = 'ME002', hint = 'turn it on with memory.configure_encryption first';
    end if;
    return memory._new_data_key(rotate_key.tenant);
end;
$fn$;

comment on function memory.rotate_key(text) is
$$Start a new data key version for `tenant`: new rows are sealed under it at
once, older rows move to it with memory.reencrypt (appends continue meanwhile).
Returns the new version. Errors: ME002 encryption off; ME018 master key.
Example: select memory.rotate_key('acme');$$;

-------------------------------------------------------------------------------
-- reencrypt: bring a batch of sessions to the tenant's current key and mode.
-- Longer than the other functions on purpose: each session is moved under
-- its own row lock in one pass (messages, digests, idempotency fingerprints,
-- the session's key mark), and the order of those writes is what the staged
-- race tests in tests/integration/test_encryption.py check.
create or replace function memory.reencrypt(
    tenant   text,
    max_rows integer default 1000
)
returns table (
    sessions           integer,
    messages           bigint,
    summaries          bigint,
    sessions_remaining bigint
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_mode     text;
    v_target   integer;
    v_keys     bytea[];
    v_session  text;
    v_rows     bigint;
    v_sessions integer := 0;
    v_messages bigint := 0;
    v_digests  bigint := 0;
    v_chunk    integer;
    v_active   integer;
    -- One chunk's new values, by seq (messages) or summary_id (digests).
    v_seqs     bigint[];
    v_times    timestamptz[];
    v_ids      bigint[];
    v_plain    text[];
    v_sealed   bytea[];
    v_search   tsvector[];
    v_hashes   text[];
begin
    perform memory._tenant_guard(reencrypt.tenant);
    perform memory._check_ident('tenant', reencrypt.tenant);
    if reencrypt.max_rows is null or reencrypt.max_rows < 1 then
        raise exception 'memory: max_rows must be >= 1, got %', reencrypt.max_rows
            using errcode = 'ME002', hint = 'call it repeatedly until sessions_remaining is 0';
    end if;
    select t.encryption into v_mode from memory.tenants as t where t.tenant_id = reencrypt.tenant;
    v_target := memory._active_key(reencrypt.tenant);
    if exists (select from memory.tenant_keys as k where k.tenant_id = reencrypt.tenant) then
        v_keys := memory._data_keys(reencrypt.tenant);
    end if;

    loop
        exit when v_messages + v_digests >= reencrypt.max_rows;
        -- One session at a time, under its row lock: its appends wait for
        -- this session's batch only; sessions busy elsewhere are skipped.
        select s.session_id into v_session
          from memory.sessions as s
         where s.tenant_id = reencrypt.tenant
           and (case when v_target is null then s.key_version is not null
                     else s.key_version is null or s.key_version < v_target end)
         order by s.session_id
         limit 1
           for update skip locked;
        exit when not found;

        -- Under the session lock no append of this session is in flight: read
        -- the key again, in case a rotation committed since this call began.
        v_active := memory._active_key(reencrypt.tenant);
        if v_active is distinct from v_target then
            select t.encryption into v_mode from memory.tenants as t
             where t.tenant_id = reencrypt.tenant;
            v_target := v_active;
            v_keys := memory._data_keys(reencrypt.tenant);
        end if;

        -- At most the rest of this call's budget, oldest turns first: a
        -- session larger than that is finished by later calls, each holding
        -- its lock for one chunk only. Idempotency fingerprints follow the
        -- key, so retries still match.
        v_chunk := greatest(reencrypt.max_rows - v_messages - v_digests, 1);
        -- The new values are computed first, in a read, and written as
        -- arrays: sealing is volatile (a fresh IV each time), and Citus runs
        -- no volatile function inside an UPDATE of a distributed table.
        select array_agg(s.seq order by s.seq),
               array_agg(s.created_at order by s.seq),
               array_agg(case when v_target is null then s.plain end order by s.seq),
               array_agg(case when v_target is not null
                              then memory._seal(s.plain, v_keys[v_target]) end order by s.seq),
               array_agg(case when v_mode <> 'content'
                              then memory._search_vector(s.plain, s.structured) end
                         order by s.seq),
               array_agg(memory._request_hash(s.role, s.plain, v_target, v_keys) order by s.seq)
          into v_seqs, v_times, v_plain, v_sealed, v_search, v_hashes
          from (select m.seq, m.created_at, m.role, m.structured,
                       memory._reveal(m.content, m.sealed, m.key_version, v_keys) as plain
                  from memory.messages as m
                 where m.tenant_id = reencrypt.tenant
                   and m.session_id = v_session
                   and m.key_version is distinct from v_target
                 order by m.seq
                 limit v_chunk) as s;
        update memory.idempotency_keys as k
           set request_hash = u.request_hash
          from unnest(v_seqs, v_hashes) as u (seq, request_hash)
         where k.tenant_id = reencrypt.tenant
           and k.session_id = v_session
           and k.seq = u.seq;
        update memory.messages as m
           set content = u.content,
               sealed = u.sealed,
               key_version = v_target,
               search = u.search
          from unnest(v_seqs, v_times, v_plain, v_sealed, v_search)
               as u (seq, created_at, content, sealed, search)
         where m.tenant_id = reencrypt.tenant
           and m.session_id = v_session
           and m.seq = u.seq
           and m.created_at = u.created_at;
        get diagnostics v_rows = row_count;
        v_messages := v_messages + v_rows;
        if v_mode = 'content' then
            -- No full-text index in clear: no term statistics either.
            delete from memory.term_stats as t
             where t.tenant_id = reencrypt.tenant
               and t.session_id = v_session;
        end if;

        select array_agg(d.summary_id),
               array_agg(case when v_target is null
                              then memory._reveal(d.content, d.sealed, d.key_version, v_keys) end),
               array_agg(case when v_target is not null
                              then memory._seal(memory._reveal(d.content, d.sealed, d.key_version,
                                                               v_keys),
                                                v_keys[v_target]) end)
          into v_ids, v_plain, v_sealed
          from memory.summaries as d
         where d.tenant_id = reencrypt.tenant
           and d.session_id = v_session
           and d.key_version is distinct from v_target;
        update memory.summaries as d
           set content = u.content,
               sealed = u.sealed,
               key_version = v_target
          from unnest(v_ids, v_plain, v_sealed) as u (summary_id, content, sealed)
         where d.tenant_id = reencrypt.tenant
           and d.session_id = v_session
           and d.summary_id = u.summary_id;
        get diagnostics v_rows = row_count;
        v_digests := v_digests + v_rows;

        -- The session's mark moves once every row is under the target.
        exit when exists (select from memory.messages as m
                           where m.tenant_id = reencrypt.tenant
                             and m.session_id = v_session
                             and m.key_version is distinct from v_target);
        update memory.sessions as s
           set key_version = v_target
         where s.tenant_id = reencrypt.tenant
           and s.session_id = v_session;
        v_sessions := v_sessions + 1;
    end loop;

    if v_messages + v_digests > 0 then
        perform memory._audit(reencrypt.tenant, 'key.reencrypt', 'tenant', reencrypt.tenant,
                              jsonb_build_object('key_version', v_target, 'sessions', v_sessions,
                                                 'messages', v_messages, 'summaries', v_digests));
    end if;
    return query
        select v_sessions, v_messages, v_digests,
               (select count(*)
                  from memory.sessions as s
                 where s.tenant_id = reencrypt.tenant
                   and (case when v_target is null then s.key_version is not null
                             else s.key_version is null or s.key_version < v_target end));
end;
$fn$;

comment on function memory.reencrypt(text, integer) is
$$Re-encrypt (or decrypt, when encryption is off) the rows of `tenant` until
`max_rows` messages (and their sessions' digests) were rewritten: each row
moves to the active data key and the tenant's mode (its search column and
idempotency fingerprint too), oldest first, session by session. Online: a
session is locked only while one chunk of its rows is rewritten, appends
elsewhere go on, and new rows are already written the new way. `sessions`
counts sessions finished by this call. Call it until sessions_remaining is 0,
then memory.destroy_retired_keys. Audited as
key.reencrypt with counts. Errors: ME002 bad max_rows; ME018 master key.
Example: select * from memory.reencrypt('acme', 5000);$$;

-------------------------------------------------------------------------------
-- destroy_retired_keys: forget data keys no row needs.
create or replace function memory.destroy_retired_keys(
    tenant text
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_target integer;
    v_count  integer;
begin
    perform memory._tenant_guard(destroy_retired_keys.tenant);
    perform memory._check_ident('tenant', destroy_retired_keys.tenant);
    -- The tenant row first (key changes take it too), then the active key:
    -- read before the lock, a rotation committed meanwhile would have its new
    -- key deleted below.
    perform from memory.tenants as t where t.tenant_id = destroy_retired_keys.tenant for update;
    v_target := memory._active_key(destroy_retired_keys.tenant);
    if exists (select from memory.sessions as s
                where s.tenant_id = destroy_retired_keys.tenant
                  and s.key_version is distinct from v_target
                  and s.key_version is not null) then
        raise exception 'memory: sessions of tenant % still use a retired key', destroy_retired_keys.tenant
            using errcode = 'ME002', hint = 'run memory.reencrypt until sessions_remaining is 0';
    end if;
    delete from memory.tenant_keys as k
     where k.tenant_id = destroy_retired_keys.tenant
       and k.key_version is distinct from v_target;
    get diagnostics v_count = row_count;
    return v_count;
end;
$fn$;

comment on function memory.destroy_retired_keys(text) is
$$Delete `tenant`'s data keys other than the active one, once memory.reencrypt
has moved every session off them; returns how many. Deleting every key of a
tenant (turn encryption off first, or drop the tenant) leaves old backups
unreadable. Errors: ME002 a session still needs a retired key.
Example: select memory.destroy_retired_keys('acme');$$;

-------------------------------------------------------------------------------
-- rewrap_keys: move a tenant's data keys to a new master key.
create or replace function memory.rewrap_keys(
    tenant text
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_new      text := memory._master_key();
    v_old      text := memory._master_key('pymem.previous_master_key');
    v_old_mark text := memory._key_fingerprint(v_old);
    v_new_mark text := memory._key_fingerprint(v_new);
    v_count    integer;
    v_versions integer[];
    v_wrapped  bytea[];
begin
    perform memory._tenant_guard(rewrap_keys.tenant);
    -- Wrapped in a read, locked, then written as values (wrapping is
    -- volatile, which Citus does not run inside an UPDATE).
    select array_agg(k.key_version),
           array_agg(public.pgp_sym_encrypt_bytea(
               public.pgp_sym_decrypt_bytea(k.wrapped_key, v_old), v_new,
               'cipher-algo=aes256, s2k-mode=1, compress-algo=0'))
      into v_versions, v_wrapped
      from (select k.key_version, k.wrapped_key
              from memory.tenant_keys as k
             where k.tenant_id = rewrap_keys.tenant
               and k.master_fingerprint = v_old_mark
               for update) as k;
    update memory.tenant_keys as k
       set wrapped_key = u.wrapped_key,
           master_fingerprint = v_new_mark
      from unnest(v_versions, v_wrapped) as u (key_version, wrapped_key)
     where k.tenant_id = rewrap_keys.tenant
       and k.key_version = u.key_version;
    get diagnostics v_count = row_count;
    return v_count;
end;
$fn$;

comment on function memory.rewrap_keys(text) is
$$Re-wrap `tenant`'s data keys from the connection's previous master key
(setting pymem.previous_master_key) to its master key (pymem.master_key);
rows are not touched. Returns the number of keys re-wrapped.
Example (via pymem keys rewrap): select memory.rewrap_keys('acme');$$;
