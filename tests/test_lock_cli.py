"""`pixibuild lock-info` through the real CLI: output, aliases, and one-line exit-2 errors on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_corpus
from pixibuild.cli import main
from pixibuild.inputs.lockfile import read_lock
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.demo.lockwriter import write_lock

MANIFEST = """\
[workspace]
name = "tiny"
channels = ["conda-forge"]
platforms = ["linux-64"]

[dependencies]
python = ">=3.11"
"""


def _record(name: str, version: str, build: str = "h0_0", subdir: str = "linux-64") -> CondaRecord:
    url = f"https://conda.anaconda.org/conda-forge/{subdir}/{name}-{version}-{build}.conda"
    return CondaRecord(url=url, file_name=url.rsplit("/", 1)[1], subdir=subdir, name=name, version=version,
                       build=build, build_number=0, sha256="ab" * 32, md5="cd" * 16, size=10)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pixi.toml").write_text(MANIFEST)
    wheel = PypiRecord(name="requests", version="2.32.3", sha256="ef" * 32,
                       location="https://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl")
    write_lock(tmp_path / "pixi.lock", {"default": {"linux-64": [_record("python", "3.12.1"),
                                                                  _record("zlib", "1.3.1"), wheel]}})
    return tmp_path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_lock_info_table_and_json(project: Path, capsys) -> None:
    code, out, err = _run(capsys, "lock-info", str(project), "-e", "default", "-p", "linux-64")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("# ") and "2 conda, 1 pypi" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["python", "zlib", "requests"]  # conda, then pypi
    assert lines[1].split()[1:] == ["3.12.1", "h0_0", _record("python", "3.12.1").url, "ab" * 32]

    code, out, _ = _run(capsys, "lock-info", "--manifest-file", str(project / "pixi.toml"), "-p", "linux-64",
                        "--json", "--locked")
    assert code == 0
    data = json.loads(out)
    assert [p["name"] for p in data["packages"]] == ["python", "zlib", "requests"]
    expected = read_lock(project / "pixi.lock").environment("default").conda_packages("linux-64")
    assert [p["url"] for p in data["packages"][:2]] == [r.url for r in expected]


def test_lock_info_locked_reports_unsatisfied_spec(project: Path, capsys) -> None:
    (project / "pixi.toml").write_text(MANIFEST.replace(">=3.11", ">=3.13") + 'numpy = "*"\n')
    code, out, err = _run(capsys, "lock-info", str(project), "-p", "linux-64", "--locked")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "python >=3.13 but lock has 3.12.1 h0_0" in err and "missing conda package numpy" in err
    assert str(project / "pixi.lock") in err


def test_lock_info_subprocess_smoke(project: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pixibuild", "lock-info", "-p", "linux-64"], cwd=project,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "python" in result.stdout and "zlib" in result.stdout


def _assert_one_line_error(capsys, argv: list[str], path: Path, field: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    # "pixibuild: error: <file>: <field>: <message>" (the field may go on with an index: `x[7]`)
    assert re.match(rf"pixibuild: error: {re.escape(str(path))}: {re.escape(field)}[^ ]*: \S", err), err
    return err


def test_invalid_yaml(project: Path, capsys) -> None:
    (project / "pixi.lock").write_text("version: 6\nenvironments:\n  default: [unclosed\n")
    err = _assert_one_line_error(capsys, ["lock-info", str(project), "-p", "linux-64"],
                                 project / "pixi.lock", "yaml")
    assert "line" in err


def test_truncated_corpus_lock(tmp_path: Path, capsys) -> None:
    source = require_corpus("locks", "prefix-dev__pixi__examples__pypi__pixi.lock")
    text = (source / "pixi.lock").read_text()
    (tmp_path / "pixi.toml").write_text((source / "pixi.toml").read_text())
    cut = text.index("sha256:", len(text) // 2) + len("sha256: 3fde")  # mid-hash, mid-package
    (tmp_path / "pixi.lock").write_text(text[:cut] + '\n  md5: "unterminated\n')
    _assert_one_line_error(capsys, ["lock-info", str(tmp_path), "-p", "linux-64"], tmp_path / "pixi.lock", "yaml")
    # cut on a line boundary instead: valid YAML, but environments now point at missing packages
    (tmp_path / "pixi.lock").write_text(text[: text.index("\n- conda:", len(text) // 2)] + "\n")
    err = _assert_one_line_error(capsys, ["lock-info", str(tmp_path), "-p", "linux-64"],
                                 tmp_path / "pixi.lock", "environments.default.packages.")
    assert "not in `packages`" in err


@pytest.mark.parametrize("version", ["99", "0", "'six'"])
def test_unknown_lock_version(project: Path, capsys, version: str) -> None:
    lock = project / "pixi.lock"
    lock.write_text(re.sub(r"^version: 6", f"version: {version}", lock.read_text(), flags=re.M))
    err = _assert_one_line_error(capsys, ["lock-info", str(project), "-p", "linux-64"], lock, "version")
    assert version.strip("'") in err


def test_missing_environment(project: Path, capsys) -> None:
    err = _assert_one_line_error(capsys, ["lock-info", str(project), "-e", "prod", "-p", "linux-64"],
                                 project / "pixi.lock", "environment")
    assert "'prod'" in err and "default" in err


def test_missing_platform(project: Path, capsys) -> None:
    err = _assert_one_line_error(capsys, ["lock-info", str(project), "-p", "osx-arm64"],
                                 project / "pixi.lock", "platform")
    assert "'osx-arm64'" in err and "linux-64" in err


def test_manifest_not_toml(project: Path, capsys) -> None:
    (project / "pixi.toml").write_text("[workspace\nname = tiny\n")
    err = _assert_one_line_error(capsys, ["lock-info", str(project), "-p", "linux-64", "--locked"],
                                 project / "pixi.toml", "toml")
    assert "line 1" in err


def test_no_manifest_and_conflicting_aliases(tmp_path: Path, project: Path, capsys) -> None:
    _assert_one_line_error(capsys, ["lock-info", str(tmp_path / "nowhere")], tmp_path / "nowhere", "manifest")
    other = tmp_path / "other"
    other.mkdir()
    (other / "pixi.toml").write_text(MANIFEST)
    code, _, err = _run(capsys, "lock-info", str(project), "--manifest-file", str(other))
    assert code == 2 and "--manifest-file" in err and err.count("\n") == 1
