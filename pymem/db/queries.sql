-- The only SQL text pymem's Python layer sends. Each block is one call of a
-- memory.* function; the logic lives in sql/. A call for a tenant first sets
-- pymem.tenant for its own transaction (row-level security and the functions'
-- tenant guard read it): set_config in FROM, whose result the function takes
-- as its tenant, so it runs first, in the same statement and round trip.

-- name: set_tenant
-- Act for a tenant until the end of the current transaction (for your own SQL).
select set_config('pymem.tenant', %(tenant)s, true);

-- name: append
-- Store one message; returns (seq, created_at, duplicate).
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.append(
    tenant => t.tenant, session => %(session)s, role => %(role)s, content => %(content)s,
    tokens => %(tokens)s::integer, metadata => %(metadata)s::jsonb,
    embedding => %(embedding)s::public.vector,
    idempotency_key => %(idempotency_key)s, user_id => %(user_id)s,
    trace_context => %(trace_context)s, call_key => %(call_key)s,
    call_retried => %(call_retried)s, parts => %(parts)s::jsonb, name => %(name)s) as r;

-- name: append_many
-- Store a batch in order, all or nothing; one row per message.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.append_many(
    tenant => t.tenant, session => %(session)s,
    messages => array(
        select row(m.role, m.content, m.tokens, m.metadata, m.embedding::public.vector,
                   m.idempotency_key, m.parts, m.name)::memory.turn_input
          from unnest(%(roles)s::text[], %(contents)s::text[], %(token_counts)s::integer[],
                      %(metadatas)s::jsonb[], %(embeddings)s::text[],
                      %(idempotency_keys)s::text[], %(part_lists)s::jsonb[], %(names)s::text[])
               with ordinality as m (role, content, tokens, metadata, embedding,
                                     idempotency_key, parts, name, ord)
         order by m.ord),
    user_id => %(user_id)s, trace_context => %(trace_context)s,
    call_keys => %(call_keys)s::text[], call_retried => %(call_retried)s) as r;

-- name: history
-- One page of messages after a seq, in conversation order.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.history(t.tenant, %(session)s, %(after_seq)s::bigint, %(page_size)s::integer) as r;

-- name: last_messages
-- The newest messages, in conversation order.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.last_messages(t.tenant, %(session)s, %(count)s::integer) as r;

-- name: context
-- The context window within a token budget.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.context(
    tenant => t.tenant, session => %(session)s, budget => %(budget)s::integer, query => %(query)s,
    query_embedding => %(query_embedding)s::public.vector, strategy => %(strategy)s,
    message_overhead => %(message_overhead)s::integer,
    summary_share => %(summary_share)s::double precision,
    recent_share => %(recent_share)s::double precision,
    shorten_results => %(shorten_results)s::integer) as r;

-- name: session_info
-- One session's counters and settings.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.session_info(t.tenant, %(session)s) as r;

-- name: list_sessions
-- A page of a tenant's sessions.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.list_sessions(
    tenant => t.tenant, owner => %(owner)s, include_deleted => %(include_deleted)s,
    after_session => %(after_session)s, page_size => %(page_size)s::integer) as r;

-- name: extend_session
-- Push a session's expiry; returns the new expiry.
select memory.extend_session(t.tenant, %(session)s, %(ttl)s) as expires_at
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: configure_session
-- Set a session's caps and metadata.
select memory.configure_session(
    tenant => t.tenant, session => %(session)s, max_messages => %(max_messages)s::integer,
    max_tokens => %(max_tokens)s::bigint, metadata => %(metadata)s::jsonb,
    summary_every_tokens => %(summary_every_tokens)s::integer)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: configure_tenant
-- Set a tenant's default caps and TTL.
select memory.configure_tenant(
    tenant => t.tenant, max_messages => %(max_messages)s::integer, max_tokens => %(max_tokens)s::bigint,
    default_ttl => %(default_ttl)s, retention => %(retention)s::interval)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: delete_session
-- Soft delete; returns the deletion time.
select memory.delete_session(t.tenant, %(session)s) as deleted_at
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: restore_session
-- Undo a soft delete.
select memory.restore_session(t.tenant, %(session)s)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: purge_session
-- Hard delete; returns the number of messages removed.
select memory.purge_session(t.tenant, %(session)s) as purged
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: stats
-- Totals per tenant.
select r.* from set_config('pymem.tenant', coalesce(%(tenant)s, ''), true) as t (tenant),
     memory.stats(nullif(t.tenant, '')) as r;

-- name: maintain
-- Create partitions ahead and purge expired sessions.
select * from memory.maintain(%(months_ahead)s::integer);

-- name: schema_version
-- The pymem migrations applied to this database, newest last.
select migration_id from public._yoyo_migration
 where left(migration_id, 6) = 'pymem_'
 order by migration_id;

-- name: recall
-- Older turns ranked by relevance to a query.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.recall(
    tenant => t.tenant, session => %(session)s, query => %(query)s,
    query_embedding => %(query_embedding)s::public.vector, before_seq => %(before_seq)s::bigint,
    max_rows => %(max_rows)s::integer) as r;

