-- The only SQL text pymem's Python layer sends. Each block is one call of a
-- memory.* function; the logic lives in sql/.

-- name: set_tenant
-- Act for a tenant until the end of this transaction (row-level security).
select set_config('pymem.tenant', %(tenant)s, true);

-- name: append
-- Store one message; returns (seq, created_at, duplicate).
select * from memory.append(
    tenant => %(tenant)s, session => %(session)s, role => %(role)s, content => %(content)s,
    tokens => %(tokens)s::integer, metadata => %(metadata)s::jsonb,
    embedding => %(embedding)s::public.vector,
    idempotency_key => %(idempotency_key)s, user_id => %(user_id)s);

-- name: append_many
-- Store a batch in order, all or nothing; one row per message.
select * from memory.append_many(
    tenant => %(tenant)s, session => %(session)s,
    messages => array(
        select row(m.role, m.content, m.tokens, m.metadata, m.embedding::public.vector,
                   m.idempotency_key)::memory.message_input
          from unnest(%(roles)s::text[], %(contents)s::text[], %(tokens)s::integer[],
                      %(metadatas)s::jsonb[], %(embeddings)s::text[], %(keys)s::text[])
               with ordinality as m (role, content, tokens, metadata, embedding,
                                     idempotency_key, ord)
         order by m.ord),
    user_id => %(user_id)s);

-- name: history
-- One page of messages after a seq, in conversation order.
select * from memory.history(%(tenant)s, %(session)s, %(after_seq)s::bigint, %(page_size)s::integer);

-- name: last_messages
-- The newest messages, in conversation order.
select * from memory.last_messages(%(tenant)s, %(session)s, %(count)s::integer);

-- name: context
-- The context window within a token budget.
select * from memory.context(
    tenant => %(tenant)s, session => %(session)s, budget => %(budget)s::integer, query => %(query)s,
    query_embedding => %(query_embedding)s::public.vector, strategy => %(strategy)s,
    message_overhead => %(message_overhead)s::integer,
    summary_share => %(summary_share)s::double precision,
    recent_share => %(recent_share)s::double precision);

-- name: session_info
-- One session's counters and settings.
select * from memory.session_info(%(tenant)s, %(session)s);

-- name: list_sessions
-- A page of a tenant's sessions.
select * from memory.list_sessions(
    tenant => %(tenant)s, owner => %(owner)s, include_deleted => %(include_deleted)s,
    after_session => %(after_session)s, page_size => %(page_size)s::integer);

-- name: extend_session
-- Push a session's expiry; returns the new expiry.
select memory.extend_session(%(tenant)s, %(session)s, %(ttl)s) as expires_at;

-- name: configure_session
-- Set a session's caps and metadata.
select memory.configure_session(
    tenant => %(tenant)s, session => %(session)s, max_messages => %(max_messages)s::integer,
    max_tokens => %(max_tokens)s::bigint, metadata => %(metadata)s::jsonb,
    summary_every_tokens => %(summary_every_tokens)s::integer);

-- name: configure_tenant
-- Set a tenant's default caps and TTL.
select memory.configure_tenant(
    tenant => %(tenant)s, max_messages => %(max_messages)s::integer, max_tokens => %(max_tokens)s::bigint,
    default_ttl => %(default_ttl)s);

-- name: delete_session
-- Soft delete; returns the deletion time.
select memory.delete_session(%(tenant)s, %(session)s) as deleted_at;

-- name: restore_session
-- Undo a soft delete.
select memory.restore_session(%(tenant)s, %(session)s);

-- name: purge_session
-- Hard delete; returns the number of messages removed.
select memory.purge_session(%(tenant)s, %(session)s) as purged;

-- name: stats
-- Totals per tenant.
select * from memory.stats(%(tenant)s);

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
select * from memory.recall(
    tenant => %(tenant)s, session => %(session)s, query => %(query)s,
    query_embedding => %(query_embedding)s::public.vector, before_seq => %(before_seq)s::bigint,
    max_rows => %(max_rows)s::integer);

-- name: list_summaries
-- A session's digests.
select * from memory.list_summaries(%(tenant)s, %(session)s);

-- name: add_summary
-- Store a digest; returns its id.
select memory.add_summary(
    tenant => %(tenant)s, session => %(session)s, level => %(level)s::integer,
    seq_from => %(seq_from)s::bigint, seq_to => %(seq_to)s::bigint, content => %(content)s,
    tokens => %(tokens)s::integer, metadata => %(metadata)s::jsonb) as summary_id;

-- name: configure_recall
-- A tenant's background work policy.
select memory.configure_recall(
    tenant => %(tenant)s, summary_every_tokens => %(summary_every_tokens)s::integer,
    embed_messages => %(embed_messages)s);

-- name: claim_jobs
-- Lease ready jobs to a worker.
select * from memory.claim_jobs(
    worker => %(worker)s, kinds => %(kinds)s::text[], max_jobs => %(max_jobs)s::integer,
    lease => %(lease)s);

-- name: complete_job
-- Finish a job; returns its new status.
select memory.complete_job(%(tenant)s, %(session)s, %(kind)s, %(worker)s) as status;

-- name: fail_job
-- Record a failed attempt; returns the new status.
select memory.fail_job(%(tenant)s, %(session)s, %(kind)s, %(worker)s, %(error)s,
                       %(max_attempts)s::integer) as status;

-- name: job_stats
-- Jobs by kind and status.
select * from memory.job_stats();

-- name: messages_to_embed
-- Messages without an embedding, oldest first.
select * from memory.messages_to_embed(%(tenant)s, %(session)s, %(max_count)s::integer);

-- name: set_embeddings
-- Store embeddings by seq; returns how many were stored.
select memory.set_embeddings(%(tenant)s, %(session)s, %(seqs)s::bigint[],
                             %(embeddings)s::text[]::public.vector[]) as updated;

-- name: summary_cadence
-- Unsummarized tokens that make a level-1 digest (null: summaries off).
select memory.summary_cadence(%(tenant)s, %(session)s) as cadence;

-- name: export_subject
-- Everything held about one user, as JSON.
select memory.export_subject(%(tenant)s, %(user_id)s) as document;

-- name: erase_subject
-- Erase a user's sessions; one row per erased session.
select * from memory.erase_subject(%(tenant)s, %(user_id)s);

-- name: configure_pii
-- Set a tenant's personal data policy.
select memory.configure_pii(%(tenant)s, %(policy)s::jsonb);

-- name: pii_policy
-- A tenant's personal data policy.
select memory.pii_policy(%(tenant)s);
