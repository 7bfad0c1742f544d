"""Agent transcripts: messages made of parts (text, tool calls and results,
references to images and files, refusals), and the model APIs' formats."""

from .formats import FORMATS, from_turns, to_turns
from .parts import File, Image, Part, Refusal, Text, ToolCall, ToolResult, Turn, parse_arguments
from .tokens import turn_tokens

__all__ = [
    "FORMATS",
    "File",
    "Image",
    "Part",
    "Refusal",
    "Text",
    "ToolCall",
    "ToolResult",
    "Turn",
    "from_turns",
    "parse_arguments",
    "to_turns",
    "turn_tokens",
]
