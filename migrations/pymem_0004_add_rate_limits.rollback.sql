-- Drops the PostgreSQL limiter's state: counters start afresh.
drop table memory.rate_limits;
