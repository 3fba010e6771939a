"""Conda version ordering and spec matching, property-tested against rattler (the oracle)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from pixibuild.conda.version import MatchSpec, Version, VersionError, VersionSpec

rattler = pytest.importorskip("rattler")

_WORDS = st.sampled_from(["a", "b", "rc", "dev", "post", "alpha", "beta", "c", "pre"])
_NUMBER = st.integers(min_value=0, max_value=30).map(str)


@st.composite
def _component(draw) -> str:
    runs = draw(st.lists(st.one_of(_NUMBER, _WORDS), min_size=1, max_size=3))
    text = ""
    for run in runs:  # adjacent numbers / words would merge into one run: keep them alternating
        if text and text[-1].isdigit() == run[0].isdigit():
            continue
        text += run
    return text


@st.composite
def versions(draw) -> str:
    parts = draw(st.lists(_component(), min_size=1, max_size=4))
    if not parts[0][0].isdigit():
        parts[0] = draw(_NUMBER) + parts[0]
    seps = [draw(st.sampled_from([".", ".", ".", "_"])) for _ in parts[1:]]
    text = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:]))
    if draw(st.booleans()) and draw(st.booleans()):
        text = f"{draw(st.integers(0, 3))}!{text}"
    if draw(st.integers(0, 5)) == 0:
        text += "+" + draw(_component())
    return text


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


@settings(max_examples=250, deadline=None)
@given(versions(), versions())
def test_version_order_matches_rattler(a: str, b: str) -> None:
    ra, rb = rattler.Version(a), rattler.Version(b)
    expected = 0 if ra == rb else (-1 if ra < rb else 1)
    va, vb = Version(a), Version(b)
    got = 0 if va == vb else (-1 if va < vb else 1)
    assert got == expected, (a, b)


@st.composite
def _constraint(draw) -> str:
    op = draw(st.sampled_from(["", "==", "!=", "<", "<=", ">", ">=", "=", "~="]))
    version = draw(versions()).split("+")[0]
    if op == "~=" and "." not in version:
        version += ".0"
    glob = draw(st.sampled_from(["", "", ".*", "*"])) if op in ("", "==", "!=", "=") else ""
    return f"{op}{version}{glob}"


@st.composite
def specs(draw) -> str:
    alternatives = draw(st.lists(st.lists(_constraint(), min_size=1, max_size=3), min_size=1, max_size=2))
    return "|".join(",".join(alt) for alt in alternatives)


@st.composite
def _near_version(draw, spec: str) -> str:
    """A version close to the spec's own versions, so matches are not all trivially false."""
    import re

    anchors = re.findall(r"[0-9][0-9A-Za-z._!]*", spec) or ["1"]
    base = draw(st.sampled_from(anchors)).rstrip(".")
    tweak = draw(st.sampled_from(["", ".0", ".1", "a1", ".post1", "dev0", "+x", ".5"]))
    return base + tweak


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_version_spec_matches_rattler(data) -> None:
    spec = data.draw(specs())
    version = data.draw(st.one_of(versions(), _near_version(spec)))
    try:
        r_version = rattler.Version(version)
    except Exception:  # noqa: BLE001 - not a version rattler accepts: nothing to compare
        return
    try:
        expected = rattler.VersionSpec(spec).matches(r_version)
    except Exception:  # noqa: BLE001 - rattler rejects the spec: we must not silently accept garbage
        return
    assert VersionSpec.parse(spec).matches(version) == expected, (spec, version)


@pytest.mark.parametrize("spec", [
    "numpy", "numpy 1.11", "numpy 1.11 py27_0", "numpy=1.11", "numpy ==1.11", "numpy 1.11.3",
    "numpy >=1.11,<2", "numpy 1.11.*", "numpy ~=1.10", "numpy 1.11|1.12.*", "numpy * py2*",
    "numpy 1.11*", "numpy !=1.11.*", "numpy 1.11.3 *_0", "numpy=1.11.3=py27_0", "numpy>=1.2",
    "numpy[version='>=1.11']", "numpy[build='py27*']", "numpy 1.11.3 py3*", "numpy >=2",
])
@pytest.mark.parametrize("version,build", [("1.11.3", "py27_0"), ("1.11", "py36_1"), ("1.12.0", "h0_0")])
def test_match_spec_matches_rattler(spec: str, version: str, build: str) -> None:
    record = rattler.PackageRecord(name="numpy", version=version, build=rattler.BuildString(build),
                                   build_number=0, subdir="linux-64")
    expected = rattler.MatchSpec(spec).matches(record)
    assert MatchSpec.parse(spec).matches("numpy", version, build) == expected


def test_known_orderings() -> None:
    chain = ["0.4", "0.4.1.rc", "0.4.1", "0.5a1", "0.5b3", "0.5C1", "0.5", "0.9.6", "0.960923", "1.0",
             "1.1dev1", "1.1_", "1.1a1", "1.1.0dev1", "1.1.a1", "1.1.0rc1", "1.1.0", "1.1.0post1",
             "1.1post1", "1996.07.12", "1!0.4.1", "1!3.1.1.6", "2!0.4.1"]
    for low, high in zip(chain, chain[1:]):
        assert Version(low) < Version(high), (low, high)
        assert rattler.Version(low) < rattler.Version(high), (low, high)
    assert Version("1.1") == Version("1.1.0") and Version("1.10") > Version("1.9")


@pytest.mark.parametrize("bad", ["", "1..2", "a!1", "1.2 3"])
def test_invalid_versions_raise(bad: str) -> None:
    with pytest.raises(VersionError):
        Version(bad)
