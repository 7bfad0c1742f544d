"""Transcripts in the model APIs' own shapes, both ways.

- ``openai``: Chat Completions messages (dicts, or the ``openai`` SDK's
  message objects): ``tool_calls`` on assistant messages, ``tool`` messages
  with ``tool_call_id``, content as a string or a list of parts;
- ``openai-responses``: Responses input and output items: ``message``,
  ``function_call`` and ``function_call_output``;
- ``anthropic``: Messages API messages with ``tool_use`` / ``tool_result``
  blocks; the system prompt is a turn of its own (``system`` role) here and
  the API's separate ``system`` parameter there.

:func:`to_turns` reads any of them into :class:`~pymem.transcript.parts.Turn`
values; :func:`from_turns` renders turns back. What a format cannot express
(an image in a tool result, say) raises ``InvalidArgument`` rather than
being dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..errors import InvalidArgument
from .parts import File, Image, Part, Refusal, Text, ToolCall, ToolResult, Turn, parse_arguments

FORMATS: Final = ("openai", "openai-responses", "anthropic")


def _plain(item: Any) -> dict[str, Any]:
    """A message as a dict, whether given as one or as an SDK (pydantic) object."""
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if dump is None:
        raise InvalidArgument(
            f"pymem: cannot read a message of type {type(item).__name__}",
            hint="pass dicts, or the SDK's message objects",
        )
    found: dict[str, Any] = dump(exclude_none=True)
    return found


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidArgument(
            f"pymem: unknown message format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}"
        )


def to_turns(messages: Iterable[Any], fmt: str = "openai") -> list[Turn]:
    """Read messages of ``fmt`` into turns, in order."""
    _check(fmt)
    readers: dict[str, Callable[[list[dict[str, Any]]], list[Turn]]] = {
        "openai": _from_chat,
        "openai-responses": _from_responses,
        "anthropic": _from_anthropic,
    }
    return readers[fmt]([_plain(m) for m in messages])


def from_turns(turns: Iterable[Turn], fmt: str = "openai") -> list[dict[str, Any]]:
    """Render turns as messages of ``fmt`` (for ``anthropic``, system turns come
    first as ``{"role": "system", ...}`` entries: pass their text as the API's
    ``system`` parameter)."""
    _check(fmt)
    writers: dict[str, Callable[[list[Turn]], list[dict[str, Any]]]] = {
        "openai": _to_chat,
        "openai-responses": _to_responses,
        "anthropic": _to_anthropic,
    }
    return writers[fmt](list(turns))


# -- OpenAI Chat Completions ----------------------------------------------------


def _chat_parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append(Text(block["text"]))
        elif kind == "refusal":
            parts.append(Refusal(block["refusal"]))
        elif kind == "image_url":
            image = block["image_url"]
            parts.append(Image(url=image["url"], detail=image.get("detail")))
        elif kind == "file":
            file = block["file"]
            if "file_data" in file:
                raise InvalidArgument(
                    "pymem: a file given as bytes (file_data); pymem keeps references",
                    hint="upload it with the files API and pass its file_id",
                )
            parts.append(File(file_id=file.get("file_id"), filename=file.get("filename")))
        else:
            raise InvalidArgument(f"pymem: unknown OpenAI content part {kind!r}")
    return parts


def _from_chat(messages: list[dict[str, Any]]) -> list[Turn]:
    turns = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            if not m.get("tool_call_id"):
                raise InvalidArgument(
                    "pymem: a tool message without tool_call_id",
                    hint="give the id of the assistant's tool call it answers",
                )
            content = m.get("content")
            text = (
                content
                if isinstance(content, str)
                else "".join(p.text for p in _chat_parts(content) if isinstance(p, Text))
            )
            turns.append(Turn("tool", (ToolResult(m["tool_call_id"], text),)))
            continue
        parts = _chat_parts(m.get("content"))
        if m.get("refusal"):
            parts.append(Refusal(m["refusal"]))
        for call in m.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(
                ToolCall(
                    call["id"],
                    function["name"],
                    parse_arguments(function.get("arguments"), call["id"]),
                )
            )
        turns.append(Turn(str(role), tuple(parts), m.get("name")))
    return turns


def _to_chat(turns: list[Turn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in turns:
        if t.role == "tool":
            out.extend(
                {"role": "tool", "tool_call_id": r.call_id, "content": r.content}
                for r in t.tool_results
            )
            continue
        message: dict[str, Any] = {"role": t.role}
        plain = all(isinstance(p, Text | ToolCall | Refusal) for p in t.parts)
        refusals = [p.text for p in t.parts if isinstance(p, Refusal)]
        if plain:
            text = "".join(p.text for p in t.parts if isinstance(p, Text))
            message["content"] = text if text or not t.tool_calls else None
        else:
            message["content"] = [_chat_block(p) for p in t.parts if not isinstance(p, ToolCall)]
        if refusals and plain:
            message["refusal"] = "".join(refusals)
        if t.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
                }
                for c in t.tool_calls
            ]
        if t.name is not None:
            message["name"] = t.name
        out.append(message)
    return out


def _chat_block(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "refusal", "refusal": part.text}
    if isinstance(part, Image):
        if part.url is None:
            raise InvalidArgument("pymem: OpenAI chat takes images by URL, not by file id")
        image: dict[str, Any] = {"url": part.url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, File):
        if part.file_id is None:
            raise InvalidArgument("pymem: OpenAI chat takes files by file_id, not by URL")
        file: dict[str, Any] = {"file_id": part.file_id}
        if part.filename is not None:
            file["filename"] = part.filename
        return {"type": "file", "file": file}
    raise InvalidArgument(f"pymem: {type(part).__name__} has no OpenAI chat content block")


# -- OpenAI Responses -------------------------------------------------------------


def _from_responses(items: list[dict[str, Any]]) -> list[Turn]:
    turns: list[Turn] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            turns.append(Turn(str(item["role"]), tuple(_response_parts(item.get("content")))))
        elif kind == "function_call":
            call = ToolCall(
                item["call_id"],
                item["name"],
                parse_arguments(item.get("arguments"), item["call_id"]),
            )
            last = turns[-1] if turns else None
            # Calls that follow an assistant message (or each other) belong to it.
            if last is not None and last.role == "assistant":
                turns[-1] = Turn("assistant", (*last.parts, call), last.name)
            else:
                turns.append(Turn("assistant", (call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            turns.append(Turn("tool", (ToolResult(item["call_id"], text),)))
        else:
            raise InvalidArgument(
                f"pymem: unknown Responses item type {kind!r}",
                hint="message, function_call and function_call_output are kept",
            )
    return turns


def _response_parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for block in content:
        kind = block.get("type")
        if kind in ("input_text", "output_text"):
            parts.append(Text(block["text"]))
        elif kind == "refusal":
            parts.append(Refusal(block["refusal"]))
        elif kind == "input_image":
            parts.append(
                Image(
                    url=block.get("image_url"),
                    file_id=block.get("file_id"),
                    detail=block.get("detail"),
                )
            )
        elif kind == "input_file":
            if "file_data" in block:
                raise InvalidArgument(
                    "pymem: a file given as bytes (file_data); pymem keeps references",
                    hint="upload it with the files API and pass its file_id",
                )
            parts.append(
                File(
                    url=block.get("file_url"),
                    file_id=block.get("file_id"),
                    filename=block.get("filename"),
                )
            )
        else:
            raise InvalidArgument(f"pymem: unknown Responses content type {kind!r}")
    return parts


def _to_responses(turns: list[Turn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in turns:
        if t.role == "tool":
            out.extend(
                {"type": "function_call_output", "call_id": r.call_id, "output": r.content}
                for r in t.tool_results
            )
            continue
        content = [_response_block(t.role, p) for p in t.parts if not isinstance(p, ToolCall)]
        if content or not t.tool_calls:
            out.append({"type": "message", "role": t.role, "content": content})
        out.extend(
            {
                "type": "function_call",
                "call_id": c.id,
                "name": c.name,
                "arguments": json.dumps(dict(c.arguments)),
            }
            for c in t.tool_calls
        )
    return out


def _response_block(role: str, part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "refusal", "refusal": part.text}
    if isinstance(part, Image):
        found: dict[str, Any] = {"type": "input_image"}
        found.update(
            {
                k: v
                for k, v in (
                    ("image_url", part.url),
                    ("file_id", part.file_id),
                    ("detail", part.detail or "auto"),
                )
                if v is not None
            }
        )
        return found
    if isinstance(part, File):
        block: dict[str, Any] = {"type": "input_file"}
        block.update(
            {
                k: v
                for k, v in (
                    ("file_url", part.url),
                    ("file_id", part.file_id),
                    ("filename", part.filename),
                )
                if v is not None
            }
        )
        return block
    raise InvalidArgument(f"pymem: {type(part).__name__} has no Responses content block")


# -- Anthropic Messages --------------------------------------------------------------


def _from_anthropic(messages: list[dict[str, Any]]) -> list[Turn]:
    turns: list[Turn] = []
    for m in messages:
        role = str(m.get("role"))
        content = m.get("content")
        if isinstance(content, str):
            turns.append(Turn(role, (Text(content),) if content else ()))
            continue
        parts: list[Part] = []
        results: list[ToolResult] = []
        for block in content or ():
            kind = block.get("type")
            if kind == "text":
                parts.append(Text(block["text"]))
            elif kind == "tool_use":
                parts.append(
                    ToolCall(
                        block["id"], block["name"], parse_arguments(block.get("input"), block["id"])
                    )
                )
            elif kind == "tool_result":
                results.append(
                    ToolResult(
                        block["tool_use_id"],
                        _anthropic_result_text(block),
                        bool(block.get("is_error")),
                    )
                )
            elif kind in ("image", "document"):
                parts.append(_anthropic_reference(kind, block.get("source") or {}))
            else:
                raise InvalidArgument(
                    f"pymem: unknown Anthropic content block {kind!r}",
                    hint="text, image, document, tool_use and tool_result are kept",
                )
        # Results first: they answer the assistant's calls just before.
        turns.extend(Turn("tool", (r,)) for r in results)
        if parts or not results:
            turns.append(Turn(role, tuple(parts)))
    return turns


def _anthropic_result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for inner in content:
        if inner.get("type") != "text":
            raise InvalidArgument(
                "pymem: a tool result holding an image or document is not kept",
                hint="return text from the tool and keep a reference to the file",
            )
        texts.append(inner["text"])
    return "".join(texts)


def _anthropic_reference(kind: str, source: Mapping[str, Any]) -> Part:
    where = source.get("type")
    if where == "url":
        return Image(url=source["url"]) if kind == "image" else File(url=source["url"])
    if where == "file":
        return (
            Image(file_id=source["file_id"]) if kind == "image" else File(file_id=source["file_id"])
        )
    raise InvalidArgument(
        f"pymem: an Anthropic {kind} given as {where}; pymem keeps references, not bytes",
        hint="upload it with the Files API and pass its file_id, or pass a URL",
    )


def _to_anthropic(turns: list[Turn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    results_open = False  # the last message is a user message holding tool results
    for t in turns:
        if t.role in ("system", "developer"):
            out.append({"role": "system", "content": t.content})
            results_open = False
            continue
        role = "user" if t.role == "tool" else t.role
        blocks = [_anthropic_block(p) for p in t.parts]
        # The API wants tool results (and what follows them) in one user message.
        merge = (
            role == "user"
            and bool(out)
            and out[-1]["role"] == "user"
            and (t.role == "tool" or results_open)
        )
        if merge:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
        results_open = t.role == "tool" or (merge and results_open)
    return out


def _anthropic_block(part: Part) -> dict[str, Any]:
    if isinstance(part, Text | Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": dict(part.arguments)}
    if isinstance(part, ToolResult):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": part.call_id,
            "content": part.content,
        }
        if part.is_error:
            block["is_error"] = True
        return block
    kind = "image" if isinstance(part, Image) else "document"
    if part.url is not None:
        return {"type": kind, "source": {"type": "url", "url": part.url}}
    return {"type": kind, "source": {"type": "file", "file_id": part.file_id}}
