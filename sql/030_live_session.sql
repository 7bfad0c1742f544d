-- The session a read or write may touch: it exists, is not deleted and has
-- not expired.

-------------------------------------------------------------------------------
-- _live_session: raise unless the session exists, is not deleted and has not expired.
create or replace function memory._live_session(
    tenant  text,
    session text
)
returns memory.sessions
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_session memory.sessions;
begin
    perform memory._check_ident('tenant', _live_session.tenant);
    perform memory._check_ident('session', _live_session.session);
    select s.* into v_session
      from memory.sessions as s
     where s.tenant_id = _live_session.tenant
       and s.session_id = _live_session.session;
    if not found then
        raise exception 'memory: session %/% not found', tenant, session
            using errcode = 'ME001', hint = 'sessions are created by the first memory.append';
    end if;
    if v_session.deleted_at is not null then
        raise exception 'memory: session %/% is deleted', tenant, session
            using errcode = 'ME003',
                  hint = 'restore it with memory.restore_session or remove it with memory.purge_session';
    end if;
    if v_session.expires_at <= now() then
        raise exception 'memory: session %/% expired at %', tenant, session, v_session.expires_at
            using errcode = 'ME020',
                  hint = 'extend sessions before they expire (memory.extend_session), or start a new one';
    end if;
    return v_session;
end;
$fn$;

comment on function memory._live_session(text, text) is
$$Return the session row. Errors: ME006 bad identifier; ME001 missing; ME003 deleted;
ME020 expired (expires_at has passed, even before memory.purge_expired runs).$$;

