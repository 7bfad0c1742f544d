-- Core state: settings, tenants, sessions, messages (partitioned by month on
-- created_at, with a default partition so an insert never fails for want of
-- one), idempotency keys, summaries, and the composite types the functions
-- exchange. New tables only: nothing existing is locked or rewritten.
-- depends: pymem_0001_create_schema

-- One row of installation-wide settings.
create table memory.settings (
    singleton     boolean primary key default true,
    embedding_dim integer not null default 1536,
    constraint settings_singleton check (singleton),
    constraint settings_embedding_dim_range check (embedding_dim between 1 and 16000)
);
insert into memory.settings default values;

create table memory.tenants (
    tenant_id    text primary key,
    max_messages integer,
    max_tokens   bigint,
    default_ttl  interval,
    settings     jsonb not null default '{}'::jsonb,
    created_at   timestamptz not null default now(),
    constraint tenants_max_messages_positive check (max_messages > 0),
    constraint tenants_max_tokens_positive check (max_tokens > 0),
    constraint tenants_default_ttl_positive check (default_ttl > interval '0'),
    constraint tenants_settings_object check (jsonb_typeof(settings) = 'object')
);

create table memory.sessions (
    tenant_id       text not null,
    session_id      text not null,
    user_id         text,
    last_seq        bigint not null default 0,
    first_seq       bigint not null default 1,
    message_count   bigint not null default 0,
    token_count     bigint not null default 0,
    summarized_upto bigint not null default 0,
    max_messages    integer,
    max_tokens      bigint,
    metadata        jsonb not null default '{}'::jsonb,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    expires_at      timestamptz,
    deleted_at      timestamptz,
    primary key (tenant_id, session_id),
    constraint sessions_last_seq_nonnegative check (last_seq >= 0),
    constraint sessions_first_seq_positive check (first_seq >= 1),
    constraint sessions_counts_nonnegative check (message_count >= 0 and token_count >= 0),
    constraint sessions_max_messages_positive check (max_messages > 0),
    constraint sessions_max_tokens_positive check (max_tokens > 0),
    constraint sessions_metadata_object check (jsonb_typeof(metadata) = 'object')
)
-- Every append updates its session row: free space on each page keeps those
-- updates HOT (no index writes, less bloat).
with (fillfactor = 50);
create index sessions_user_idx on memory.sessions (tenant_id, user_id, session_id);
create index sessions_expires_at_idx on memory.sessions (expires_at)
    where expires_at is not null;

-- Messages. `seq` is unique per session: PostgreSQL cannot enforce a unique
-- constraint that leaves out the partition key, so uniqueness comes from the
-- session row lock taken by memory.append (tested under concurrency).
create table memory.messages (
    tenant_id        text not null,
    session_id       text not null,
    seq              bigint not null,
    role             text not null,
    content          text not null,
    tokens           integer not null,
    tokens_estimated boolean not null default false,
    metadata         jsonb not null default '{}'::jsonb,
    embedding        public.vector,
    search           tsvector generated always as (to_tsvector('english'::regconfig, content)) stored,
    idempotency_key  text,
    created_at       timestamptz not null default now(),
    primary key (tenant_id, session_id, seq, created_at),
    constraint messages_seq_positive check (seq >= 1),
    constraint messages_tokens_nonnegative check (tokens >= 0),
    constraint messages_metadata_object check (jsonb_typeof(metadata) = 'object')
) partition by range (created_at);

-- Catches rows outside every monthly partition (clock skew, backfills) so an
-- append never fails; memory.ensure_partitions moves them out.
create table memory.messages_default partition of memory.messages default;

-- Idempotency keys need a real unique constraint, hence their own table.
create table memory.idempotency_keys (
    tenant_id       text not null,
    session_id      text not null,
    idempotency_key text not null,
    seq             bigint not null,
    request_hash    text not null,
    created_at      timestamptz not null,
    primary key (tenant_id, session_id, idempotency_key)
);

create table memory.summaries (
    tenant_id  text not null,
    session_id text not null,
    summary_id bigint generated always as identity,
    level      integer not null default 1,
    seq_from   bigint not null,
    seq_to     bigint not null,
    content    text not null,
    tokens     integer not null,
    metadata   jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    primary key (tenant_id, session_id, summary_id),
    constraint summaries_range_valid check (seq_from >= 1 and seq_to >= seq_from),
    constraint summaries_level_positive check (level >= 1),
    constraint summaries_tokens_nonnegative check (tokens >= 0)
);
create index summaries_coverage_idx on memory.summaries (tenant_id, session_id, seq_to);

-- What memory.append and memory.append_many return per message.
create type memory.append_result as (
    seq        bigint,
    created_at timestamptz,
    duplicate  boolean
);

-- One message of a batch for memory.append_many.
create type memory.message_input as (
    role            text,
    content         text,
    tokens          integer,
    metadata        jsonb,
    embedding       public.vector,
    idempotency_key text
);
