-- Encryption at rest.
--
-- Keys: each tenant has numbered data keys (random 256-bit) in
-- memory.tenant_keys, each stored wrapped (OpenPGP symmetric encryption,
-- AES-256) by the master key. The master key never enters a table, a
-- statement or a parameter: a client puts it in the connection's startup
-- options (`options=-c pymem.master_key=<64 hex digits>`), which the server
-- neither logs nor shows in pg_stat_activity. Data keys are unwrapped inside
-- these functions, for the transaction's tenant only, once per statement.
--
-- Rows: a message or digest holds either `content` (plaintext) or `sealed`
-- (OpenPGP ciphertext under data key `key_version`, with its integrity
-- check, so a wrong key is an error, never garbage). Salted single-hash S2K
-- (s2k-mode 1): the keys are random, so key stretching would only cost time.
--
-- Per-tenant choice (memory.configure_encryption):
--   none                 plaintext; full-text recall.
--   content              sealed; no full-text index (recall by embeddings,
--                        when the tenant stores them, else summaries and
--                        recent turns only).
--   content_with_search  sealed; the full-text index (stemmed lexemes and
--                        their positions) is stored in clear for recall.
-- Embeddings, when enabled, are stored in clear in every mode.

-------------------------------------------------------------------------------
-- _master_key: the connection's master key, checked.
create or replace function memory._master_key(
    setting text default 'pymem.master_key'
)
returns text
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_key text := nullif(current_setting(_master_key.setting, true), '');
begin
    if v_key is null then
        raise exception 'memory: no master key on this connection (%)', _master_key.setting
            using errcode = 'ME018',
                  hint = 'connect with the key in the startup options: pymem does it from '
                         'PYMEM_MASTER_KEY or a KeyProvider; with psql, '
                         'PGOPTIONS=''-c pymem.master_key=<64 hex digits>''';
    end if;
    if v_key !~ '^[0-9a-fA-F]{64}$' then
        raise exception 'memory: the master key in % is not 64 hexadecimal digits', _master_key.setting
            using errcode = 'ME018', hint = 'generate one with: pymem keys generate';
    end if;
    return lower(v_key);
end;
$fn$;

comment on function memory._master_key(text) is
$$The master key of this connection (a setting, pymem.master_key by default),
as 64 lowercase hex digits. Errors: ME018 when it is missing or malformed.$$;

-------------------------------------------------------------------------------
-- _key_fingerprint: names a master key without revealing it.
create or replace function memory._key_fingerprint(
    master_key text
)
returns text
language sql
immutable security invoker
return encode(substr(public.digest(convert_to('pymem master key ' || master_key, 'UTF8'), 'sha256'),
                     1, 8), 'hex');

comment on function memory._key_fingerprint(text) is
$$The first 8 bytes (hex) of a SHA-256 of a master key: stored beside each
wrapped data key so that a wrong master key is named, not guessed.$$;

-------------------------------------------------------------------------------
-- _data_keys: the tenant's data keys, unwrapped, indexed by version.
create or replace function memory._data_keys(
    tenant text
)
returns bytea[]
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_master text := memory._master_key();
    v_print  text := memory._key_fingerprint(v_master);
    v_keys   bytea[] := '{}';
    v_key    record;
begin
    for v_key in
        select k.key_version, k.wrapped_key, k.master_fingerprint
          from memory.tenant_keys as k
         where k.tenant_id = _data_keys.tenant
         order by k.key_version
    loop
        if v_key.master_fingerprint <> v_print then
            raise exception 'memory: data key % of tenant % is wrapped by master key %, this connection holds %',
                    v_key.key_version, _data_keys.tenant, v_key.master_fingerprint, v_print
                using errcode = 'ME018',
                      hint = 'connect with that master key; after a master key change run '
                             'pymem keys rewrap with PYMEM_PREVIOUS_MASTER_KEY set';
        end if;
        v_keys[v_key.key_version] := public.pgp_sym_decrypt_bytea(v_key.wrapped_key, v_master);
    end loop;
    return v_keys;
end;
$fn$;

comment on function memory._data_keys(text) is
$$Unwrap `tenant`'s data keys with the connection's master key; element N is
data key version N. Errors: ME018 no or malformed master key, or a key wrapped
by another master key.$$;

