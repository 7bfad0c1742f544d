-- Personal data detection and redaction, applied at append by tenant policy.

-------------------------------------------------------------------------------
-- _luhn: does a digit string pass the Luhn checksum (payment cards)?
create or replace function memory._luhn(
    digits text
)
returns boolean
language plpgsql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_sum integer := 0;
    v_d   integer;
    v_n   integer := char_length(digits);
begin
    if digits !~ '^[0-9]{12,19}$' then
        return false;
    end if;
    for i in 0 .. v_n - 1 loop
        v_d := substr(digits, v_n - i, 1)::integer;
        if i % 2 = 1 then
            v_d := v_d * 2;
            if v_d > 9 then
                v_d := v_d - 9;
            end if;
        end if;
        v_sum := v_sum + v_d;
    end loop;
    return v_sum % 10 = 0;
end;
$fn$;

comment on function memory._luhn(text) is
$$True when `digits` (12 to 19 digits) passes the Luhn checksum.$$;

-------------------------------------------------------------------------------
-- _iban_ok: does a string pass the IBAN mod-97 check?
create or replace function memory._iban_ok(
    iban text
)
returns boolean
language sql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
return case
    when upper(replace(iban, ' ', '')) !~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$' then false
    else (select string_agg(case when c ~ '[A-Z]' then (ascii(c) - 55)::text else c end, ''
                            order by o)
            from unnest(string_to_array(
                     substr(upper(replace(iban, ' ', '')), 5)
                     || substr(upper(replace(iban, ' ', '')), 1, 4), null))
                 with ordinality as u (c, o))::numeric % 97 = 1
end;

comment on function memory._iban_ok(text) is
$$True when `iban` (spaces allowed) has an IBAN's shape and its mod-97 check holds.$$;

-------------------------------------------------------------------------------
-- pii_scan: the personal data found in a text.
create or replace function memory.pii_scan(
    content text
)
returns table (
    kind  text,
    value text
)
language plpgsql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    m       text[];
    v_taken text[] := '{}';
begin
    for m in select regexp_matches(content,
                 '-----BEGIN [A-Z ]*PRIVATE KEY-----|\m(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\mAKIA[0-9A-Z]{16}\M|\mgh[pousr]_[A-Za-z0-9]{36}\M|\mxox[abpr]-[A-Za-z0-9-]{10,}',
                 'g') loop
        kind := 'secret'; value := m[1]; v_taken := v_taken || m[1]; return next;
    end loop;
    for m in select regexp_matches(content, '([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') loop
        kind := 'email'; value := m[1]; v_taken := v_taken || m[1]; return next;
    end loop;
    for m in select regexp_matches(content, '\m([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})\M', 'g') loop
        if memory._iban_ok(m[1]) then
            kind := 'iban'; value := m[1]; v_taken := v_taken || m[1]; return next;
        end if;
    end loop;
    for m in select regexp_matches(content, '(?:^|[^0-9])((?:[0-9][ -]?){11,18}[0-9])(?![0-9])', 'g') loop
        continue when exists (select 1 from unnest(v_taken) as t where strpos(t, m[1]) > 0);
        if memory._luhn(regexp_replace(m[1], '[ -]', '', 'g')) then
            kind := 'card'; value := m[1]; v_taken := v_taken || m[1]; return next;
        end if;
    end loop;
    for m in select regexp_matches(content, '\m([0-9]{1,3}(?:\.[0-9]{1,3}){3})\M', 'g') loop
        if (select bool_and(o::integer <= 255) from unnest(string_to_array(m[1], '.')) as o) then
            kind := 'ip'; value := m[1]; v_taken := v_taken || m[1]; return next;
        end if;
    end loop;
    for m in select regexp_matches(content, '((?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?)', 'g') loop
        if m[1] ~ '[0-9A-Fa-f]{1,4}:.*:' then
            kind := 'ip'; value := m[1]; v_taken := v_taken || m[1]; return next;
        end if;
    end loop;
    for m in select regexp_matches(content, '\m([0-9]{3}-[0-9]{2}-[0-9]{4}|[A-CEGHJ-PR-TW-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D])\M', 'g') loop
        kind := 'national_id'; value := m[1]; v_taken := v_taken || m[1]; return next;
    end loop;
    for m in select regexp_matches(content, '((?:\+[0-9]{1,3}[ .-]?)?(?:\(0?[0-9]{1,4}\)[ .-]?)?[0-9]{2,8}(?:[ .-][0-9]{2,8}){0,4}|\+?[0-9]{9,15})(?:x[0-9]{1,5})?', 'g') loop
        -- Not a phone: too few or too many digits, or part of something found above.
        continue when char_length(regexp_replace(m[1], '[^0-9]', '', 'g')) not between 9 and 15;
        continue when exists (select 1 from unnest(v_taken) as t where strpos(t, m[1]) > 0);
        continue when memory._luhn(regexp_replace(m[1], '[^0-9]', '', 'g'));
        kind := 'phone'; value := m[1]; return next;
    end loop;
