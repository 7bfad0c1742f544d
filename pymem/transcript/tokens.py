"""Token counts of turns with parts, the way the model APIs count them.

Text is counted with the store's counter (tiktoken for OpenAI models). What
wraps it is an estimate, after OpenAI's published accounting of chat
messages: a tool call costs its function name and its arguments' JSON plus
the framing of a call; a tool result, its text plus its call id's framing;
an image reference, the 85 tokens of a low-detail image (a high-detail one
costs more, by its size, which a reference does not tell). Other providers
count differently; for them these figures are an estimate of the same order.
The per-message overhead of a window is added by the window
(``message_overhead``), not here.
"""

from __future__ import annotations

import json
from typing import Final, Protocol

from .parts import File, Image, Refusal, Text, ToolCall, ToolResult, Turn

TOOL_CALL_FRAMING: Final = 7  # {"id", "type": "function", "function": {...}} around each call
TOOL_RESULT_FRAMING: Final = 4  # the tool_call_id and the tool role's wrapper
IMAGE_TOKENS: Final = 85  # a low-detail image
FILE_TOKENS: Final = 0  # a file reference: what the provider reads is not known here


class Counter(Protocol):
    """What counts text: any of pymem.context.tokens' counters."""

    def count(self, text: str) -> int: ...


def turn_tokens(turn: Turn, counter: Counter) -> int:
    """The tokens of ``turn``'s parts (and its name) as ``counter`` counts text."""
    total = counter.count(turn.name) + 1 if turn.name else 0
    for part in turn.parts:
        if isinstance(part, Text | Refusal):
            total += counter.count(part.text)
        elif isinstance(part, ToolCall):
            arguments = json.dumps(dict(part.arguments), separators=(",", ":"))
            total += counter.count(part.name) + counter.count(arguments) + TOOL_CALL_FRAMING
        elif isinstance(part, ToolResult):
            total += counter.count(part.content) + TOOL_RESULT_FRAMING
        elif isinstance(part, Image):
            total += IMAGE_TOKENS
        elif isinstance(part, File):
            total += FILE_TOKENS
    return total
