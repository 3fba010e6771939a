"""The environment-wide layer: conda-meta/history, PyPI wheels, /entrypoint.sh — and changing a
wheel rebuilds only that layer."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from pixibuild.inputs.lockfile import read_lock
from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache
from pixibuild.conda.records import PypiRecord
from pixibuild.demo.demo import write_demo
from oci_helpers import busybox_base

PREFIX = "/app/.pixi/envs/prod"


def write_wheel(directory: Path, version: str) -> tuple[PypiRecord, Path]:
    """A minimal valid pure-python wheel (RECORD with hashes), so pypa installer accepts it."""
    name = f"demo_wheel-{version}-py3-none-any.whl"
    files = {
        "demo_wheel/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"demo_wheel-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: demo-wheel\nVersion: {version}\n".encode(),
        f"demo_wheel-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"demo_wheel-{version}.dist-info/RECORD,,")
    files[f"demo_wheel-{version}.dist-info/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with zipfile.ZipFile(path, "w") as zf:
        for p, data in files.items():
            zf.writestr(zipfile.ZipInfo(p, (2020, 1, 1, 0, 0, 0)), data)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return PypiRecord(name="demo-wheel", version=version, location=path.as_uri(), sha256=sha), path


def demo_packages(root: Path):
    projects = write_demo(root)
    env = read_lock(projects["webapp"] / "pixi.lock").environment("prod")
    return [(r, Path(unquote(urlparse(r.url).path))) for r in env.conda_packages("linux-64")]


def layer_names(layer) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}  # type: ignore[union-attr]


def test_env_layer_holds_history_wheels_and_entrypoint(tmp_path: Path) -> None:
    packages = demo_packages(tmp_path / "demo")
    cache = LayerCache(tmp_path / "cache")
    base = busybox_base(cache)  # a /bin/sh to run the entrypoint with
    wheel = write_wheel(tmp_path / "wheels", "1.0")
    result = build_image(packages, platform="linux-64", target_prefix=PREFIX, cache=cache, wheels=[wheel], base=base)
    layers = result.image.layers[1:]
    assert len(layers) == len(result.package_groups) + 1
    env_layer = layer_names(layers[-1])
    site = "app/.pixi/envs/prod/lib/python3.12/site-packages"
    assert env_layer[f"{site}/demo_wheel/__init__.py"] == b"VERSION = '1.0'\n"
    assert env_layer[f"{site}/demo_wheel-1.0.dist-info/INSTALLER"].strip() == b"pixibuild"
    assert env_layer["app/.pixi/envs/prod/conda-meta/history"] == b"// not relevant for pixi but for `conda run -p`"
    script = env_layer["entrypoint.sh"].decode()
    assert script.startswith("#!/bin/sh\n") and script.rstrip().endswith('exec "$@"')
    assert f". {PREFIX}/etc/conda/activate.d/hello.sh" in script and "HELLO_GREETING=hi" in script
    # package layers hold only their package (and its conda-meta record)
    for layer, group in zip(layers, result.package_groups):
        metas = [n for n in layer_names(layer) if n.startswith("app/.pixi/envs/prod/conda-meta/") and n.endswith(".json")]
        assert [m.rsplit("/", 1)[1] for m in metas] == [f"{g}.json" for g in group]

    new_wheel = write_wheel(tmp_path / "wheels2", "1.1")
    after = build_image(packages, platform="linux-64", target_prefix=PREFIX, cache=cache, wheels=[new_wheel], base=base)
    assert [a.digest == b.digest for a, b in zip(layers, after.image.layers[1:])] == [True] * (len(layers) - 1) + [False]
    assert after.layers_built == 1


def test_non_linux_platform_and_relative_prefix_are_input_errors(tmp_path: Path) -> None:
    import pytest

    from pixibuild.errors import InputError

    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(InputError, match="osx-64"):
        build_image([], platform="osx-64", target_prefix=PREFIX, cache=cache)
    with pytest.raises(InputError, match="absolute"):
        build_image([], platform="linux-64", target_prefix="app/env", cache=cache)
    assert not (cache.root / "blobs").exists()