end;
$fn$;

comment on function memory.pii_scan(text) is
$$Return the personal data found in `content`: kind (secret, email, iban,
card, ip, national_id, phone) and the matched text (value). Cards must pass the Luhn
check, IBANs the mod-97 check, IPv4 octets must be <= 255; phone numbers are
9 to 15 digits not already taken as a card or an identifier.
Example: select * from memory.pii_scan('mail me at ann@example.org');$$;

-------------------------------------------------------------------------------
-- redact: replace or mask the personal data in a text.
create or replace function memory.redact(
    content text,
    action  text default 'redact'
)
returns table (
    redacted text,
    kinds    text[]
)
language plpgsql
immutable parallel safe security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if action is null or action not in ('redact', 'mask', 'tag') then
        raise exception 'memory: unknown redaction action %', coalesce(quote_literal(action), 'null')
            using errcode = 'ME002', hint = 'action must be redact, mask or tag';
    end if;
    if content is null then
        return query select null::text, '{}'::text[];
        return;
    end if;
    -- One action for every kind: the policy memory.append applies, in short.
    return query
        select p.content, p.kinds
          from memory._apply_pii(jsonb_build_object('default', action), content) as p;
end;
$fn$;

comment on function memory.redact(text, text) is
$$Return `content` with its personal data replaced ('redact': [EMAIL], [CARD],
...), masked but for the last 4 characters ('mask'), or unchanged ('tag'),
and the kinds found. Errors: ME002 unknown action.
Example: select * from memory.redact('card 4111 1111 1111 1111', 'mask');$$;

-------------------------------------------------------------------------------
-- _apply_pii: a tenant policy applied to one text.
create or replace function memory._apply_pii(
    policy   jsonb,
    original text
)
returns table (
    content text,
    kinds   text[]
)
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    r        record;
    v_text   text := _apply_pii.original;
    v_kinds  text[] := '{}';
    v_action text;
begin
    -- Longest matches first, so a match inside another is not replaced half-way.
    for r in select s.kind, s.value from memory.pii_scan(_apply_pii.original) as s
              order by char_length(s.value) desc loop
        v_action := coalesce(policy ->> r.kind, policy ->> 'default', 'off');
        continue when v_action = 'off';
        if v_action = 'block' then
            -- Name the kind, never the value: the error may be logged.
            raise exception 'memory: the message contains personal data (%) that this tenant''s policy blocks', r.kind
                using errcode = 'ME019',
                      hint = 'remove it before storing, or change the policy with memory.configure_pii';
        end if;
        if not (r.kind = any (v_kinds)) then
            v_kinds := v_kinds || r.kind;
        end if;
        if v_action = 'redact' then
            v_text := replace(v_text, r.value, '[' || upper(r.kind) || ']');
        elsif v_action = 'mask' then
            v_text := replace(v_text, r.value,
                              regexp_replace(left(r.value, -4), '[A-Za-z0-9]', '*', 'g')
                              || right(r.value, 4));
        end if;
    end loop;
    return query select v_text, coalesce((select array_agg(k order by k) from unnest(v_kinds) as k),
                                         '{}'::text[]);
end;
$fn$;

comment on function memory._apply_pii(jsonb, text) is
$$Apply a personal data policy ({kind or "default": off|redact|mask|block|tag})
to `original`: the text to store and the kinds acted on (for metadata.pii).
Errors: ME019 when a kind found is set to block.$$;

