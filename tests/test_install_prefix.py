"""Streaming placeholder replacement equals the whole-file reference at every chunk boundary, and
the per-package API (what the OCI layer builder calls) installs at a logical prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixibuild.install.environment import install_environment, install_package
from pixibuild.install import prefix as pr
from pixibuild.install.conda_meta import dumps_indented
from pixibuild.conda.archive import record_from_archive
from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package

OLD = "/opt/placeholder_placeholder"


def _reference_binary(data: bytes, old: bytes, new: bytes) -> bytes:
    """Whole-file definition: each C string holding the placeholder gets every occurrence replaced,
    then NULs before its terminator keep the length."""
    out, pos = bytearray(), 0
    while (i := data.find(old, pos)) >= 0:
        out += data[pos:i]
        nul = data.find(b"\0", i + len(old))
        nul = len(data) if nul < 0 else nul
        segment = data[i:nul]
        out += segment.replace(old, new) + b"\0" * (segment.count(old) * (len(old) - len(new)))
        pos = nul
    return bytes(out + data[pos:])


class _Chunky:
    def __init__(self, data: bytes, step: int):
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos:self.pos + min(n if n > 0 else self.step, self.step)]
        self.pos += len(chunk)
        return chunk


pieces = st.lists(st.sampled_from([OLD.encode(), b"\0", b"/x", b"abc", b"\n", b"#!", b" "]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(pieces, st.integers(1, 64), st.sampled_from(["/p", "/much/shorter"]))
def test_streaming_binary_matches_reference(monkeypatch_chunk, parts: list, step: int, new: str) -> None:
    data = b"".join(parts)
    out = bytearray()
    pr.copy_binary(_Chunky(data, step), out.extend, OLD, new)
    assert bytes(out) == _reference_binary(data, OLD.encode(), new.encode())
    assert len(out) == len(data)


@settings(max_examples=200, deadline=None)
@given(pieces, st.integers(1, 64), st.sampled_from(["/p", "/a/much/longer/prefix/than/the/placeholder/is"]))
def test_streaming_text_matches_reference(monkeypatch_chunk, parts: list, step: int, new: str) -> None:
    data = b"".join(parts)
    out = bytearray()
    pr.copy_text(_Chunky(data, step), out.extend, OLD, new, "linux-64")
    if data.startswith(b"#!"):
        line, _, rest = data.partition(b"\n")
        head = pr.replace_shebang(line.decode(), OLD, new, "linux-64").encode()
        expected = head + (b"\n" + rest.replace(OLD.encode(), new.encode()) if b"\n" in data else b"")
    else:
        expected = data.replace(OLD.encode(), new.encode())
    assert bytes(out) == expected


@pytest.fixture(scope="module")
def monkeypatch_chunk():
    """Small read sizes so chunk boundaries fall everywhere."""
    old = pr.CHUNK
    pr.CHUNK = 7
    yield
    pr.CHUNK = old


def test_binary_growing_prefix_refused() -> None:
    with pytest.raises(pr.PrefixTooLong):
        pr.copy_binary(_Chunky(b"x" + OLD.encode() + b"\0", 5), bytearray().extend, OLD, OLD + "/more")


def test_install_package_into_staging_at_logical_prefix(tmp_path: Path) -> None:
    """The OCI layer builder installs each package into its own staging dir for /app/.pixi/envs/prod."""
    specs = [PackageSpec("python", "3.12.1", "h0", files=[PkgFile("bin/python3.12", b"#!/bin/sh\n", 0o755)]),
             PackageSpec("app", "1.0", "pyh0", subdir="noarch", noarch="python", entry_points=("app = app:main",),
                         files=[PkgFile("site-packages/app/__init__.py", b"def main(): pass\n"),
                                PkgFile("etc/app.conf", b"home=@PREFIX@\n", prefix="text")])]
    archives = [write_package(s, tmp_path / "ch") for s in specs]
    logical = "/app/.pixi/envs/prod"
    for archive in archives:
        record = record_from_archive(archive)
        install_package(record, archive, tmp_path / "layers" / record.name, target_prefix=logical,
                        python_version="3.12", platform="linux-64")
    layer = tmp_path / "layers" / "app"
    assert (layer / "etc/app.conf").read_text() == f"home={logical}\n"
    assert (layer / "bin/app").read_text().startswith(f"#!{logical}/bin/python3.12\n")
    meta = json.loads((layer / "conda-meta/app-1.0-pyh0.json").read_text())
    assert "lib/python3.12/site-packages/app/__init__.py" in meta["files"]
    # the union of the layers is what one environment install produces
    whole = tmp_path / "whole"
    install_environment([(record_from_archive(a), a) for a in archives], whole, target_prefix=logical,
                        platform="linux-64")
    union = {}
    for layer_dir in sorted((tmp_path / "layers").iterdir()):
        for p in layer_dir.rglob("*"):
            if p.is_file() and "conda-meta" not in p.parts:
                union[p.relative_to(layer_dir).as_posix()] = p.read_bytes()
    expected = {p.relative_to(whole).as_posix(): p.read_bytes() for p in whole.rglob("*")
                if p.is_file() and "conda-meta" not in p.parts}
    assert union == expected


_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_JSON_DOCS = st.recursive(_JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(st.text(max_size=6), inner, max_size=4),
    st.dictionaries(st.integers(), inner, max_size=2)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(_JSON_DOCS)
def test_conda_meta_json_is_what_json_dumps_writes(doc) -> None:
    """conda-meta records are written by a faster encoder; the bytes must be json.dumps's."""
    assert dumps_indented(doc) == json.dumps(doc, indent=2, ensure_ascii=False)
