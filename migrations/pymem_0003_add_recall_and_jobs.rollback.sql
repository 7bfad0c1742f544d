-- Drops the job queue (pending work is lost; summaries and embeddings stay)
-- and the recall indexes and columns.
drop table memory.jobs;
drop index memory.summaries_level_idx;
alter table memory.tenants
    drop constraint tenants_summary_every_positive,
    drop column embed_messages,
    drop column summary_every_tokens;
alter table memory.sessions
    drop constraint sessions_summary_every_positive,
    drop column summary_every_tokens,
    drop column unsummarized_tokens;
drop index memory.messages_embedding_idx;
drop index memory.messages_session_search_idx;