-------------------------------------------------------------------------------
-- configure_pii: set a tenant's personal data policy.
create or replace function memory.configure_pii(
    tenant text,
    policy jsonb
)
returns jsonb
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_bad text;
begin
    perform memory._tenant_guard(configure_pii.tenant);
    perform memory._check_ident('tenant', configure_pii.tenant);
    if configure_pii.policy is null or jsonb_typeof(configure_pii.policy) <> 'object' then
        raise exception 'memory: a personal data policy is a JSON object'
            using errcode = 'ME002', hint = 'e.g. {"default": "redact", "card": "block"}';
    end if;
    -- Kinds beyond the SQL rules' (person, location, ...) are for Python
    -- classifiers (pymem.pii.PiiFilter): any short lower-case name.
    select e.key into v_bad
      from jsonb_each(configure_pii.policy) as e
     where e.key !~ '^[a-z][a-z0-9_]{0,39}$'
     limit 1;
    if found then
        raise exception 'memory: % is not a kind of personal data', quote_literal(v_bad)
            using errcode = 'ME002',
                  hint = 'kinds: email, phone, card, iban, ip, national_id, secret, default, '
                         'or a lower-case name your Python classifiers report';
    end if;
    select e.key into v_bad
      from jsonb_each(configure_pii.policy) as e
     where jsonb_typeof(e.value) <> 'string'
        or e.value #>> '{}' not in ('off', 'redact', 'mask', 'block', 'tag')
     limit 1;
    if found then
        raise exception 'memory: unknown action for %', quote_literal(v_bad)
            using errcode = 'ME002', hint = 'actions: off, redact, mask, block, tag';
    end if;
    insert into memory.tenants as t (tenant_id, pii_policy)
    values (configure_pii.tenant, configure_pii.policy)
    on conflict (tenant_id) do update set pii_policy = excluded.pii_policy;
    return configure_pii.policy;
end;
$fn$;

comment on function memory.configure_pii(text, jsonb) is
$$Set how memory.append treats personal data for `tenant`: a JSON object from
kind (email, phone, card, iban, ip, national_id, secret; other lower-case names
for Python classifiers such as person) or "default" to an
action: off, redact ([EMAIL]), mask (all but the last 4 characters), block
(the append fails with ME019, nothing is written) or tag (text kept). Kinds
acted on are listed in the message's metadata under "pii". The policy applies
before hashing, encryption, caching and audit. '{}' turns it off.
Errors: ME002 unknown kind or action.
Example: select memory.configure_pii('acme', '{"default": "redact", "card": "block"}');$$;

-------------------------------------------------------------------------------
-- pii_policy: read a tenant's policy.
create or replace function memory.pii_policy(
    tenant text
)
returns jsonb
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(pii_policy.tenant);
    return coalesce((select t.pii_policy from memory.tenants as t
                      where t.tenant_id = pii_policy.tenant), '{}'::jsonb);
end;
$fn$;

comment on function memory.pii_policy(text) is
$$The personal data policy of `tenant` ('{}' when none), as set by
memory.configure_pii. Python classifiers apply it to what they find.
Example: select memory.pii_policy('acme');$$;

-------------------------------------------------------------------------------
-- apply_pii_policy: a text as the tenant's policy would store it.
create or replace function memory.apply_pii_policy(
    tenant  text,
    content text
)
returns text
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(apply_pii_policy.tenant);
    return (select p.content
              from memory._apply_pii(memory.pii_policy(apply_pii_policy.tenant),
                                     apply_pii_policy.content) as p);
exception
    when sqlstate 'ME019' then
        return null;  -- blocked: nothing of it may be kept
end;
$fn$;

comment on function memory.apply_pii_policy(text, text) is
$$Return `content` as `tenant`'s personal data policy would store it
(redacted, masked or tagged kinds applied), or null when the policy blocks a
kind it contains. Stores nothing. pymem uses it before a search query is
recorded on a trace span (Tracing(record_query=True)).
Example: select memory.apply_pii_policy('acme', 'mail me at ann@example.com');$$;