-------------------------------------------------------------------------------
-- _active_key: the version new rows are sealed under (null: encryption off).
create or replace function memory._active_key(
    tenant text
)
returns integer
language sql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
    select max(k.key_version)
      from memory.tenant_keys as k
      join memory.tenants as t
        on t.tenant_id = k.tenant_id
     where k.tenant_id = _active_key.tenant
       and t.encryption <> 'none'
       and k.retired_at is null;
$fn$;

comment on function memory._active_key(text) is
$$The data key version that seals `tenant`'s new rows; null when the tenant
stores plaintext.$$;

-------------------------------------------------------------------------------
-- _seal / _reveal: one value in, one value out.
create or replace function memory._seal(
    content text,
    data_key bytea
)
returns bytea
language sql
volatile security invoker
set search_path = pg_catalog, pg_temp
return public.pgp_sym_encrypt(content, encode(data_key, 'hex'),
                              'cipher-algo=aes256, s2k-mode=1, compress-algo=0');

comment on function memory._seal(text, bytea) is
$$Encrypt `content` under a data key (OpenPGP, AES-256, integrity-protected).$$;

create or replace function memory._missing_key(
    key_version integer
)
returns text
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    raise exception 'memory: data key % is not available for this tenant', key_version
        using errcode = 'ME018', hint = 'it was destroyed, or the row belongs to another tenant';
end;
$fn$;

comment on function memory._missing_key(integer) is
$$Raise ME018 for a sealed row whose data key is gone.$$;

-- No `set search_path`, so that it inlines and `keys` (an uncorrelated
-- subquery at the call sites) is only evaluated when a sealed row appears:
-- plaintext tenants need no master key. The body names its schemas.
create or replace function memory._reveal(
    content     text,
    sealed      bytea,
    key_version integer,
    keys        bytea[]
)
returns text
language sql
immutable security invoker
return case when sealed is null then content
            else coalesce(public.pgp_sym_decrypt(sealed, encode(keys[key_version], 'hex')),
                          memory._missing_key(key_version))
       end;

comment on function memory._reveal(text, bytea, integer, bytea[]) is
$$The plaintext of a stored row: `content`, or `sealed` decrypted with data
key `key_version` from `keys` (memory._data_keys). A wrong key raises
(39000 from pgcrypto, "Wrong key or corrupt data"); a missing one ME018.$$;

-------------------------------------------------------------------------------
-- _request_hash / _request_matches: the idempotency fingerprint of a request.
-- Plaintext tenants store an MD5 of role and content; encrypting tenants an
-- HMAC under the data key, tagged with its version ('k<version>:'), so that no
-- unkeyed digest of sealed text is kept and retries still match after a
-- key rotation.
create or replace function memory._request_hash(
    role        text,
    content     text,
    key_version integer,
    keys        bytea[]
)
returns text
language sql
immutable security invoker
return case when key_version is null then md5(role || ':' || content)
            else 'k' || key_version || ':'
                 || encode(public.hmac(convert_to(role || ':' || content, 'UTF8'),
                                       keys[key_version], 'sha256'), 'hex')
       end;

comment on function memory._request_hash(text, text, integer, bytea[]) is
$$The request fingerprint stored with an idempotency key: MD5 for plaintext,
a versioned HMAC-SHA256 under the data key when `key_version` is given.$$;

create or replace function memory._request_matches(
    stored  text,
    role    text,
    content text,
    keys    bytea[]
)
returns boolean
language sql
immutable security invoker
return coalesce(stored = memory._request_hash(
                    role, content, substring(stored from '^k([0-9]+):')::integer, keys), false);

comment on function memory._request_matches(text, text, text, bytea[]) is
$$True when a stored request fingerprint is that of (role, content), under
whichever data key version it names.$$;

-------------------------------------------------------------------------------
-- reveal: decrypt one value for the transaction's tenant (views use it).
create or replace function memory.reveal(
    content     text,
    sealed      bytea,
    key_version integer
)
returns text
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if reveal.sealed is null then
        return reveal.content;
    end if;
    if memory.current_tenant() is null then
        raise exception 'memory: no tenant is set for this transaction'
            using errcode = 'ME017', hint = 'select set_config(''pymem.tenant'', ''acme'', true) first';
    end if;
    return memory._reveal(reveal.content, reveal.sealed, reveal.key_version,
                          memory._data_keys(memory.current_tenant()));
