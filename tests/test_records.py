"""One record vocabulary: repodata entries in and out, wheel file names, and user-reachable
conflicts as one-line InputErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.errors import InputError
from pixibuild.pack.writer import PackContents, write_tar

ENTRY = {"name": "zlib", "version": "1.3.1", "build": "h4ab18f5_1", "build_number": 1, "subdir": "linux-64",
         "depends": ["libgcc-ng >=12"], "constrains": [], "license": "Zlib", "md5": "0" * 32, "sha256": "1" * 64,
         "size": 89000, "timestamp": 1716874197000, "track_features": ["a", "b"], "purls": [], "arch": "x86_64",
         "platform": "linux", "channel": "conda-forge", "noarch": None}


def test_repodata_round_trip_keeps_every_package_field() -> None:
    record = CondaRecord.from_repodata(ENTRY, url="https://x/linux-64/zlib.conda", file_name="zlib.conda")
    assert (record.name, record.version, record.build_number, record.subdir) == ("zlib", "1.3.1", 1, "linux-64")
    out = record.to_repodata()
    assert list(out) == sorted(out)
    assert "constrains" not in out and "noarch" not in out  # empty / None are omitted, as rattler does
    assert "channel" not in out  # where it came from is not what it is
    assert out["track_features"] == "a b" and out["purls"] == [] and out["arch"] == "x86_64"
    again = CondaRecord.from_repodata(out, url=record.url, file_name=record.file_name)
    assert again.to_repodata() == out


@pytest.mark.parametrize("bad, message", [
    ({"version": "1"}, "'name'"),
    ({"name": "x", "version": True}, "'version'"),
    ({"name": "x", "version": "1", "depends": "python"}, "'depends' must be a list"),
    ({"name": "x", "version": "1", "build_number": "seven"}, "'build_number'"),
])
def test_bad_repodata_entries_are_one_line_input_errors(bad: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        CondaRecord.from_repodata(bad, url="u", file_name="x.conda", where="pack.tar: channel/noarch/repodata.json")
    assert str(info.value).startswith("pack.tar: channel/noarch/repodata.json: ")


def test_wheel_names_follow_pep_427() -> None:
    record = PypiRecord.from_wheel_file("My_Pkg-1.0.post1-py3-none-any.whl")
    assert (record.name, record.version) == ("my-pkg", "1.0.post1")
    with pytest.raises(InputError, match="not a valid wheel file name"):
        PypiRecord.from_wheel_file("nope.whl", where="--inject nope.whl")


def test_two_packages_at_one_pack_path_is_an_input_error(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    one = CondaRecord.from_repodata(ENTRY, url="u1", file_name="zlib.conda")
    two = CondaRecord.from_repodata({**ENTRY, "build": "other"}, url="u2", file_name="zlib.conda")
    with open(tmp_path / "out.tar", "wb") as out, pytest.raises(InputError, match="two packages"):
        write_tar(PackContents(platform="linux-64", conda=[(one, blob), (two, blob)]), out)


def _asdict_digest(record) -> str:
    """record_digest as it was first written (dataclasses.asdict): every content key depends on it."""
    import dataclasses

    from pixibuild.files.digest import json_digest

    fields = dataclasses.asdict(record)
    fields["__type__"] = type(record).__name__
    return json_digest(fields)


def test_record_digest_is_unchanged_by_its_faster_form(corpus_locks: Path) -> None:
    """Every record of every corpus lock, plus records with nested `extra` values: same digest as the
    asdict form (a change here would rebuild every user's cache)."""
    from pixibuild.conda.records import record_digest
    from pixibuild.inputs.lockfile import read_lock

    records = [CondaRecord.from_repodata({"name": "a", "version": "1", "depends": ["b"], "purls": [{"x": [1, 2]}],
                                          "features": ("f",), "weird": {"k": {"n": None}}}, url="u", file_name="a.conda"),
               PypiRecord(name="p", version="1", location="./p", extra={"k": [1, {"a": "b"}]})]
    for lock_path in sorted(corpus_locks.glob("*/pixi.lock")):
        try:
            lock = read_lock(lock_path)
        except InputError:
            continue
        for env in lock.environments.values():
            for platform in env.platforms:
                records += env.conda_packages(platform) + env.pypi_packages(platform)
    assert len(records) > 10_000
    assert all(record_digest(r) == _asdict_digest(r) for r in records)


def test_canonical_json_is_json_dumps_sorted_and_compact() -> None:
    """The reused C encoder writes exactly what `json.dumps(sort_keys, compact, default=str)` writes:
    every content key and OCI digest is the sha256 of these bytes."""
    import json

    from pixibuild.files.digest import canonical_json

    values = ["s", "é\u2028\x00\"\\", 1.5, -0.0, 1e300, 10**30, None, True, False, 7,
              {"b": [1, {"z": "y", "a": (1, 2)}], "a": []}, ("t", ["u"]), Path("/x y"), {}, [], ""]
    for value in [values, *values]:
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        assert canonical_json(value) == expected.encode(), value
