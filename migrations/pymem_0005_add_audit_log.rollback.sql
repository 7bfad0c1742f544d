-- Drops the audit log and its chain heads: the record of changes is lost.
drop table memory.audit_heads;
drop table memory.audit_log;
