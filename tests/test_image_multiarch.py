"""Multi-platform images: one OCI image index over one manifest per platform, platform-independent
layers shared as the same blobs, each platform's files for that architecture, pushed as an index."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import require_tool
from oci_helpers import LocalRegistry, skopeo, umoci_unpack
from support.elf import MACHINES, tiny_elf

from pixibuild.cli import main
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel
from pixibuild.demo.lockwriter import write_lock
from pixibuild.net.mediatypes import MEDIA_TYPE_INDEX

PLATFORMS = ("linux-64", "linux-aarch64")
PREFIX = "app/.pixi/envs/default"


def write_project(root: Path, extra_toml: str = "") -> Path:
    """A project whose `tool` package is a real ELF binary of each platform's architecture, plus a
    noarch data package and a noarch activation package."""
    specs = [(PackageSpec("tool", "1.0", "h0_0", subdir=p, files=[PkgFile("bin/tool", tiny_elf(MACHINES[p]), 0o755)]),
              ".conda") for p in PLATFORMS]
    specs += [(PackageSpec("data", "2.0", "0", subdir="noarch", noarch="generic",
                           files=[PkgFile("share/data/blob.bin", bytes(range(256)) * 64)]), ".conda"),
              (PackageSpec("envvars", "1.0", "0", subdir="noarch", noarch="generic",
                           files=[PkgFile("etc/conda/env_vars.d/envvars.json", b'{"DATA_DIR": "share/data"}')]),
               ".tar.bz2")]
    channel = root / "channel"
    write_channel(specs, channel)
    records = {}
    for spec, fmt in specs:
        records.setdefault(spec.subdir, {})[spec.name] = locked_record(spec, channel / spec.subdir / f"{spec.dist_name}{fmt}")
    project = root / "multi"
    project.mkdir(parents=True)
    (project / "pixi.toml").write_text(
        f'[workspace]\nname = "multi"\nversion = "3.1.0"\nchannels = ["{channel.as_uri()}"]\n'
        f'platforms = {json.dumps(list(PLATFORMS))}\n\n[dependencies]\ntool = "*"\ndata = "*"\nenvvars = "*"\n'
        f'\n[tool.pixibuild.image]\ncmd = ["tool"]\n{extra_toml}')
    write_lock(project / "pixi.lock", {"default": {p: [records[p]["tool"], records["noarch"]["data"],
                                                       records["noarch"]["envvars"]] for p in PLATFORMS}},
               channels=[channel.as_uri()])
    return project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "src")


def _index(text: str) -> dict:
    value = json.loads(text)
    assert value["mediaType"] == MEDIA_TYPE_INDEX, value
    return value


def _manifest(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())


def test_two_platforms_make_one_index_with_shared_blobs_and_native_binaries(project: Path, tmp_path: Path,
                                                                          store_dir) -> None:
    layout, tar = tmp_path / "layout", tmp_path / "multi.tar"
    assert main(["image", str(project), "-p", "linux-64", "-p", "linux-aarch64", "--tag", "multi:1",
                 "--oci-dir", str(layout), "-o", str(tar), "--cache-dir", str(tmp_path / "c")]) == 0
    index = _index(skopeo("inspect", "--raw", f"oci:{layout}:1"))
    assert [m["platform"] for m in index["manifests"]] == [{"architecture": "amd64", "os": "linux"},
                                                          {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    assert index["annotations"]["org.opencontainers.image.version"] == "3.1.0"
    # the tar is an OCI archive of the same index (and no docker manifest.json: it holds one image)
    assert _index(skopeo("inspect", "--raw", f"oci-archive:{tar}:1")) == index
    with tarfile.open(tar) as archive:
        assert "manifest.json" not in archive.getnames()
    amd64, arm64 = (_manifest(layout, m["digest"]) for m in index["manifests"])
    shared = {l["digest"] for l in amd64["layers"]} & {l["digest"] for l in arm64["layers"]}
    history = {h: json.loads((layout / "blobs/sha256" / m["config"]["digest"].split(":")[1]).read_text())["history"]
               for h, m in (("amd64", amd64), ("arm64", arm64))}
    noarch_layers = [amd64["layers"][i]["digest"] for i, h in enumerate(history["amd64"])
                     if "data-2.0" in h.get("created_by", "") or "envvars-1.0" in h.get("created_by", "")]
    assert len(noarch_layers) == 2 and set(noarch_layers) <= shared
    assert len(shared) < len(amd64["layers"])  # the tool layers differ
    file = require_tool("file")
    for arch, expected in (("amd64", "x86-64"), ("arm64", "ARM aarch64")):
        single = tmp_path / f"single-{arch}"
        skopeo("--override-arch", arch, "copy", f"oci:{layout}:1", f"oci:{single}:1")
        bundle = tmp_path / f"bundle-{arch}"
        res = umoci_unpack(single, "1", bundle)
        assert res.returncode == 0, res.stderr
        described = subprocess.run([file, "-b", str(bundle / "rootfs" / PREFIX / "bin/tool")], capture_output=True,
                                   text=True, check=True).stdout
        assert described.startswith("ELF 64-bit") and expected in described, described
        assert (bundle / "rootfs" / PREFIX / "share/data/blob.bin").stat().st_size == 256 * 64


def test_manifest_platforms_setting_and_the_same_bytes_twice(tmp_path: Path, store_dir) -> None:
    project = write_project(tmp_path / "src", 'platforms = ["linux-aarch64", "linux-64"]\n')
    digests = []
    for run in range(2):
        out = tmp_path / f"o{run}.tar"
        assert main(["image", str(project), "-o", f"oci-archive:{out}", "--cache-dir", str(tmp_path / f"c{run}")]) == 0
        index = _index(skopeo("inspect", "--raw", f"oci-archive:{out}"))
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64", "amd64"]
        digests.append(out.read_bytes())
    assert digests[0] == digests[1]


def test_docker_archive_of_an_index_is_refused_in_one_line(project: Path, tmp_path: Path, capsys, store_dir) -> None:
    out = tmp_path / "d.tar"
    code = main(["image", str(project), "-p", "linux-64", "-p", "linux-aarch64", "-o", f"docker-archive:{out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "docker-archive" in err and "index" in err and "oci-archive" in err
    assert not out.exists() and not list(tmp_path.glob("d.tar*"))
    # one platform is fine as a docker-archive
    assert main(["image", str(project), "-p", "linux-64", "-o", f"docker-archive:{out}"]) == 0
    assert json.loads(skopeo("inspect", f"docker-archive:{out}"))["Architecture"] == "amd64"


def test_unlocked_platform_fails_before_any_work(project: Path, tmp_path: Path, capsys, store_dir) -> None:
    code = main(["image", str(project), "-p", "linux-64", "-p", "linux-ppc64le", "-o", str(tmp_path / "x.tar")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "linux-ppc64le" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.tar").exists() and not (store_dir / "blobs").exists()


def test_pushed_index_round_trips_through_skopeo_copy_all(project: Path, tmp_path: Path, store_dir) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    try:
        ref = f"{registry.host}/multi/app:1"
        assert main(["image", str(project), "-p", "linux-64", "-p", "linux-aarch64", "--push", ref,
                     "--oci-dir", str(tmp_path / "layout"), "--tag", "multi:1"]) == 0
        pushed = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
        assert pushed == skopeo("inspect", "--raw", f"oci:{tmp_path / 'layout'}:1")  # byte for byte
        _index(pushed)
        copy = f"{registry.host}/multi/copy:1"
        skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{ref}", f"docker://{copy}")
        assert skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{copy}") == pushed
    finally:
        registry.stop()


def test_every_output_is_the_same_bytes_under_another_umask(project: Path, tmp_path: Path, store_dir) -> None:
    """Index, referrers and the non-root layer included: nothing a build writes depends on the umask."""
    import os

    outputs = []
    for mask in (0o022, 0o077):
        old = os.umask(mask)
        try:
            out = tmp_path / f"{mask:o}.tar"
            assert main(["image", str(project), "-p", "linux-64", "-p", "linux-aarch64", "--sbom", "cyclonedx",
                         "--provenance", "--user", "1000", "-o", str(out), "--cache-dir", str(tmp_path / f"c{mask:o}")]) == 0
        finally:
            os.umask(old)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