end;
$fn$;

comment on function memory.reveal(text, bytea, integer) is
$$The plaintext of a stored value for the transaction's tenant: `content`,
or `sealed` decrypted under that tenant's data key `key_version` (another
tenant's ciphertext fails its integrity check). Unwraps the key per call: for
bulk reads use memory.history. Errors: ME017 no tenant; ME018 master key.
Example: select memory.reveal(content, sealed, key_version) from memory.message_log;$$;

-------------------------------------------------------------------------------
-- _new_data_key: a fresh data key version for a tenant.
create or replace function memory._new_data_key(
    tenant text
)
returns integer
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_master  text := memory._master_key();
    v_version integer;
begin
    -- Serialize key changes of one tenant on its row.
    perform from memory.tenants as t where t.tenant_id = _new_data_key.tenant for update;
    select coalesce(max(k.key_version), 0) + 1 into v_version
      from memory.tenant_keys as k
     where k.tenant_id = _new_data_key.tenant;
    update memory.tenant_keys as k
       set retired_at = now()
     where k.tenant_id = _new_data_key.tenant
       and k.retired_at is null;
    insert into memory.tenant_keys (tenant_id, key_version, wrapped_key, master_fingerprint)
    values (_new_data_key.tenant, v_version,
            public.pgp_sym_encrypt_bytea(public.gen_random_bytes(32), v_master,
                                         'cipher-algo=aes256, s2k-mode=1, compress-algo=0'),
            memory._key_fingerprint(v_master));
    return v_version;
end;
$fn$;

comment on function memory._new_data_key(text) is
$$Create data key version max+1 for `tenant` (random, wrapped by the master
key), retiring the versions before it. Returns the new version.$$;

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
        with source as materialized (
            select m.seq, m.created_at, m.role,
                   memory._reveal(m.content, m.sealed, m.key_version, v_keys) as plain
              from memory.messages as m
             where m.tenant_id = reencrypt.tenant
               and m.session_id = v_session
               and m.key_version is distinct from v_target
             order by m.seq
             limit v_chunk
        ), fingerprints as (
            update memory.idempotency_keys as k
               set request_hash = memory._request_hash(s.role, s.plain, v_target, v_keys)
              from source as s
             where k.tenant_id = reencrypt.tenant
               and k.session_id = v_session
               and k.seq = s.seq
        )
        update memory.messages as m
           set content = case when v_target is null then s.plain end,
               sealed = case when v_target is not null then memory._seal(s.plain, v_keys[v_target]) end,
               key_version = v_target,
               search = case when v_mode = 'content' then null
                             else to_tsvector('english'::regconfig, s.plain) end
          from source as s
         where m.tenant_id = reencrypt.tenant
           and m.session_id = v_session
           and m.seq = s.seq
           and m.created_at = s.created_at;
        get diagnostics v_rows = row_count;
        v_messages := v_messages + v_rows;

        update memory.summaries as d
           set content = case when v_target is null
                              then memory._reveal(d.content, d.sealed, d.key_version, v_keys) end,
               sealed = case when v_target is not null
                             then memory._seal(memory._reveal(d.content, d.sealed, d.key_version, v_keys),
                                               v_keys[v_target]) end,
               key_version = v_target
         where d.tenant_id = reencrypt.tenant
           and d.session_id = v_session
           and d.key_version is distinct from v_target;
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
    v_count    integer;
begin
    perform memory._tenant_guard(rewrap_keys.tenant);
    update memory.tenant_keys as k
       set wrapped_key = public.pgp_sym_encrypt_bytea(
               public.pgp_sym_decrypt_bytea(k.wrapped_key, v_old), v_new,
               'cipher-algo=aes256, s2k-mode=1, compress-algo=0'),
           master_fingerprint = memory._key_fingerprint(v_new)
     where k.tenant_id = rewrap_keys.tenant
       and k.master_fingerprint = v_old_mark;
    get diagnostics v_count = row_count;
    return v_count;
end;
$fn$;

comment on function memory.rewrap_keys(text) is
$$Re-wrap `tenant`'s data keys from the connection's previous master key
(setting pymem.previous_master_key) to its master key (pymem.master_key);
rows are not touched. Returns the number of keys re-wrapped.
Example (via pymem keys rewrap): select memory.rewrap_keys('acme');$$;
