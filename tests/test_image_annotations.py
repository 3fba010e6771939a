"""The `org.opencontainers.image.*` annotations users expect: created (SOURCE_DATE_EPOCH), revision
and source from a clean git checkout (never credentials), version from the manifest — in the
manifest's annotations and the config's labels, overridable."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from pixibuild.cli import main
from pixibuild.demo.demo import write_demo

A = "org.opencontainers.image."


def _git(repo: Path, *args: str) -> str:
    git = require_tool("git")
    return subprocess.run([git, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The demo's webapp as a committed project in a git checkout with an origin remote."""
    projects = write_demo(tmp_path / "demo")
    repo = tmp_path / "repo"
    shutil.copytree(projects["webapp"], repo / "webapp")
    manifest = repo / "webapp" / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('name = "webapp"', 'name = "webapp"\nversion = "1.4.2"')
                        .replace('base = "oci:../base:busybox"', f'base = "oci:{tmp_path / "demo" / "base"}:busybox"'))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "app")
    _git(repo, "remote", "add", "origin", "https://deploy:s3cr3t@git.example.com/team/webapp.git")
    return repo


def _annotations(tmp_path: Path, project: Path, *flags: str) -> tuple[dict, dict]:
    out = tmp_path / "layout"
    shutil.rmtree(out, ignore_errors=True)
    assert main(["image", str(project), "-e", "prod", "-p", "linux-64", "--oci-dir", str(out), "--tag", "w:1",
                 *flags]) == 0
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    config = json.loads((out / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
    return manifest["annotations"], config["config"]["Labels"]


def test_clean_checkout_gives_revision_source_version_created(repo: Path, tmp_path: Path, store_dir,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    annotations, labels = _annotations(tmp_path, repo / "webapp")
    head = _git(repo, "rev-parse", "HEAD")
    expected = {f"{A}created": "2023-11-14T22:13:20Z", f"{A}revision": head, f"{A}version": "1.4.2",
                f"{A}source": "https://git.example.com/team/webapp.git", f"{A}title": "webapp"}
    assert annotations == expected
    assert {k: labels[k] for k in expected} == expected
    assert "s3cr3t" not in json.dumps(annotations) + json.dumps(labels)


def test_dirty_or_untracked_project_gets_no_revision(repo: Path, tmp_path: Path, store_dir) -> None:
    (repo / "webapp" / "app" / "main.sh").write_text("#!/bin/sh\nexec hello --changed\n")
    annotations, labels = _annotations(tmp_path, repo / "webapp")
    assert f"{A}revision" not in annotations and f"{A}source" not in annotations
    assert f"{A}revision" not in labels and annotations[f"{A}version"] == "1.4.2"
    _git(repo, "checkout", "--", ".")
    (repo / "webapp" / "untracked.txt").write_text("new\n")
    assert f"{A}revision" not in _annotations(tmp_path, repo / "webapp")[0]


def test_annotations_can_be_overridden(repo: Path, tmp_path: Path, store_dir) -> None:
    annotations, labels = _annotations(tmp_path, repo / "webapp", "--label", f"{A}version=2.0.0-rc1",
                                       "--annotation", f"{A}source=https://mirror.example.com/webapp",
                                       "--annotation", "com.example.team=platform")
    assert annotations[f"{A}version"] == labels[f"{A}version"] == "2.0.0-rc1"
    assert annotations[f"{A}source"] == "https://mirror.example.com/webapp"
    assert labels[f"{A}source"] == "https://git.example.com/team/webapp.git"
    assert annotations["com.example.team"] == "platform" and "com.example.team" not in labels
