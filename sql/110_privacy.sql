-- Data-subject rights: export everything held about a user, erase it all.

-------------------------------------------------------------------------------
-- _subject_ref: a pseudonymous reference to a user for the audit log.
create or replace function memory._subject_ref(
    tenant  text,
    user_id text
)
returns text
language sql
immutable strict parallel safe security invoker
set search_path = pg_catalog, pg_temp
return encode(public.digest(convert_to(tenant || chr(31) || user_id, 'UTF8'), 'sha256'), 'hex');

comment on function memory._subject_ref(text, text) is
$$SHA-256 (hex) of tenant and user id: what the audit log records instead of
the user id, so an erased subject leaves no identifier behind.$$;

-------------------------------------------------------------------------------
-- export_subject: everything held about one user of a tenant, as JSON.
create or replace function memory.export_subject(
    tenant  text,
    user_id text
)
returns jsonb
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_doc jsonb;
begin
    perform memory._tenant_guard(export_subject.tenant);
    perform memory._check_ident('tenant', export_subject.tenant);
    perform memory._check_ident('user_id', export_subject.user_id);
    select jsonb_build_object(
               'tenant', export_subject.tenant,
               'user_id', export_subject.user_id,
               'exported_at', now(),
               'sessions', coalesce(jsonb_agg(jsonb_build_object(
                   'session_id', s.session_id,
                   'created_at', s.created_at,
                   'updated_at', s.updated_at,
                   'expires_at', s.expires_at,
                   'deleted_at', s.deleted_at,
                   'metadata', s.metadata,
                   'messages', (select coalesce(jsonb_agg(jsonb_build_object(
                                    'seq', m.seq, 'role', m.role, 'content', u.content,
                                    'tokens', m.tokens, 'metadata', m.metadata,
                                    'created_at', m.created_at)
                                    -- A structured message adds its parts and name.
                                    || case when m.structured
                                            then jsonb_strip_nulls(jsonb_build_object(
                                                     'parts', u.parts, 'name', u.name))
                                            else '{}'::jsonb end
                                    order by m.seq), '[]'::jsonb)
                                  from memory.messages as m
                                       cross join lateral memory._turn(
                                           memory._reveal(m.content, m.sealed, m.key_version,
                                                          (select memory._data_keys(export_subject.tenant))),
                                           m.structured) as u
                                 where m.tenant_id = s.tenant_id
                                   and m.session_id = s.session_id),
                   'summaries', (select coalesce(jsonb_agg(jsonb_build_object(
                                     'level', d.level, 'seq_from', d.seq_from,
                                     'seq_to', d.seq_to,
                                     'content', memory._reveal(d.content, d.sealed, d.key_version,
                                                               (select memory._data_keys(export_subject.tenant))),
                                     'created_at', d.created_at) order by d.seq_from, d.level),
                                     '[]'::jsonb)
                                   from memory.summaries as d
                                  where d.tenant_id = s.tenant_id
                                    and d.session_id = s.session_id)
               ) order by s.session_id), '[]'::jsonb))
      into v_doc
      from memory.sessions as s
     where s.tenant_id = export_subject.tenant
       and s.user_id = export_subject.user_id;
    perform memory._audit(export_subject.tenant, 'subject.export', 'subject',
                          memory._subject_ref(export_subject.tenant, export_subject.user_id),
                          jsonb_build_object('sessions', jsonb_array_length(v_doc -> 'sessions')));
    return v_doc;
end;
$fn$;

comment on function memory.export_subject(text, text) is
$$Return everything held about `user_id` in `tenant` as one JSON document:
each of the user's sessions (deleted ones too) with its metadata, messages
and digests. Records 'subject.export' in the audit log under a pseudonymous
reference (no user id, no content). Errors: ME006 bad identifier.
Example: select memory.export_subject('acme', 'u-7');$$;

-------------------------------------------------------------------------------
-- erase_subject: remove everything held about one user of a tenant.
create or replace function memory.erase_subject(
    tenant  text,
    user_id text
)
returns table (
    session_id text,
    messages   bigint
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_session text;
    v_count   integer := 0;
    v_total   bigint := 0;
    v_n       bigint;
begin
    perform memory._tenant_guard(erase_subject.tenant);
    perform memory._check_ident('tenant', erase_subject.tenant);
    perform memory._check_ident('user_id', erase_subject.user_id);
    for v_session in
        select s.session_id
          from memory.sessions as s
         where s.tenant_id = erase_subject.tenant
           and s.user_id = erase_subject.user_id
         order by s.session_id
           for update
    loop
        -- Messages (every partition, embeddings with them), idempotency keys,
        -- digests and the session row go with purge_session; queued work too.
        v_n := memory.purge_session(erase_subject.tenant, v_session);
        delete from memory.jobs as j
         where j.tenant_id = erase_subject.tenant
           and j.session_id = v_session;
        v_count := v_count + 1;
        v_total := v_total + v_n;
        session_id := v_session;
        messages := v_n;
        return next;
    end loop;
    delete from memory.rate_limits as r
     where r.tenant_id = erase_subject.tenant
       and r.limit_key = 'user:' || erase_subject.user_id;
    perform memory._audit(erase_subject.tenant, 'subject.erase', 'subject',
                          memory._subject_ref(erase_subject.tenant, erase_subject.user_id),
                          jsonb_build_object('sessions', v_count, 'messages', v_total));
end;
$fn$;

comment on function memory.erase_subject(text, text) is
$$Erase everything held about `user_id` in `tenant`: every session of the
user (messages in every partition with their embeddings, idempotency keys,
digests, queued jobs) and the user's rate-limit state. Returns the erased
sessions with their message counts, and records 'subject.erase' in the audit
log under a pseudonymous reference, without content. Rows already copied to
backups or WAL archives are not reached: see docs/operations.md.
Errors: ME006 bad identifier.
Example: select * from memory.erase_subject('acme', 'u-7');$$;
