"""Fuzzing the parsers of untrusted input — lock files, pack repodata.json + pixi-pack.json, and
paths.json: whatever the bytes, the outcome is a parsed result or an InputError (one line), never
another exception. Brief in CI; longer with e.g. `PIXIBUILD_FUZZ_EXAMPLES=20000 .venv/bin/python -m
pytest tests/test_fuzz_inputs.py tests/test_install_hostile.py -k fuzz`."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixibuild.errors import InputError
from pixibuild.conda.archive import parse_paths_json
from pixibuild.pack.reader import PackReader, conda_packages, validate_metadata
from pixibuild.inputs.lockfile import parse_lock
from pixibuild.conda.records import CondaRecord
from pixibuild.demo.lockwriter import write_lock

FUZZ = settings(max_examples=int(os.environ.get("PIXIBUILD_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _seed_lock(tmp: Path) -> str:
    rec = CondaRecord(url="https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-h4ab18f5_1.conda",
                      file_name="zlib-1.3.1-h4ab18f5_1.conda", subdir="linux-64", name="zlib", version="1.3.1",
                      build="h4ab18f5_1", build_number=1, depends=("libgcc-ng >=12",), sha256="a" * 64,
                      md5="b" * 32, size=89141, timestamp=1716874266000, license="Zlib")
    return write_lock(tmp / "pixi.lock", {"default": {"linux-64": [rec]}}).read_text()


SEED = _seed_lock(Path(__import__("tempfile").mkdtemp(prefix="pixibuild-fuzz-")))


def _one_line(exc: InputError) -> None:
    assert "\n" not in str(exc) and str(exc)


@FUZZ
@given(st.data())
def test_lock_reader_mutations(data) -> None:
    text = SEED
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["cut", "flip", "insert", "delete-line", "dup-line"]))
        pos = data.draw(st.integers(0, max(0, len(text) - 1)))
        if op == "cut":
            text = text[:pos]
        elif op == "flip":
            text = text[:pos] + data.draw(st.characters(blacklist_categories=("Cs",))) + text[pos + 1:]
        elif op == "insert":
            text = text[:pos] + data.draw(st.text(max_size=12)) + text[pos:]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                i = data.draw(st.integers(0, len(lines) - 1))
                lines[i:i + 1] = [] if op == "delete-line" else [lines[i], lines[i]]
            text = "".join(lines)
    try:
        lock = parse_lock(text, "fuzz/pixi.lock")
        for env in lock.environments.values():
            for platform in env.platforms:
                env.conda_packages(platform)
                env.pypi_packages(platform)
    except InputError as exc:
        _one_line(exc)


@FUZZ
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20).map(lambda v: json.dumps({"paths_version": 1, "paths": v} if not isinstance(v, dict) else v).encode()))
def test_paths_json_parser(data: bytes) -> None:
    try:
        parse_paths_json("fuzz-1.0-0.conda", data)
    except InputError as exc:
        _one_line(exc)


def _pack(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=16),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=16), c, max_size=4),
                       max_leaves=16)


@FUZZ
@given(meta=JSONISH, repodata=JSONISH, raw=st.booleans(), garbage=st.binary(max_size=64))
def test_pack_metadata_and_repodata(tmp_path_factory, meta, repodata, raw, garbage) -> None:
    if raw:
        repodata_bytes = garbage
    else:
        repodata_bytes = json.dumps({"info": {"subdir": "linux-64"}, "packages.conda": repodata}).encode()
    tar = _pack({"pixi-pack.json": json.dumps(meta).encode(),
                 "channel/linux-64/repodata.json": repodata_bytes})
    path = tmp_path_factory.mktemp("pack") / "environment.tar"
    path.write_bytes(tar)
    try:
        with PackReader(path) as reader:
            validate_metadata(reader, "linux-64")
            conda_packages(reader)
    except InputError as exc:
        _one_line(exc)
