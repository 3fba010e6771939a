"""Lock reader details the corpus differential test does not pin down on its own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from pixibuild.conda.filename import channel_from_url, is_url, location_file_name, split_archive_name, subdir_from_url
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import _Locations, parse_lock, read_lock

V6 = """\
version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/noarch/six-1.10-pyhd8ed1ab_0.conda
      - conda: ../local/linux-64/tool-2.0-h1_3.tar.bz2
      - conda: ../recipes/mypkg
        name: mypkg
      - pypi: ./src
packages:
- conda: https://conda.anaconda.org/conda-forge/noarch/six-1.10-pyhd8ed1ab_0.conda
  sha256: aa
  timestamp: 1700000000
- conda: ../local/linux-64/tool-2.0-h1_3.tar.bz2
  subdir: linux-64
  size: 12
- conda: ../recipes/mypkg
  name: mypkg
  version: '0.1'
  build: h0
  subdir: linux-64
- pypi: ./src
  name: src
  version: '2.10'
  sha256: bb
  editable: true
"""


_SIX = "https://conda.anaconda.org/conda-forge/noarch/six-1.10-pyhd8ed1ab_0.conda"


def test_fields_derived_like_rattler() -> None:
    env = parse_lock(V6).environment("default")
    records = {r.name: r for r in env.conda_packages("linux-64")}
    six, tool, mypkg = records["six"], records["tool"], records["mypkg"]
    assert (six.version, six.build, six.build_number, six.subdir, six.noarch) == ("1.10", "pyhd8ed1ab_0", 0,
                                                                                 "noarch", "python")
    assert six.timestamp == 1_700_000_000_000  # seconds in the lock, milliseconds in the record
    assert six.channel == "https://conda.anaconda.org/conda-forge/" and not six.is_path
    assert (tool.version, tool.build, tool.build_number, tool.is_path, tool.channel) == ("2.0", "h1_3", 3, True, None)
    assert tool.extra["arch"] == "x86_64" and tool.extra["platform"] == "linux"
    assert mypkg.is_source and mypkg.is_path and mypkg.file_name == ""
    (src,) = env.pypi_packages("linux-64")
    assert (src.version, src.editable, src.is_path, src.sha256) == ("2.10", True, True, None)
    assert src.extra["source_tree_sha256"] == "bb"  # a directory's hash is not a file hash


def test_flow_style_yaml_falls_back_to_pyyaml() -> None:
    block = parse_lock(V6)
    flow = parse_lock(yaml.safe_dump(yaml.load(V6, Loader=yaml.BaseLoader), default_flow_style=True))
    assert block.environment("default").conda_packages("linux-64") == flow.environment("default").conda_packages("linux-64")


def test_v7_custom_platform_names() -> None:
    text = """\
version: 7
platforms:
- name: linux-64-cuda
  subdir: linux-64
  virtual-packages: [__cuda=12]
environments:
  default:
    channels: [{url: 'https://conda.anaconda.org/conda-forge/'}]
    packages:
      linux-64-cuda:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0_0.conda
      - conda_source: app[1234abcd] @ .
packages:
- conda: https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0_0.conda
- conda_source: app[1234abcd] @ .
  variants: {target_platform: linux-64}
