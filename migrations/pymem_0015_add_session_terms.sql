-- Term statistics of long sessions, so that recall looks a word's document
-- frequency up instead of counting the turns that hold it.
--
--   memory.session_terms  per session and lexeme, how many of its turns
--                         hold the lexeme (the turns memory.term_stats says
--                         were counted)
--   memory.term_stats     per session, the seq range counted and when
--
-- The worker fills them ('count_terms' jobs, queued by memory.append every
-- 250 turns of a long session); the append itself never writes them. Rows
-- go with their session (foreign keys, on delete cascade), and the turns
-- they were counted from: trimming, retention and pop_message drop a
-- session's statistics, which the next job counts again.
--
-- Locks: none on existing tables but memory.jobs, whose check constraint is
-- replaced (ACCESS EXCLUSIVE for the catalog change; the new constraint is
-- added NOT VALID and validated under SHARE UPDATE EXCLUSIVE, which lets
-- appends and workers go on).
-- depends: pymem_0014_index_recall_by_session
create table memory.term_stats (
    tenant_id  text not null,
    session_id text not null,
    first_seq  bigint not null,
    last_seq   bigint not null,
    turns      bigint not null,
    counted_at timestamptz not null default now(),
    primary key (tenant_id, session_id),
    foreign key (tenant_id, session_id)
        references memory.sessions (tenant_id, session_id) on delete cascade,
    constraint term_stats_range check (first_seq >= 1 and last_seq >= first_seq - 1),
    constraint term_stats_turns check (turns >= 0)
);
comment on table memory.term_stats is
    'Which turns of a session memory.session_terms counted (memory.count_terms).';

create table memory.session_terms (
    tenant_id  text not null,
    session_id text not null,
    lexeme     text not null,
    turns      integer not null,
    primary key (tenant_id, session_id, lexeme),
    foreign key (tenant_id, session_id)
        references memory.term_stats (tenant_id, session_id) on delete cascade,
    constraint session_terms_turns check (turns > 0)
);
comment on table memory.session_terms is
    'How many counted turns of a session hold each lexeme (recall''s document frequencies).';

do $own$
declare
    v_table text;
begin
    foreach v_table in array array['term_stats', 'session_terms'] loop
        execute format('alter table memory.%I owner to pymem_owner', v_table);
        execute format('alter table memory.%I enable row level security', v_table);
        execute format('alter table memory.%I force row level security', v_table);
    end loop;
end;
$own$;

alter table memory.jobs drop constraint jobs_kind_known;
alter table memory.jobs
    add constraint jobs_kind_known check (kind in ('summarize', 'embed', 'count_terms')) not valid;
alter table memory.jobs validate constraint jobs_kind_known;
