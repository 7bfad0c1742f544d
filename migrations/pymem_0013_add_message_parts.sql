-- Agent transcripts: a message may be made of parts (text, tool calls, tool
-- results, image and file references, refusals) and carry a name.
--
-- Expand: two columns with constant defaults and two attributes of the batch
-- type. Existing rows stay plain text (structured = false); clients that
-- never send parts keep working unchanged. A structured message keeps the
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

alter type memory.message_input
    add attribute parts jsonb,
    add attribute name text;