-- name: list_summaries
-- A session's digests.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.list_summaries(t.tenant, %(session)s) as r;

-- name: add_summary
-- Store a digest; returns its id.
select memory.add_summary(
    tenant => t.tenant, session => %(session)s, level => %(level)s::integer,
    seq_from => %(seq_from)s::bigint, seq_to => %(seq_to)s::bigint, content => %(content)s,
    tokens => %(tokens)s::integer, metadata => %(metadata)s::jsonb) as summary_id
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: configure_recall
-- A tenant's background work policy.
select memory.configure_recall(
    tenant => t.tenant, summary_every_tokens => %(summary_every_tokens)s::integer,
    embed_messages => %(embed_messages)s)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: claim_jobs
-- Lease ready jobs to a worker.
select * from memory.claim_jobs(
    worker => %(worker)s, kinds => %(kinds)s::text[], max_jobs => %(max_jobs)s::integer,
    lease => %(lease)s);

-- name: complete_job
-- Finish a job; returns its new status.
select memory.complete_job(t.tenant, %(session)s, %(kind)s, %(worker)s) as status
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: fail_job
-- Record a failed attempt; returns the new status.
select memory.fail_job(t.tenant, %(session)s, %(kind)s, %(worker)s, %(error)s,
                       %(max_attempts)s::integer) as status
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: job_stats
-- Jobs by kind and status.
select * from memory.job_stats();

-- name: messages_to_embed
-- Messages without an embedding, oldest first.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.messages_to_embed(t.tenant, %(session)s, %(max_count)s::integer) as r;

-- name: set_embeddings
-- Store embeddings by seq; returns how many were stored.
select memory.set_embeddings(t.tenant, %(session)s, %(seqs)s::bigint[],
                             %(embeddings)s::text[]::public.vector[]) as updated
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: summary_cadence
-- Unsummarized tokens that make a level-1 digest (null: summaries off).
select memory.summary_cadence(t.tenant, %(session)s) as cadence
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: count_terms
-- Count the lexemes of a session's uncounted turns for recall; returns turns read.
select memory.count_terms(t.tenant, %(session)s, %(max_turns)s::integer) as turns
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: export_subject
-- Everything held about one user, as JSON.
select memory.export_subject(t.tenant, %(user_id)s) as document
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: erase_subject
-- Erase a user's sessions; one row per erased session.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.erase_subject(t.tenant, %(user_id)s) as r;

-- name: configure_pii
-- Set a tenant's personal data policy.
select memory.configure_pii(t.tenant, %(policy)s::jsonb)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: pii_policy
-- A tenant's personal data policy.
select memory.pii_policy(t.tenant)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: rate_limit
-- Take `cost` units of one limit (GCRA); returns (allowed, retry_after, remaining).
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.rate_limit(t.tenant, %(key)s, %(count)s::integer, %(period)s::interval,
                       %(cost)s::integer) as r;

-- name: metrics
-- The database's figures for monitoring (pymem exporter).
select metric, labels, value, description from memory.metrics(%(per_tenant)s::boolean);

-- name: apply_pii_policy
-- A text as the tenant's personal data policy would store it (null: blocked).
select memory.apply_pii_policy(t.tenant, %(content)s)
  from set_config('pymem.tenant', %(tenant)s, true) as t (tenant);

-- name: maintain_if_due
-- Housekeeping unless it ran within `every` or runs elsewhere now, committed
-- step by step (the connection is in autocommit).
call memory.maintain_in_steps(%(every)s::interval);

-- name: maintenance_job
-- The pg_cron job that maintains this database: name, command, database.
select job_name, command, database from memory.maintenance_job(%(every)s::interval);

-- name: schedule_maintenance
-- Register the maintenance job with pg_cron in this database; its id.
select memory.schedule_maintenance(%(schedule)s, %(every)s::interval);

-- name: unschedule_maintenance
-- Remove the maintenance job from pg_cron in this database.
select memory.unschedule_maintenance();

-- name: cron_schedule_in_database
-- From pg_cron's database: register (or replace) a job that runs elsewhere.
select cron.schedule_in_database(%(job_name)s, %(schedule)s, %(command)s, %(database)s);

-- name: cron_unschedule
-- From pg_cron's database: remove the caller's job of this name, if any.
select coalesce(bool_or(cron.unschedule(j.jobid)), false)
  from cron.job as j
 where j.jobname = %(job_name)s and j.username = current_user;

-- name: cron_job
-- From pg_cron's database: the caller's job of this name.
select j.jobid, j.schedule, j.command, j.database, j.active
  from cron.job as j
 where j.jobname = %(job_name)s and j.username = current_user;

-- name: set_timeouts
-- A call's remaining deadline as the connection's statement and lock timeouts (ms).
select set_config('statement_timeout', %(ms)s, false),
       set_config('lock_timeout', %(ms)s, false);

-- name: pop_message
-- Remove a session's newest message and return it.
select r.* from set_config('pymem.tenant', %(tenant)s, true) as t (tenant),
     memory.pop_message(t.tenant, %(session)s) as r;
