-- Agent transcripts: a message may be made of parts (text, tool calls, tool
-- results, image and file references, refusals) and carry a name.
--
-- Expand: two columns with constant defaults and a batch type with the two
-- new fields (memory.message_input keeps its six, so SQL that builds it
-- keeps working). Existing rows stay plain text (structured = false);
-- clients that never send parts keep working unchanged. A structured message keeps the
-- JSON document {"parts": [...], "name": ...} in `content` (sealed like any
-- content for encrypting tenants); `tool_parts` counts its tool calls (an
-- assistant turn) or its tool results (a tool turn), in clear, so that a
-- context window can keep a call with all of its results without reading
-- sealed text.
--
-- Locks: ACCESS EXCLUSIVE on memory.messages and its partitions for the
-- catalog change only (constant defaults: no rewrite); the type change
-- takes no table lock.
-- depends: pymem_0012_add_tenant_retention
alter table memory.messages
    add column structured boolean not null default false,
    add column tool_parts smallint not null default 0,
    add constraint messages_tool_parts_range check (tool_parts >= 0);

create type memory.turn_input as (
    role            text,
    content         text,
    tokens          integer,
    metadata        jsonb,
    embedding       public.vector,
    idempotency_key text,
    parts           jsonb,
    name            text
);
comment on type memory.turn_input is
    'A message of memory.append_many with parts and a sender name (memory.append''s parts, name).';
