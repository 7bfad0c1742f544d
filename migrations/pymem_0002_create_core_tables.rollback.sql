-- Drops every table and type of the core, with all stored conversations:
-- this rollback cannot bring data back. Functions from sql/ that use these
-- objects are removed by `pymem rollback` before it runs.
drop type memory.message_input;
drop type memory.append_result;
drop table memory.summaries;
drop table memory.idempotency_keys;
drop table memory.messages;
drop table memory.sessions;
drop table memory.tenants;
drop table memory.settings;
