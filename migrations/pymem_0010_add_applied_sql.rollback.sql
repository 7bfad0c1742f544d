-- Forgets the applied digests: the next migrate re-applies every sql/ file.
drop table memory.applied_sql;
