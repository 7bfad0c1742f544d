-- Argument checks and the token estimate shared by the public functions.
-- Helpers start with `_` and are not part of the API.

-------------------------------------------------------------------------------
-- _check_ident: reject an identifier (tenant, session, user, key) that is
-- null, empty, longer than 255 characters or holds control characters.
create or replace function memory._check_ident(
    kind  text,
    value text
)
returns void
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if value is null or value = '' then
        raise exception 'memory: % must be a non-empty string', kind
            using errcode = 'ME006', hint = format('pass a non-empty %s, e.g. ''acme'' or ''support-42''', kind);
    end if;
    if char_length(value) > 255 then
        raise exception 'memory: % is % characters long, the limit is 255', kind, char_length(value)
            using errcode = 'ME006', hint = format('use a shorter %s, e.g. a UUID or a hash', kind);
    end if;
    if value ~ '[[:cntrl:]]' then
        raise exception 'memory: % contains a control character', kind
            using errcode = 'ME006', hint = 'identifiers must be printable text';
    end if;
end;
$fn$;

comment on function memory._check_ident(text, text) is
$$Raise ME006 unless `value` is a printable, non-empty identifier of at most
255 characters. `kind` names it in the message (tenant, session, ...).$$;

-------------------------------------------------------------------------------
-- _ident_ok: the test of _check_ident as an inlinable expression, for hot paths.
-- No `set search_path` on purpose: a pinned setting stops PostgreSQL from
-- inlining a SQL function (and costs a settings save/restore per call). The
-- body only uses pg_catalog, which is always searched first.
create or replace function memory._ident_ok(
    value text
)
returns boolean
language sql
immutable parallel safe security invoker
return value is not null
   and value <> ''
   and char_length(value) <= 255
   and value !~ '[[:cntrl:]]';

comment on function memory._ident_ok(text) is
$$True when `value` passes memory._check_ident. Inlined into callers; call
memory._check_ident to raise the precise error when it is false.$$;

-------------------------------------------------------------------------------
-- _check_metadata: metadata must be a JSON object of bounded size.
create or replace function memory._check_metadata(
    metadata jsonb
)
returns jsonb
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if metadata is null then
        return '{}'::jsonb;
    end if;
    if jsonb_typeof(metadata) <> 'object' then
        raise exception 'memory: metadata must be a JSON object, got %', jsonb_typeof(metadata)
            using errcode = 'ME009', hint = 'pass an object such as ''{"source": "web"}''';
    end if;
    if pg_column_size(metadata) > 262144 then
        raise exception 'memory: metadata is % bytes, the limit is 262144', pg_column_size(metadata)
            using errcode = 'ME009', hint = 'store large payloads elsewhere and keep a reference';
    end if;
    return metadata;
end;
$fn$;

comment on function memory._check_metadata(jsonb) is
$$Return `metadata`, or '{}' for null. Errors: ME009 when it is not a JSON
object or is larger than 256 KiB.$$;

-------------------------------------------------------------------------------
-- _check_dimension: an embedding must have the database's dimension.
create or replace function memory._check_dimension(
    kind  text,
    value public.vector,
    hint  text
)
returns integer
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_dim integer;
begin
    select s.embedding_dim into v_dim from memory.settings as s;
    if public.vector_dims(value) <> v_dim then
        raise exception 'memory: % has % dimensions, this database stores %',
                kind, public.vector_dims(value), v_dim
            using errcode = 'ME007', hint = _check_dimension.hint;
    end if;
    return v_dim;
end;
$fn$;

comment on function memory._check_dimension(text, public.vector, text) is
$$Return the database's embedding dimension (memory.settings). Errors: ME007
when `value` has another one; `kind` names it in the message (embedding,
query_embedding) and `hint` says what to do.$$;

-------------------------------------------------------------------------------
-- estimate_tokens: a token estimate for rows written without a count.
-- PL/pgSQL, not SQL: PostgreSQL cannot inline it (strict, with a body that is
-- not), and a SQL function called from PL/pgSQL is planned again in every
-- transaction (40 against 16 us a call).
create or replace function memory.estimate_tokens(
    content text
)
returns integer
language plpgsql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    -- The words: the runs of text between whitespace, in one split (a
    -- leading or trailing run leaves an empty string, removed).
    v_words integer := cardinality(array_remove(
                           regexp_split_to_array(content, '[ \t\n\r\f\v]+'), ''));
begin
    if v_words = 0 then
        return 0;
    end if;
    return greatest(ceil(char_length(content) / 4.0), ceil(v_words * 1.3))::integer;
end;
$fn$;

comment on function memory.estimate_tokens(text) is
$$Estimate the tokens of `content` for rows written by SQL clients that pass no
count: the larger of characters/4 and words*1.3. Rows stored with it are marked
`tokens_estimated`; pymem's Python client always passes exact tiktoken counts.
Example: select memory.estimate_tokens('hello there, world'); -- 5$$;

