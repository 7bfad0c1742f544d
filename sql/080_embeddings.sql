-- Embeddings filled in the background by `pymem worker`.

-------------------------------------------------------------------------------
-- messages_to_embed: the oldest messages of a session without an embedding.
create or replace function memory.messages_to_embed(
    tenant    text,
    session   text,
    max_count integer default 64
)
returns table (
    seq     bigint,
    content text
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(messages_to_embed.tenant);
    if max_count is null or max_count < 1 or max_count > 10000 then
        raise exception 'memory: max_count must be between 1 and 10000, got %', max_count
            using errcode = 'ME002', hint = 'embed in batches of a few dozen';
    end if;
    perform memory._check_ident('tenant', messages_to_embed.tenant);
    perform memory._check_ident('session', messages_to_embed.session);
    return query
        select m.seq,
               case when m.structured then memory._parts_text(r.stored::jsonb -> 'parts', true)
                    else r.stored end
          from memory.messages as m
               cross join lateral (
                   select memory._reveal(m.content, m.sealed, m.key_version,
                                         (select memory._data_keys(messages_to_embed.tenant))) as stored
               ) as r
         where m.tenant_id = messages_to_embed.tenant
           and m.session_id = messages_to_embed.session
           and m.embedding is null
         order by m.seq
         limit messages_to_embed.max_count;
end;
$fn$;

comment on function memory.messages_to_embed(text, text, integer) is
$$Return up to `max_count` messages of a session that have no embedding yet,
oldest first. Errors: ME002 bad max_count; ME006 bad identifier.
Example: select seq, content from memory.messages_to_embed('acme', 's-1', 32);$$;

-------------------------------------------------------------------------------
-- set_embeddings: store embeddings for messages, by seq.
create or replace function memory.set_embeddings(
    tenant     text,
    session    text,
    seqs       bigint[],
    embeddings public.vector[]
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_dim     integer;
    v_bad     integer;
    v_updated integer;
begin
    perform memory._tenant_guard(set_embeddings.tenant);
    perform memory._check_ident('tenant', set_embeddings.tenant);
    perform memory._check_ident('session', set_embeddings.session);
    if seqs is null or embeddings is null or cardinality(seqs) <> cardinality(embeddings) then
        raise exception 'memory: seqs and embeddings must be arrays of the same length'
            using errcode = 'ME002', hint = 'pass one embedding per seq';
    end if;
    select s.embedding_dim into v_dim from memory.settings as s;
    select count(*) into v_bad
      from unnest(embeddings) as e
     where e is null or public.vector_dims(e) <> v_dim;
    if v_bad > 0 then
        raise exception 'memory: % embeddings are null or not of dimension %', v_bad, v_dim
            using errcode = 'ME007',
                  hint = 'use the embedding model the database was configured for (memory.settings)';
    end if;
    update memory.messages as m
       set embedding = u.embedding
      from unnest(seqs, embeddings) as u (seq, embedding)
     where m.tenant_id = set_embeddings.tenant
       and m.session_id = set_embeddings.session
       and m.seq = u.seq;
    get diagnostics v_updated = row_count;
    return v_updated;
end;
$fn$;

comment on function memory.set_embeddings(text, text, bigint[], public.vector[]) is
$$Store `embeddings[i]` on the message `seqs[i]` of a session; returns how many
messages were updated (trimmed or purged ones are skipped).
Errors: ME002 arrays of different lengths; ME006 bad identifier;
ME007 an embedding of the wrong dimension.
Example: select memory.set_embeddings('acme', 's-1', array[1, 2], array['[0.1, ...]', '[0.3, ...]']::vector[]);$$;

-------------------------------------------------------------------------------
-- configure_recall: a tenant's background work policy.
create or replace function memory.configure_recall(
    tenant               text,
    summary_every_tokens integer default 2000,
    embed_messages       boolean default false
)
returns void
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    perform memory._tenant_guard(configure_recall.tenant);
    perform memory._check_ident('tenant', configure_recall.tenant);
    if configure_recall.summary_every_tokens is not null
       and configure_recall.summary_every_tokens < 50 then
        raise exception 'memory: summary_every_tokens must be >= 50 or null, got %',
                configure_recall.summary_every_tokens
            using errcode = 'ME002', hint = 'null turns summaries off';
    end if;
    insert into memory.tenants as t (tenant_id, summary_every_tokens, embed_messages)
    values (configure_recall.tenant, configure_recall.summary_every_tokens,
            coalesce(configure_recall.embed_messages, false))
    on conflict (tenant_id) do update
       set summary_every_tokens = excluded.summary_every_tokens,
           embed_messages = excluded.embed_messages;
end;
$fn$;

comment on function memory.configure_recall(text, integer, boolean) is
$$Set a tenant's background work: a level-1 digest every `summary_every_tokens`
unsummarized tokens (null: no summaries; default 2000) and whether the worker
embeds messages appended without an embedding.
Errors: ME002 summary_every_tokens below 50; ME006 bad identifier.
Example: select memory.configure_recall('acme', summary_every_tokens => 1500, embed_messages => true);$$;
