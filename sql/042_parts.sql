-- Messages made of parts: what an agent's turn holds beyond text.
--
-- A structured message is stored as one JSON document in `content`:
--   {"parts": [part, ...], "name": "optional sender name"}
-- with one shape per part type (the shape pymem.transcript uses):
--   {"type": "text", "text": "..."}
--   {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
--   {"type": "tool_result", "call_id": "call_1", "content": "12 C", "is_error": false}
--   {"type": "image", "url": "https://..." | "file_id": "file-1", "detail": "low"}
--   {"type": "file", "url": "https://..." | "file_id": "file-1", "filename": "a.pdf"}
--   {"type": "refusal", "text": "..."}
-- and `structured` = true. Everything that handles content (the personal
-- data policy, sealing, idempotency hashes, re-encryption, erasure) handles
-- the document; reads unpack it (memory._turn). `tool_parts` counts a
-- turn's tool calls or tool results in clear for window validity.

-------------------------------------------------------------------------------
-- _parts_text: the text of a part list, to read or to search.
-- PL/pgSQL, not SQL: with its subqueries PostgreSQL cannot inline it, and a
-- SQL function called from PL/pgSQL is planned again in every transaction
-- (a structured append paid that twice).
create or replace function memory._parts_text(
    parts      jsonb,
    searchable boolean default false
)
returns text
language plpgsql
immutable parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    return (
        select coalesce(string_agg(
                   case p.value ->> 'type'
                       when 'text' then p.value ->> 'text'
                       when 'refusal' then p.value ->> 'text'
                       when 'tool_result' then p.value ->> 'content'
                       when 'tool_call' then
                           case when searchable
                                then concat_ws(' ', p.value ->> 'name',
                                               (select string_agg(v #>> '{}', ' ')
                                                  from jsonb_path_query(p.value -> 'arguments',
                                                                        'strict $.**') as v
                                                 where jsonb_typeof(v) in ('string', 'number')))
                           end
                   end,
                   case when searchable then ' ' else '' end order by p.ordinality), '')
          from jsonb_array_elements(parts) with ordinality as p
    );
end;
$fn$;

comment on function memory._parts_text(jsonb, boolean) is
$$The text of a part list: its text and refusal parts and its tool results'
content, joined. With `searchable`, also each tool call's name and the string
and number values of its arguments, space-separated (what full-text search
and recall index).$$;

-------------------------------------------------------------------------------
-- _turn: a stored message's text, parts and name.
create or replace function memory._turn(
    stored     text,
    structured boolean
)
returns table (
    content text,
    parts   jsonb,
    name    text
)
language sql
immutable parallel safe security invoker
as $fn$
    select case when d.doc is null then stored else memory._parts_text(d.doc -> 'parts') end,
           d.doc -> 'parts',
           d.doc ->> 'name'
      from (select case when structured then stored::jsonb end as doc) as d
$fn$;

comment on function memory._turn(text, boolean) is
$$Unpack a stored message (memory.messages.content, revealed): its text, its
parts (null for plain text) and its name. Inlined into the readers.$$;

-------------------------------------------------------------------------------
-- _check_part: one part, checked and in its stored shape.
create or replace function memory._check_part(
    role     text,
    part     jsonb,
    place    integer
)
returns jsonb
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_type    text;
    v_allowed text[];
    v_extra   text;
    v_where   text := 'part ' || place;
    v_key     text;
begin
    if jsonb_typeof(part) is distinct from 'object' or jsonb_typeof(part -> 'type') is distinct from 'string' then
        raise exception 'memory: % must be a JSON object with a "type"', v_where
            using errcode = 'ME022',
                  hint = 'e.g. {"type": "text", "text": "..."}; see memory.append''s comment for the shapes';
    end if;
    v_type := part ->> 'type';
    v_allowed := case v_type
                     when 'text' then '{type,text}'
                     when 'refusal' then '{type,text}'
                     when 'tool_call' then '{type,id,name,arguments}'
                     when 'tool_result' then '{type,call_id,content,is_error}'
                     when 'image' then '{type,url,file_id,detail}'
                     when 'file' then '{type,url,file_id,filename}'
                 end::text[];
    if v_allowed is null then
        raise exception 'memory: % has unknown type %', v_where, quote_literal(v_type)
            using errcode = 'ME022',
                  hint = 'use one of file, image, refusal, text, tool_call, tool_result';
    end if;
    select k into v_extra from jsonb_object_keys(part) as k where not (k = any (v_allowed)) limit 1;
    if v_extra is not null then
        raise exception 'memory: % (%) has an unknown field %', v_where, v_type, quote_literal(v_extra)
            using errcode = 'ME022', hint = format('a %s part has the fields %s', v_type, v_allowed);
    end if;
    -- Text-bearing fields: strings of at most 4 MiB characters.
    foreach v_key in array case v_type when 'tool_result' then '{content}'::text[]
                                       when 'text' then '{text}' when 'refusal' then '{text}'
                                       else '{}' end loop
        if jsonb_typeof(part -> v_key) is distinct from 'string' then
            raise exception 'memory: % (%) needs "%" as a string', v_where, v_type, v_key
                using errcode = 'ME022', hint = 'pass the text; an empty string is allowed';
        end if;
        if char_length(part ->> v_key) > 4194304 then
            raise exception 'memory: % (%) has % characters, the limit is 4194304', v_where, v_type,
                    char_length(part ->> v_key)
                using errcode = 'ME008', hint = 'store large payloads elsewhere and keep a reference';
        end if;
    end loop;
    -- Identifiers: 1 to 255 printable characters.
    foreach v_key in array case v_type when 'tool_call' then '{id,name}'::text[]
                                       when 'tool_result' then '{call_id}' else '{}' end loop
        if jsonb_typeof(part -> v_key) is distinct from 'string'
           or not memory._ident_ok(part ->> v_key) then
            raise exception 'memory: % (%) needs "%": 1 to 255 printable characters', v_where, v_type, v_key
                using errcode = 'ME022',
                      hint = case when v_type = 'tool_result'
                                  then 'give the id of the tool call this result answers'
                                  else 'use the id and function name the model gave' end;
        end if;
    end loop;
    if v_type = 'tool_call' then
        if part ? 'arguments' and jsonb_typeof(part -> 'arguments') <> 'object' then
            raise exception 'memory: % (tool_call %) has arguments that are not a JSON object', v_where,
                    quote_literal(part ->> 'id')
                using errcode = 'ME022',
                      hint = 'parse the model''s JSON text first; wrap other values, e.g. {"value": ...}';
        end if;
        if octet_length((part -> 'arguments')::text) > 4194304 then
            raise exception 'memory: % (tool_call) arguments are over 4 MiB', v_where
                using errcode = 'ME008', hint = 'store large payloads elsewhere and keep a reference';
        end if;
        part := jsonb_set(part, '{arguments}', coalesce(part -> 'arguments', '{}'::jsonb));
        if role <> 'assistant' then
            raise exception 'memory: only assistant turns call tools, got a tool_call in a % turn', role
                using errcode = 'ME022', hint = 'store the call on the assistant turn that made it';
        end if;
    elsif v_type = 'tool_result' then
        if part ? 'is_error' and jsonb_typeof(part -> 'is_error') <> 'boolean' then
            raise exception 'memory: % (tool_result) is_error must be true or false', v_where
                using errcode = 'ME022', hint = 'omit it for a result without error';
        end if;
        part := jsonb_set(part, '{is_error}', coalesce(part -> 'is_error', 'false'::jsonb));
    elsif v_type in ('image', 'file') then
        if (part ? 'url') = (part ? 'file_id') then
            raise exception 'memory: % (%) needs a url or a file_id (one of them)', v_where, v_type
                using errcode = 'ME022',
                      hint = 'upload the bytes to the provider or your storage and keep the reference';
        end if;
        foreach v_key in array '{url,file_id,detail,filename}'::text[] loop
            continue when not part ? v_key;
            if jsonb_typeof(part -> v_key) <> 'string' or char_length(part ->> v_key) > 2048 then
                raise exception 'memory: % (%) needs "%" as a string of at most 2048 characters',
                        v_where, v_type, v_key
                    using errcode = 'ME022', hint = 'keep a reference (a URL or a file id), not the bytes';
            end if;
        end loop;
        if part ->> 'url' like 'data:%' then
            raise exception 'memory: % (%) is a data: URL; pymem keeps references, not bytes', v_where, v_type
                using errcode = 'ME022',
                      hint = 'upload it (to the provider''s files API or your storage) and pass its id or URL';
        end if;
    end if;
    if (v_type = 'tool_result') <> (role = 'tool') then
        raise exception 'memory: tool results make up tool turns, and only they (% in a % turn)', v_type, role
            using errcode = 'ME022',
                  hint = 'append each result as a tool turn whose parts are tool_result parts';
    end if;
    return part;
end;
$fn$;

comment on function memory._check_part(text, jsonb, integer) is
$$Check one part of a `role` turn (`position` names it in errors) and return
it in its stored shape (tool calls get arguments {}, tool results is_error
false when missing). Errors: ME022 bad part, ME008 over a size limit.$$;

-------------------------------------------------------------------------------
-- _check_parts: a structured message, checked, as the document to store.
drop function if exists memory._check_parts(text, text, jsonb, text);
create or replace function memory._check_parts(
    role           text,
    content        text,
    parts          jsonb,
    name           text,
    out document   jsonb,
    out plain      text,
    out tool_parts smallint
)
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_checked jsonb[];
begin
    if content is not null and parts is not null then
        raise exception 'memory: give content or parts, not both'
            using errcode = 'ME002',
                  hint = 'put the text in a {"type": "text"} part, or pass content alone';
    end if;
    if name is not null and not memory._ident_ok(name) then
        raise exception 'memory: a message''s name must be 1 to 255 printable characters'
            using errcode = 'ME022', hint = 'e.g. the user''s handle or the agent''s name';
    end if;
    if parts is null then
        -- A name on plain text: one text part.
        parts := jsonb_build_array(jsonb_build_object('type', 'text', 'text', coalesce(content, '')));
    end if;
    if jsonb_typeof(parts) <> 'array' or jsonb_array_length(parts) = 0
       or jsonb_array_length(parts) > 1000 then
        raise exception 'memory: parts must be a JSON array of 1 to 1000 parts'
            using errcode = 'ME022', hint = 'e.g. [{"type": "text", "text": "Hello"}]';
    end if;
    if role is null or role not in ('system', 'developer', 'user', 'assistant', 'tool') then
        raise exception 'memory: unknown role %', coalesce(quote_literal(role), 'null')
            using errcode = 'ME010',
                  hint = 'role must be one of system, developer, user, assistant, tool';
    end if;
    select array_agg(memory._check_part(role, p.value, p.ordinality::integer) order by p.ordinality)
      into v_checked
      from jsonb_array_elements(parts) with ordinality as p;
    parts := to_jsonb(v_checked);
    tool_parts := jsonb_array_length(jsonb_path_query_array(
                      parts, '$[*] ? (@.type == "tool_call" || @.type == "tool_result")'));
    if name is null and jsonb_array_length(parts) = 1 and parts -> 0 ->> 'type' = 'text' then
        -- One text part and no name is plain text: stored and read as before.
        plain := parts -> 0 ->> 'text';
        return;
    end if;
    document := jsonb_build_object('parts', parts);
    if name is not null then
        document := document || jsonb_build_object('name', name);
    end if;
end;
$fn$;

comment on function memory._check_parts(text, text, jsonb, text) is
$$Check a message given as `parts` (or as `content` with a `name`) and return
the `document` to store ({"parts": [...], "name": ...}) with its tool part
count (memory._parts_estimate estimates its tokens when no count is given),
or `plain` text when the parts are one text part without a name. Errors:
ME002 content and parts both given; ME008 a part over its size limit; ME010
unknown role; ME022 a bad part (unknown type or field, a tool result without
a call id, arguments that are not an object, a part the role may not hold, a
data: URL).$$;

-------------------------------------------------------------------------------
-- _parts_estimate: the token estimate of a structured message.
create or replace function memory._parts_estimate(
    document jsonb
)
returns integer
language plpgsql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    -- A documented estimate (the client sends exact counts): the text and the
    -- framing of OpenAI's accounting (pymem.transcript.tokens).
    return memory.estimate_tokens(memory._parts_text(document -> 'parts', true))
           + (select coalesce(sum(case p ->> 'type' when 'tool_call' then 7
                                                   when 'tool_result' then 4
                                                   when 'image' then 85 else 0 end), 0)
                from jsonb_array_elements(document -> 'parts') as p)::integer
           + case when document ? 'name'
                  then 1 + memory.estimate_tokens(document ->> 'name') else 0 end;
end;
$fn$;

comment on function memory._parts_estimate(jsonb) is
$$The token estimate stored for a structured message given no count: its
searchable text (memory._parts_text) by memory.estimate_tokens, plus 7 per
tool call, 4 per tool result and 85 per image, plus 1 and the name's
estimate when it has a name (the framing pymem.transcript.tokens counts).
Called only when no count is given; null for a null document.$$;

-------------------------------------------------------------------------------
-- _pii_json: a personal data policy applied to every string of a JSON value.
create or replace function memory._pii_json(
    policy      jsonb,
    value       jsonb,
    skip        text[] default '{}',
    out cleaned jsonb,
    out kinds   text[]
)
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    r     record;
    v_sub record;
begin
    kinds := '{}';
    case jsonb_typeof(value)
        when 'string' then
            select p.content, p.kinds into r from memory._apply_pii(policy, value #>> '{}') as p;
            cleaned := to_jsonb(r.content);
            kinds := r.kinds;
        when 'array' then
            cleaned := '[]'::jsonb;
            for r in select e.value from jsonb_array_elements(value) with ordinality as e
                      order by e.ordinality loop
                v_sub := memory._pii_json(policy, r.value);
                cleaned := cleaned || jsonb_build_array(v_sub.cleaned);
                kinds := kinds || v_sub.kinds;
            end loop;
        when 'object' then
            cleaned := '{}'::jsonb;
            for r in select e.key, e.value from jsonb_each(value) as e loop
                if r.key = any (skip) then
                    cleaned := cleaned || jsonb_build_object(r.key, r.value);
                    continue;
                end if;
                v_sub := memory._pii_json(policy, r.value);
                cleaned := cleaned || jsonb_build_object(r.key, v_sub.cleaned);
                kinds := kinds || v_sub.kinds;
            end loop;
        else
            cleaned := value;
    end case;
    select coalesce(array_agg(distinct k order by k), '{}') into kinds from unnest(kinds) as k;
end;
$fn$;

comment on function memory._pii_json(jsonb, jsonb, text[]) is
$$Apply a personal data policy (memory._apply_pii) to every string in a JSON
value, at any depth, leaving the keys in `skip` of the top object as they are;
returns the cleaned value and the kinds acted on. Errors: ME019 blocked.$$;

-------------------------------------------------------------------------------
-- _search_vector: the full-text lexemes of a stored message.
create or replace function memory._search_vector(
    stored     text,
    structured boolean
)
returns tsvector
language sql
immutable parallel safe security invoker
return to_tsvector('english'::regconfig,
                   case when structured then memory._parts_text(stored::jsonb -> 'parts', true)
                        else stored end);

comment on function memory._search_vector(text, boolean) is
$$The english full-text vector of a stored message (revealed): its text, or
for a structured message its searchable part text (memory._parts_text), as
memory.append and memory.reencrypt store it in `search`.$$;
