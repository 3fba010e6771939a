"""A fast reader for the plain block-style YAML that pixi and rattler write, with every scalar
kept a string — the same result PyYAML's BaseLoader gives, several times faster.

Why: a large lock (ros2 examples: 4,800 packages, 79,000 lines) takes about a second through
PyYAML even with libyaml; this line-based reader takes a fraction of that. It only accepts what
it fully understands (block mappings and sequences, plain / single- / double-quoted one-line
scalars, `[]` and `{}`); anything else (flow collections, anchors, block scalars, multi-line
scalars, comments after values, tabs...) raises `Unsupported` and the caller falls back to PyYAML.
`tests/test_simpleyaml.py` checks it against PyYAML on every corpus lock and on generated documents.

How it stays fast: whole-text checks (`str.find`, `bytes.translate`, run in C) prove up front that
the text has no tabs, comments, odd characters or trailing blanks, so the per-line loop only looks
at a line's first character and its `": "`; every line whose first character could mean something
else in YAML takes the careful path (`_split_key`, `_scalar`).
"""

from __future__ import annotations

import json
import re
from typing import Any


class Unsupported(Exception):
    """The text uses YAML this reader does not handle: use a full YAML parser instead."""


_PLAIN_START_FORBIDDEN = frozenset("[]{}&*!|>%@`\"'#?,")
# First characters that send a scalar down the careful path: indicators, quotes, and `-?:`
# (an indicator when followed by a space or nothing).
_VALUE_SPECIAL = _PLAIN_START_FORBIDDEN | frozenset("-?:")
# ...and for a line's first character also `.` (`...` ends a document).
_LINE_SPECIAL = _VALUE_SPECIAL | frozenset(".")
_JSON_ESCAPES = re.compile(r'\\[^"\\/bfnrtu]')
# Characters PyYAML rejects (non-printable) or reads as line breaks (NEL, LS, PS): the complement
# of YAML's printable set (tab, LF, CR, 0x20-0x7E, 0xA0-0xD7FF, 0xE000-0xFFFD, astral planes).
_NOT_PLAIN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u2028\u2029]")
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def load(text: str) -> Any:
    """Parse `text`; raise Unsupported if it needs a full YAML parser."""
    if text.startswith("\ufeff"):
        text = text[1:]
    _check_characters(text)
    # Safe after the character check: no line breaks but LF and CRLF remain.
    raw_lines = text.splitlines()
    if " \n" in text or " \r" in text or text.endswith(" "):
        raw_lines = [line.rstrip(" ") for line in raw_lines]  # YAML white space: space (tab refused)
    contents = [line.lstrip(" ") for line in raw_lines]
    hashes = " #" in text or "\n#" in text or text.startswith("#")
    if hashes or "" in contents:  # drop blank and comment lines
        kept = [(line, content) for line, content in zip(raw_lines, contents)
                if content and content[0] != "#"]
        raw_lines = [line for line, _ in kept]
        contents = [content for _, content in kept]
    if not contents:
        return None
    indents = [len(line) - len(content) for line, content in zip(raw_lines, contents)]
    value, pos = _Reader(indents, contents, hashes).block(0, indents[0])
    if pos != len(contents):
        raise Unsupported(f"unexpected indentation at content line {pos + 1}")
    return value


def _check_characters(text: str) -> None:
    if "\t" in text:
        raise Unsupported("tab")
    if text.isascii():  # the common case: one C pass over the bytes
        if text.encode("ascii").translate(None, _PLAIN_ASCII):
            raise Unsupported("non-printable characters")
    elif _NOT_PLAIN_TEXT.search(text):
        raise Unsupported("characters YAML treats specially (line breaks, non-printables)")
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        raise Unsupported("line break other than LF or CRLF")


