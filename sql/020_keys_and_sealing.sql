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
    -- No key in the connection's options: the node's key file, where `pymem
    -- keys node-file` installed one (a Citus worker has no other), for
    -- pymem's own functions only (they run as pymem_owner).
    if v_key is null
       and pg_catalog.to_regprocedure('memory._node_key(text)') is not null
       and pg_catalog.has_function_privilege('memory._node_key(text)', 'execute') then
        v_key := memory._node_key(_master_key.setting);
    end if;
    if v_key is null then
        raise exception 'memory: no master key on this connection (%)', _master_key.setting
            using errcode = 'ME018',
                  hint = 'connect with the key in the startup options: pymem does it from '
                         'PYMEM_MASTER_KEY or a KeyProvider; with psql, '
                         'PGOPTIONS=''-c pymem.master_key=<64 hex digits>''; or let the server read it '
                         'from a file on each node: pymem keys node-file';
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
else of this node's key file (memory._node_key, when installed), as 64
lowercase hex digits. Errors: ME018 when it is missing or malformed.$$;

-------------------------------------------------------------------------------
-- _key_fingerprint: names a master key without revealing it.
create or replace function memory._key_fingerprint(
    master_key text
)
returns text
language sql
stable security invoker  -- stable like convert_to: so that it inlines into its callers
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
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    -- PL/pgSQL, not SQL: the join is planned with the tenant's value, which
    -- Citus needs to send it to one worker.
    return (select max(k.key_version)
              from memory.tenant_keys as k
              join memory.tenants as t
                on t.tenant_id = k.tenant_id
             where k.tenant_id = _active_key.tenant
               and t.encryption <> 'none'
               and k.retired_at is null);
end;
$fn$;

comment on function memory._active_key(text) is
$$The data key version that seals `tenant`'s new rows; null when the tenant
stores plaintext.$$;

-------------------------------------------------------------------------------
-- _seal / _reveal: one value in, one value out.
-- No `set search_path`, so that it inlines into the inserts that seal (pinned,
-- it was a SQL function call of its own for every sealed message): the body
-- names its schemas and is bound when it was created.
create or replace function memory._seal(
    content text,
    data_key bytea
)
returns bytea
language sql
volatile security invoker
return public.pgp_sym_encrypt(content, pg_catalog.encode(data_key, 'hex'),
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
stable security invoker  -- stable like convert_to: so that it inlines into its callers
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
stable security invoker  -- stable: it inlines, memory._request_hash with it
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

