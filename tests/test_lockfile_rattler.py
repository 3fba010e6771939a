"""Differential test: our lock reader against py-rattler on every lock of the real-world corpus.

For every environment and platform both must give the same conda packages in the same order with
the same fields (URL, file name, subdir, name, version, build, build number, depends, constrains,
hashes, size, timestamp, noarch, license, channel, arch, platform), the same source packages and
the same PyPI distributions (location, name, version, hashes, requires-python). Each lock is
parsed once per implementation. All corpus locks are accepted by the rattler we test against; a
lock it rejects would have to be rejected by us too (checked below, not skipped).
"""

from __future__ import annotations

import csv
import re

import pytest

from conftest import CORPUS, require_corpus
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import read_lock

rattler = pytest.importorskip("rattler")


def _corpus_locks() -> list[str]:
    index = CORPUS / "locks" / "INDEX.tsv"
    if not index.exists():
        return ["<corpus missing>"]
    with index.open(newline="") as handle:
        return [row["dir"] for row in csv.DictReader(handle, delimiter="\t")]


def _noarch(record) -> str | None:
    kind = record.noarch
    return "python" if kind.python else ("generic" if kind.generic else None)


def _ms(timestamp) -> int | None:
    return None if timestamp is None else round(timestamp.timestamp() * 1000)


def _rattler_conda(record) -> dict:
    return {
        "url": record.url, "file_name": record.file_name, "subdir": record.subdir,
        "name": record.name.source, "version": str(record.version), "build": str(record.build),
        "build_number": record.build_number, "depends": tuple(record.depends),
        "constrains": tuple(record.constrains),
        "sha256": record.sha256.hex() if record.sha256 else None,
        "md5": record.md5.hex() if record.md5 else None, "size": record.size,
        "timestamp": _ms(record.timestamp), "noarch": _noarch(record), "license": record.license,
        "channel": record.channel, "arch": record.arch, "platform": record.platform,
        "license_family": record.license_family,
        "track_features": tuple(record.track_features) or None,
        "python_site_packages_path": record.python_site_packages_path,
    }


def _our_conda(record) -> dict:
    track = record.extra.get("track_features")
    if isinstance(track, str):
        track = tuple(t for t in re.split(r"[\s,]+", track) if t)
    return {
        "url": record.url, "file_name": record.file_name, "subdir": record.subdir,
        "name": record.name, "version": record.version, "build": record.build,
        "build_number": record.build_number, "depends": record.depends,
        "constrains": record.constrains, "sha256": record.sha256, "md5": record.md5,
        "size": record.size, "timestamp": record.timestamp, "noarch": record.noarch,
        "license": record.license, "channel": record.channel, "arch": record.extra.get("arch"),
        "platform": record.extra.get("platform"), "license_family": record.extra.get("license_family"),
        "track_features": tuple(track) if track else None,
        "python_site_packages_path": record.extra.get("python_site_packages_path"),
    }


def _rattler_pypi(package) -> dict:
    hashes = package.hashes
    has_hashes = getattr(hashes, "_hashes", None) is not None  # py-rattler raises on hash-less entries
    sha256 = hashes.sha256 if has_hashes else None
    md5 = hashes.md5 if has_hashes else None
    return {"location": package.location, "name": package.name, "version": package.version,
            "sha256": sha256.hex() if sha256 else None, "md5": md5.hex() if md5 else None,
            "requires_python": package.requires_python}


def _our_pypi(record) -> dict:
    return {"location": record.location, "name": record.name, "version": record.version,
            "sha256": record.sha256, "md5": record.md5, "requires_python": record.requires_python}


def _specifiers(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(part.strip().replace(" ", "") for part in text.split(","))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.corpus
@pytest.mark.parametrize("lock_dir", _corpus_locks())
def test_lock_matches_rattler(lock_dir: str) -> None:
    path = require_corpus("locks", lock_dir, "pixi.lock")
    try:
        theirs = rattler.LockFile.from_path(path)
    except Exception as exc:  # noqa: BLE001 - any rattler rejection
        with pytest.raises(InputError) as ours_error:
            read_lock(path)
        assert str(path) in str(ours_error.value), f"rattler rejects it ({exc}); our error must name the file"
        return
    ours = read_lock(path)

    their_envs = dict(theirs.environments())
    assert sorted(ours.environments) == sorted(their_envs)
    compared = 0
    for env_name, their_env in their_envs.items():
        our_env = ours.environment(env_name)
        assert our_env.channels == [c.url if hasattr(c, "url") else _channel_url(c)
                                    for c in their_env.channels()]
        their_platforms = {p.name: p for p in their_env.platforms()}
        assert sorted(our_env.platforms) == sorted(their_platforms)
        for platform_name, platform in their_platforms.items():
            assert our_env.subdir(platform_name) == str(platform.subdir)
            where = f"{lock_dir} {env_name}/{platform_name}"
            ours_conda = our_env.conda_packages(platform_name)
            binaries = [r for r in ours_conda if not r.is_source]
            records = their_env.conda_repodata_records_for_platform(platform) or []
            assert [r.url for r in binaries] == [r.url for r in records], where
            for our_record, their_record in zip(binaries, records):
                assert _our_conda(our_record) == _rattler_conda(their_record), f"{where} {our_record.url}"
                compared += 1
            # Source packages (built from a recipe): same names and locations.
            their_sources = [(p.name, p.location) for p in their_env.packages(platform)
                             if type(p).__name__ == "CondaLockedSourcePackage"]
            our_sources = [(r.name, r.url) for r in ours_conda if r.is_source]
            assert sorted(our_sources) == sorted(their_sources), where

            their_pypi = their_env.pypi_packages_for_platform(platform) or []
            our_pypi = our_env.pypi_packages(platform_name)
            assert [p.location for p in our_pypi] == [p.location for p in their_pypi], where
            for our_record, their_record in zip(our_pypi, their_pypi):
                expected = _rattler_pypi(their_record)
                got = _our_pypi(our_record)
                # rattler normalizes names and requires-python; it reports a source directory's
                # version as `<dynamic>` where we keep the version the lock wrote down.
                expected["name"], got["name"] = _canonical(expected["name"]), _canonical(got["name"])
                for pair in (expected, got):
                    pair["requires_python"] = _specifiers(pair["requires_python"])
                if expected["version"] == "<dynamic>" and our_record.is_path:
                    expected["version"] = got["version"]
                assert got == expected, f"{where} {our_record.location}"
    assert compared == sum(len(their_env.conda_repodata_records_for_platform(p) or [])
                           for their_env in their_envs.values() for p in their_env.platforms())


def _channel_url(channel) -> str:
    match = re.search(r'url="([^"]*)"', repr(channel))
    assert match, repr(channel)
    return match.group(1)