class _Reader:
    """Recursive descent over (indent, content) lines; each method takes and returns the position."""

    __slots__ = ("indents", "contents", "hashes", "end")

    def __init__(self, indents: list[int], contents: list[str], hashes: bool):
        self.indents = indents
        self.contents = contents
        self.hashes = hashes  # the text has a ` #` somewhere: check scalars for comments
        self.end = len(contents)

    def block(self, pos: int, indent: int) -> tuple[Any, int]:
        content = self.contents[pos]
        if content[0] in _LINE_SPECIAL:
            if content.startswith(("---", "...", "%")):
                raise Unsupported("document marker or directive")
            if content == "-" or content.startswith("- "):
                return self.sequence(pos, indent)
        if _split_key(content)[0] is None:  # a lone scalar on its own line (a document that is just a string)
            return _scalar(content), pos + 1
        return self.mapping(pos, indent)

    def mapping(self, pos: int, indent: int) -> tuple[dict, int]:
        indents, contents, end, hashes = self.indents, self.contents, self.end, self.hashes
        result: dict = {}
        while pos < end and indents[pos] == indent:
            content = contents[pos]
            colon = content.find(": ")
            if content[0] in _LINE_SPECIAL:  # careful path: a sequence item, quoted key, marker...
                if content == "-" or content.startswith("- "):
                    break
                if content.startswith(("---", "...", "%")):
                    raise Unsupported("document marker or directive")
                key, rest = _split_key(content)
                if key is None:
                    raise Unsupported(f"expected `key: value` at content line {pos + 1}")
            elif colon > 0:
                key = content[:colon]
                rest = content[colon + 2:]
                if key[-1] == " " or (hashes and " #" in key):
                    raise Unsupported(f"unsupported key {key!r}")
                if rest[0] == " ":
                    rest = rest.lstrip(" ")
            elif content[-1] == ":":
                key = content[:-1]
                rest = ""
                if key[-1] == " " or (hashes and " #" in key):
                    raise Unsupported(f"unsupported key {key!r}")
            else:
                raise Unsupported(f"expected `key: value` at content line {pos + 1}")
            pos += 1
            if rest:
                if rest[0] in _VALUE_SPECIAL or ": " in rest or rest[-1] == ":" or (hashes and " #" in rest):
                    result[key] = _scalar(rest)
                else:
                    result[key] = rest
                continue
            # `key:` — a nested block below, a sequence at the same indentation, or an empty value
            if pos < end:
                next_indent = indents[pos]
                if next_indent > indent:
                    result[key], pos = self.block(pos, next_indent)
                    continue
                if next_indent == indent:
                    next_content = contents[pos]
                    if next_content == "-" or next_content.startswith("- "):
                        result[key], pos = self.sequence(pos, indent)
                        continue
            result[key] = ""
        return result, pos

    def sequence(self, pos: int, indent: int) -> tuple[list, int]:
        indents, contents, end, hashes = self.indents, self.contents, self.end, self.hashes
        result: list = []
        while pos < end and indents[pos] == indent:
            content = contents[pos]
            if content[:2] != "- ":
                if content != "-":
                    break
                # `-` alone: the item is the block below (or empty)
                pos += 1
                if pos < end and indents[pos] > indent:
                    item, pos = self.block(pos, indents[pos])
                    result.append(item)
                else:
                    result.append("")
                continue
            rest = content[2:]
            if rest[0] == " ":
                rest = rest.lstrip(" ")
            first = rest[0]
            if ": " in rest or rest[-1] == ":" or first in "-'\"":  # maybe `- key: value` / `- - x`
                if rest == "-" or rest.startswith("- ") or _split_key(rest)[0] is not None:
                    # the item is a block starting inside this line
                    item_indent = indent + len(content) - len(rest)
                    indents[pos] = item_indent
                    contents[pos] = rest
                    item, pos = self.block(pos, item_indent)
                    result.append(item)
                    continue
                result.append(_scalar(rest))
            elif first in _VALUE_SPECIAL or (hashes and " #" in rest):
                result.append(_scalar(rest))
            else:
                result.append(rest)
            pos += 1
        return result, pos


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
