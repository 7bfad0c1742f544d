-- Back to counting document frequencies at query time: the statistics go,
-- and so do the jobs that would fill them.
delete from memory.jobs where kind = 'count_terms';
alter table memory.jobs drop constraint jobs_kind_known;
alter table memory.jobs
    add constraint jobs_kind_known check (kind in ('summarize', 'embed')) not valid;
alter table memory.jobs validate constraint jobs_kind_known;
drop table memory.session_terms;
drop table memory.term_stats;