"""
    lock = parse_lock(text)
    env = lock.environment("default")
    assert env.platforms == ["linux-64-cuda"] and env.subdir("linux-64-cuda") == "linux-64"
    assert lock.platforms["linux-64-cuda"].virtual_packages == ("__cuda=12",)
    app = [r for r in env.conda_packages("linux-64-cuda") if r.is_source][0]
    assert (app.name, app.url, app.subdir, app.version) == ("app", ".", "linux-64", "")
    with pytest.raises(InputError, match="not declared in the top-level `platforms`"):
        parse_lock(text.replace("      linux-64-cuda:", "      osx-64:"))


@pytest.mark.parametrize("text,field", [
    ("", "version"), ("- 1\n", "version"), ("version: 6\n", "environments"),
    ("version: 6\nenvironments: {default: {channels: [], packages: {linux-64: [{conda: x}]}}}\npackages: []\n",
     "environments.default.packages.linux-64[0]"),
    ("version: 3\nmetadata: {channels: []}\npackage: [{platform: linux-64, manager: npm, url: u}]\n",
     "package[0].manager"),
    # per-field errors of a package entry (labels are formatted only when an error is raised)
    (V6.replace("  sha256: aa\n", "  sha256: aa\n  depends: {a: b}\n"), f"package {_SIX}.depends"),
    (V6.replace("  sha256: aa\n", "  sha256: aa\n  size: big\n"), f"package {_SIX}.size"),
    (V6.replace("  sha256: aa\n", "  sha256: [aa]\n"), f"package {_SIX}.sha256"),
    (V6.replace("  timestamp: 1700000000\n", "  timestamp: 1.5\n"), f"package {_SIX}.timestamp"),
    (V6.replace("- conda: ../local/linux-64/tool-2.0-h1_3.tar.bz2\n  subdir", "- conda: ''\n  subdir"),
     "packages[1]"),
    (V6.replace("      - conda: ../local/linux-64/tool-2.0-h1_3.tar.bz2", "      - conda: [x]"),
     "environments.default.packages.linux-64[1].conda"),
    (V6.replace("      - pypi: ./src", "      - {}"), "environments.default.packages.linux-64[3]"),
])
def test_structural_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as error:
        parse_lock(text, "x/pixi.lock")
    assert str(error.value).startswith(f"x/pixi.lock: {field}: ")


def test_records_equal_constructed_ones() -> None:
    """The reader builds records without their dataclass `__init__` (speed): they must be
    complete and equal, with equal hashes, to records built the ordinary way."""
    for record in parse_lock(V6).environment("default").conda_packages("linux-64"):
        rebuilt = dataclasses.replace(record)  # calls CondaRecord(**every field)
        assert rebuilt == record and hash(rebuilt) == hash(record)
        assert dataclasses.asdict(rebuilt) == dataclasses.asdict(record)


_SEGMENTS = st.sampled_from(["conda-forge", "linux-64", "noarch", "osx-arm64", "label", "", "a?b", "x#y", "main"])
_FILES = st.sampled_from(["six-1.10-py_0.conda", "tool-2.0-h1_3.tar.bz2", "bad.conda", "a-b.conda", "x-1-0.zip",
                          "", "q-1-0.conda?x=1", "f-1-0.conda#frag", "-1-0.conda"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["https://", "http://", "file://", "HTTPS://", "s3://", "./", "", "C:\\"]),
                          st.sampled_from(["host", "h:8080", "", "u@h"]), st.lists(_SEGMENTS, max_size=4), _FILES),
                min_size=1, max_size=6))
def test_location_facts_match_filename_helpers(pieces) -> None:
    """The per-directory memo gives what the `conda.filename` helpers give for every location."""
    locations = _Locations()
    for scheme, host, segments, file_name in pieces:
        location = scheme + "/".join([host, *segments, file_name])
        name = location_file_name(location) or ""
        expected = (name, split_archive_name(name), subdir_from_url(location), channel_from_url(location),
                    is_url(location))
        assert locations.facts(location) == expected, location


def test_missing_lock_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lock file not found"):
        read_lock(tmp_path / "pixi.lock")


def test_subdir_tables_match_rattler() -> None:
    rattler = pytest.importorskip("rattler")
    from pixibuild.conda.filename import PARSEABLE_SUBDIRS
    from pixibuild.conda.platforms import arch_and_platform

    subdir_type = getattr(rattler, "Subdir", None) or rattler.Platform  # Platform: deprecated name
    platforms = {str(p) for p in subdir_type.all()}
    assert platforms <= PARSEABLE_SUBDIRS | {"unknown"}
    for subdir in sorted(platforms - {"unknown"}):
        p = subdir_type(subdir)
        expected = (str(p.arch) if p.arch else None, p.only_platform)
        assert arch_and_platform(subdir) == expected, subdir
