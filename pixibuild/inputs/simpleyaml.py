"""A fast reader for the plain block-style YAML that pixi and rattler write, with every scalar
kept a string — the same result PyYAML's BaseLoader gives, several times faster.

Why: a large lock (ros2 examples: 4,200 packages, 79,000 lines) takes about a second through
PyYAML even with libyaml; this line-based reader takes a fraction of that. It only accepts what
it fully understands (block mappings and sequences, plain / single- / double-quoted one-line
scalars, `[]` and `{}`); anything else (flow collections, anchors, block scalars, multi-line
scalars, comments after values, tabs...) raises `Unsupported` and the caller falls back to PyYAML.
`tests/test_simpleyaml.py` checks it against PyYAML on every corpus lock and on generated documents.
"""

from __future__ import annotations

import json
import re
from typing import Any


class Unsupported(Exception):
    """The text uses YAML this reader does not handle: use a full YAML parser instead."""


_PLAIN_START_FORBIDDEN = frozenset("[]{}&*!|>%@`\"'#?,")
_JSON_ESCAPES = re.compile(r'\\[^"\\/bfnrtu]')
# Characters PyYAML rejects (non-printable) or reads as line breaks (NEL, LS, PS).
_NOT_PLAIN_TEXT = re.compile("[^\x09\x0A\x0D\x20-\x7E\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]|[\u2028\u2029]")


def load(text: str) -> Any:
    """Parse `text`; raise Unsupported if it needs a full YAML parser."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if _NOT_PLAIN_TEXT.search(text) or text.count("\r") != text.count("\r\n"):
        raise Unsupported("characters YAML treats specially (line breaks, non-printables)")
    lines: list[tuple[int, str]] = []
    for raw in text.split("\n"):
        body = raw.rstrip(" \r")  # YAML white space is only space and tab (not U+00A0...)
        content = body.lstrip(" ")
        if not content or content[0] == "#":
            continue
        if "\t" in raw:
            raise Unsupported("tab")
        if content.startswith(("---", "...", "%")):
            raise Unsupported("document marker or directive")
        lines.append((len(body) - len(content), content))
    if not lines:
        return None
    reader = _Reader(lines)
    first_indent = lines[0][0]
    value = reader.block(first_indent)
    if reader.pos != len(lines):
        raise Unsupported(f"unexpected indentation at content line {reader.pos + 1}")
    return value


class _Reader:
    __slots__ = ("lines", "pos")

    def __init__(self, lines: list[tuple[int, str]]):
        self.lines = lines
        self.pos = 0

    def block(self, indent: int) -> Any:
        content = self.lines[self.pos][1]
        if content == "-" or content.startswith("- "):
            return self.sequence(indent)
        key, _ = _split_key(content)
        if key is None:  # a lone scalar on its own line (a document that is just a string)
            self.pos += 1
            return _scalar(content)
        return self.mapping(indent)

    def mapping(self, indent: int) -> dict:
        lines = self.lines
        result: dict = {}
        while self.pos < len(lines):
            line_indent, content = lines[self.pos]
            if line_indent != indent or content == "-" or content.startswith("- "):
                break
            key, rest = _split_key(content)
            if key is None:
                raise Unsupported(f"expected `key: value` at content line {self.pos + 1}")
            self.pos += 1
            if rest:
                result[key] = _scalar(rest)
                continue
            # `key:` — a nested block below, a sequence at the same indentation, or an empty value
            if self.pos < len(lines):
                next_indent, next_content = lines[self.pos]
                if next_indent > indent:
                    result[key] = self.block(next_indent)
                    continue
                if next_indent == indent and (next_content == "-" or next_content.startswith("- ")):
                    result[key] = self.sequence(indent)
                    continue
            result[key] = ""
        return result

    def sequence(self, indent: int) -> list:
        lines = self.lines
        result: list = []
        while self.pos < len(lines):
            line_indent, content = lines[self.pos]
            if line_indent != indent or not (content == "-" or content.startswith("- ")):
                break
            rest = content[1:].lstrip(" ")
            if not rest:  # `-` alone: the item is the block below (or empty)
                self.pos += 1
                if self.pos < len(lines) and lines[self.pos][0] > indent:
                    result.append(self.block(lines[self.pos][0]))
                else:
                    result.append("")
                continue
            item_indent = indent + len(content) - len(rest)
            if rest == "-" or rest.startswith("- ") or _split_key(rest)[0] is not None:
                # `- key: value` / `- - x`: the item is a block starting inside this line
                lines[self.pos] = (item_indent, rest)
                result.append(self.block(item_indent))
            else:
                self.pos += 1
                result.append(_scalar(rest))
        return result


def _split_key(content: str) -> tuple[str | None, str]:
    """(`key`, rest-after-colon) if `content` starts a mapping entry, else (None, "")."""
    first = content[0]
    if first in "'\"":
        end = _closing_quote(content)
        if end is None:
            raise Unsupported("unterminated quoted key or scalar")
        after = content[end + 1:]
        if after == ":" or after.startswith(": "):
            return _scalar(content[: end + 1]), after[1:].lstrip(" ")
        return None, ""
    colon = content.find(": ")
    if colon == -1:
        if content.endswith(":"):
            colon = len(content) - 1
        else:
            return None, ""
    key = content[:colon]
    if not key or first in _PLAIN_START_FORBIDDEN or key.endswith(" ") or " #" in key \
            or (first in "-?:" and key[1:2] in ("", " ")):
        raise Unsupported(f"unsupported key {key!r}")
    return key, content[colon + 1:].lstrip(" ")


def _closing_quote(text: str) -> int | None:
    quote = text[0]
    i = 1
    while True:
        j = text.find(quote, i)
        if j == -1:
            return None
        if quote == "'":
            if text[j + 1: j + 2] == "'":
                i = j + 2
                continue
            return j
        # double quotes: skip escaped ones (an odd number of backslashes before)
        k = j - 1
        while k > 0 and text[k] == "\\":
            k -= 1
        if (j - 1 - k) % 2 == 1:
            i = j + 1
            continue
        return j


def _scalar(text: str) -> Any:
    first = text[0]
    if first == "'":
        if _closing_quote(text) != len(text) - 1:
            raise Unsupported("quoted scalar with trailing text or over several lines")
        return text[1:-1].replace("''", "'")
    if first == '"':
        if _closing_quote(text) != len(text) - 1:
            raise Unsupported("quoted scalar with trailing text or over several lines")
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        if _JSON_ESCAPES.search(inner):
            raise Unsupported("YAML-only escape")
        return json.loads(text)
    if text == "[]":
        return []
    if text == "{}":
        return {}
    if first in _PLAIN_START_FORBIDDEN or " #" in text or ": " in text or text.endswith(":") \
            or (first in "-?:" and text[1:2] in ("", " ")):
        raise Unsupported(f"unsupported scalar {text[:40]!r}")
    return text
