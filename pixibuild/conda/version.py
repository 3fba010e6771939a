"""Conda version ordering and the part of MatchSpec the `--locked` check needs.

Why our own: the library must not import rattler, and checking "is the locked package still what
the manifest asks for" needs conda's rules exactly (1.1 == 1.1.0, 1.1dev1 < 1.1a1 < 1.1, `=1.2`
means `1.2.*`, a bare `1.2` means `==1.2`, `|` binds looser than `,`). `tests/test_condaversion.py`
checks ordering and matching against rattler with hypothesis.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import total_ordering

_RUN = re.compile(r"\d+|[a-z]+|_")
_SEPARATORS = re.compile(r"[._-]")
# One sub-component: (rank, value). Strings sort below numbers; "dev" below every other string;
# "post" above everything (conda's special cases); a lone trailing "_" sorts like a string "_".
_Sub = tuple[int, object]
_ZERO: _Sub = (1, 0)


class VersionError(ValueError):
    """Not a conda version or version spec."""


def _component(text: str) -> tuple[_Sub, ...]:
    runs = _RUN.findall(text)
    if "".join(runs) != text or not runs:
        raise VersionError(f"invalid version component {text!r}")
    subs: list[_Sub] = []
    if not runs[0].isdigit():
        subs.append(_ZERO)  # "1.a1" is "1.0a1"
    for run in runs:
        if run.isdigit():
            subs.append((1, int(run)))
        elif run == "post":
            subs.append((2, 0))
        elif run == "dev":
            subs.append((0, "DEV"))
        else:
            subs.append((0, run))
    return tuple(subs)


def _segments(text: str) -> tuple[tuple[_Sub, ...], ...]:
    if not text:
        raise VersionError("empty version")
    trailing_underscore = text.endswith("_") and not text.endswith("__")
    if trailing_underscore:
        text = text[:-1]
    parts = _SEPARATORS.split(text)
    if any(p == "" for p in parts):
        raise VersionError(f"empty version segment in {text!r}")
    components = [_component(p) for p in parts]
    if trailing_underscore:
        components[-1] = components[-1] + ((0, "_"),)
    return tuple(components)


def _cmp_components(a: tuple, b: tuple) -> int:
    for i in range(max(len(a), len(b))):
        ca = a[i] if i < len(a) else ()
        cb = b[i] if i < len(b) else ()
        for j in range(max(len(ca), len(cb))):
            sa = ca[j] if j < len(ca) else _ZERO
            sb = cb[j] if j < len(cb) else _ZERO
            if sa != sb:
                return -1 if sa < sb else 1  # type: ignore[operator]
    return 0


@total_ordering
class Version:
    """A conda version: `[epoch!]segments[+local]`, compared the way conda and rattler compare."""

    __slots__ = ("text", "epoch", "segments", "local")

    def __init__(self, text: str):
        self.text = text
        norm = text.strip().lower()
        if not norm or any(c.isspace() for c in norm):
            raise VersionError(f"invalid version {text!r}")
        epoch = 0
        if "!" in norm:
            head, norm = norm.split("!", 1)
            if not head.isdigit():
                raise VersionError(f"invalid epoch in version {text!r}")
            epoch = int(head)
        main, _, local = norm.partition("+")
        self.epoch = epoch
        self.segments = _segments(main)
        self.local = _segments(local) if local else ()

    def _cmp(self, other: "Version") -> int:
        if self.epoch != other.epoch:
            return -1 if self.epoch < other.epoch else 1
        return _cmp_components(self.segments, other.segments) or _cmp_components(self.local, other.local)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._cmp(other) == 0

    def __lt__(self, other: "Version") -> bool:
        return self._cmp(other) < 0

    def __hash__(self) -> int:  # equal versions may differ in padding: hash what padding cannot change
        return hash(self.epoch)

    def __repr__(self) -> str:
        return f"Version({self.text!r})"

    def starts_with(self, prefix: "Version") -> bool:
        """`1.2.*` semantics (rattler's `Version::starts_with`): same epoch, and both the segments and
        the local segments begin with the prefix's."""
        return (self.epoch == prefix.epoch and _segments_start_with(self.segments, prefix.segments)
                and _segments_start_with(self.local, prefix.local))

    def compatible_with(self, other: "Version") -> bool:
        """`~=` (rattler's `compatible_with`): at least `other`, and starting with `other` minus its
        last segment (local segments as they are)."""
        return (self >= other and self.epoch == other.epoch
                and _segments_start_with(self.segments, other.segments[:-1])
                and _segments_start_with(self.local, other.local))


def _segments_start_with(have: tuple, prefix: tuple) -> bool:
    """rattler's `segments_starts_with`: segment by segment, components equal; a segment may carry
    extra components only where the prefix ends (`1.0.1c` starts with `1.0.1`, `1.1c.1` does not
    start with `1.1.1`); missing components and segments of the prefix must be zeros."""
    extra_left = False
    for i in range(max(len(have), len(prefix))):
        if i >= len(prefix):
            return True  # the version goes on after the prefix
        want = prefix[i]
        if i >= len(have):
            if all(c == _ZERO for c in want):
                continue  # "1.0" starts with "1.0.0"
            return False
        if extra_left:
            return False
        extra_left = False
        seg = have[i]
        for j in range(max(len(seg), len(want))):
            if j >= len(want):
                extra_left = True
                break
            if j >= len(seg):
                if want[j] == _ZERO:
                    continue
                return False
            if seg[j] != want[j]:
                return False
    return True


# --------------------------------------------------------------------------------------------
# version specs


@dataclass(frozen=True)
class _Atom:
    op: str  # "*", "==", "!=", "<", "<=", ">", ">=", "=*" (starts with), "!=*" (not starts with), "~="
    version: Version | None

    def matches(self, v: Version) -> bool:
        op, ref = self.op, self.version
        if op == "*":
            return True
        assert ref is not None
        if op == "==":
            return v == ref
        if op == "!=":
            return v != ref
        if op == "<":
            return v < ref
        if op == "<=":
            return v <= ref
        if op == ">":
            return v > ref
        if op == ">=":
            return v >= ref
        if op == "=*":
            return v.starts_with(ref)
        if op == "!=*":
            return not v.starts_with(ref)
        if op == "~=":
            if len(ref.segments) < 2:
                raise VersionError(f"~= needs at least two version components: {ref.text!r}")
            return v.compatible_with(ref)
        raise AssertionError(op)


_OPERATORS = ("==", "!=", "<=", ">=", "~=", "<", ">", "=")


def _parse_atom(text: str) -> _Atom:
    text = text.strip()
    if text in ("", "*", "*.*"):
        return _Atom("*", None)
    op = ""
    for candidate in _OPERATORS:
        if text.startswith(candidate):
            op = candidate
            text = text[len(candidate):].strip()
            break
    glob = text.endswith("*")
    base = text.rstrip("*").rstrip(".") if glob else text
    if not base:
        if op in ("", "=", ">=", "=="):
            return _Atom("*", None)
        raise VersionError(f"invalid version constraint {op}{text!r}")
    version = Version(base)
    if op == "==":
        return _Atom("==", version)  # rattler (lenient) ignores a glob after ==
    if op in ("", "="):
        return _Atom("=*" if op == "=" or glob else "==", version)
    if op == "!=":
        return _Atom("!=*" if glob else "!=", version)
    return _Atom(op, version)  # a glob after <, >=, ~= ... is ignored, as rattler does (lenient)


@dataclass(frozen=True)
class VersionSpec:
    """`>=1.2,<2|3.*`: OR of ANDs of constraints."""

    text: str
    alternatives: tuple[tuple[_Atom, ...], ...]

    @classmethod
    def parse(cls, text: str) -> "VersionSpec":
        if "(" in text or ")" in text:
            raise VersionError(f"parenthesised version specs are not supported: {text!r}")
        alternatives = tuple(tuple(_parse_atom(part) for part in alt.split(","))
                             for alt in text.replace(" ", "").split("|"))
        return cls(text, alternatives)

    def matches(self, version: str | Version) -> bool:
        v = version if isinstance(version, Version) else Version(version)
        return any(all(atom.matches(v) for atom in alt) for alt in self.alternatives)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class MatchSpec:
    """A package requirement: name, version spec and build-string glob (the parts pixi manifests use)."""

    name: str
    version: VersionSpec | None = None
    build: str | None = None

    @classmethod
    def parse(cls, text: str) -> "MatchSpec":
        """`name`, `name >=1.2`, `name 1.2 py*`, `name=1.2=h0`, `name>=1,<2`, `name[version='>=1']`."""
        spec = text.strip()
        brackets: dict[str, str] = {}
        if spec.endswith("]") and "[" in spec:
            spec, _, inner = spec[:-1].partition("[")
            for item in inner.split(","):
                if not item.strip():
                    continue
                key, eq, value = item.partition("=")
                if not eq:
                    raise VersionError(f"invalid bracket item {item!r} in {text!r}")
                brackets[key.strip()] = value.strip().strip("'\"")
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
        if not match:
            raise VersionError(f"invalid match spec {text!r}")
        name, rest = match.group(1), match.group(2).strip()
        version_text: str | None = None
        build: str | None = None
        if rest:
            if rest.startswith("=") and not rest.startswith("==") and "=" in rest[1:] and " " not in rest:
                version_text, build = rest[1:].split("=", 1)  # name=1.2=build
                version_text = "=" + version_text
            else:
                parts = rest.split()
                # an operator separated from its version by spaces ("python >= 3.8") joins up
                joined: list[str] = []
                for part in parts:
                    if joined and (joined[-1] in _OPERATORS or joined[-1].endswith((",", "|"))
                                   or part[0] in ",|"):
                        joined[-1] += part
                    else:
                        joined.append(part)
                if len(joined) > 2:
                    raise VersionError(f"invalid match spec {text!r}")
                version_text = joined[0]
                build = joined[1] if len(joined) > 1 else None
        unsupported = set(brackets) - {"version", "build"}
        if unsupported:
            raise VersionError(f"unsupported match spec keys {sorted(unsupported)} in {text!r}")
        version_text = brackets.get("version", version_text)
        build = brackets.get("build", build)
        if version_text is not None and "=" not in version_text[:1] and build is not None \
                and not any(c in version_text for c in "<>!~*,|"):
            version_text = "==" + version_text  # "1.2 py_0": exact version with a build
        return cls(name.lower(), VersionSpec.parse(version_text) if version_text else None,
                   None if build in (None, "*") else build)

    def matches(self, name: str, version: str, build: str) -> bool:
        if name.lower() != self.name:
            return False
        if self.version is not None and not self.version.matches(version):
            return False
        if self.build is not None and not fnmatch.fnmatchcase(build, self.build):
            return False
        return True
