"""The embedded demo workspace: a local conda channel of real archives plus two pixi projects.

conda channels are out of reach here (and in air-gapped CI), so the demo builds its own channel:
a compiled binary with a binary prefix placeholder, text placeholders, shared-library symlinks,
activation scripts and a noarch python package with entry points. Its locks point at the channel
with file:// URLs, so every step after locking is the real pipeline.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from pixibuild.conda.records import CondaRecord
from pixibuild.demo.condapkg import (PLACEHOLDER, PREFIX_TOKEN, PackageSpec, PkgFile, locked_record,
    write_channel)
from pixibuild.demo.base import write_demo_base
from pixibuild.demo.lockwriter import write_lock

PLATFORMS = ("linux-64", "linux-aarch64")

HELLO_C = r"""
#include <stdio.h>
static const char prefix[] = "@PREFIX@";
int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/share/hello/greeting.txt", prefix);
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "hello: cannot open %s\n", path); return 1; }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    printf("%sprefix: %s\n", buf, prefix);
    return 0;
}
"""

PYTHON_STANDIN = b"""#!/bin/sh
# demo stand-in for CPython: the host's python3 with this environment's site-packages importable
# (an absolute path: `python3` on PATH would be this very script once the env is activated)
here=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$here/lib/python3.12/site-packages${PYTHONPATH:+:$PYTHONPATH}" exec /usr/bin/python3 "$@"
"""

HELLO_SH = b"""#!/bin/sh
# Stand-in for the compiled binary on platforms we cannot compile for here.
cat "@PREFIX@/share/hello/greeting.txt"
echo "prefix: @PREFIX@"
"""


def compile_hello() -> bytes | None:
    """A static x86-64 binary embedding PREFIX_TOKEN as a C string, or None without gcc/static libc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "hello.c"), Path(tmp, "hello")
        # The binary must be built with the full-length placeholder, as conda-build does: the
        # installer overwrites it in place, NUL-padded, without moving any other byte.
        src.write_text(HELLO_C.replace(PREFIX_TOKEN.decode(), PLACEHOLDER))
        result = subprocess.run([gcc, "-Os", "-static", "-s", "-o", str(out), str(src)],
                                capture_output=True)
        if result.returncode != 0:
            return None
        return out.read_bytes()


def _specs(platform: str, hello_binary: bytes | None) -> list[tuple[PackageSpec, str]]:
    native = hello_binary is not None and platform == "linux-64"
    hello_file = (PkgFile("bin/hello", hello_binary, 0o755, prefix="binary") if native
                  else PkgFile("bin/hello", HELLO_SH, 0o755, prefix="text"))
    so = "lib/libgreet.so"
    return [
        (PackageSpec("libgreet", "2.1.0", "h1a2b3c4_0", subdir=platform, depends=("__glibc >=2.17",),
                     files=[PkgFile(f"{so}.2.1.0", b"\x7fELF libgreet stand-in\n" * 64, 0o755),
                            PkgFile(f"{so}.2", symlink="libgreet.so.2.1.0"),
                            PkgFile(so, symlink="libgreet.so.2"),
                            PkgFile("share/hello/greeting.txt", b"Hello from the pixibuild demo!\n")]), ".conda"),
        (PackageSpec("hello", "1.0.0", "h5d6e7f8_1", build_number=1, subdir=platform,
                     depends=("libgreet >=2.1,<3", "__glibc >=2.17"), files=[hello_file]), ".tar.bz2"),
        (PackageSpec("python", "3.12.1", "h0_0_cpython", subdir=platform,
                     files=[PkgFile("bin/python3.12", PYTHON_STANDIN, 0o755),
                            PkgFile("bin/python", symlink="python3.12"),
                            PkgFile("bin/python3", symlink="python3.12"),
                            PkgFile("lib/python3.12/os.py", b"# stand-in\n")]), ".conda"),
    ]


def _noarch_specs() -> list[tuple[PackageSpec, str]]:
    zoneinfo = [PkgFile(f"share/zoneinfo/Zone{i:03d}", bytes(range(256)) * (4 + i % 13)) for i in range(60)]
    return [
        (PackageSpec("hello-activation", "1.0", "0", subdir="noarch", noarch="generic",
                     files=[PkgFile("etc/conda/activate.d/hello.sh",
                                    b'export HELLO_HOME="' + PREFIX_TOKEN + b'/share/hello"\n', prefix="text"),
                            PkgFile("etc/conda/env_vars.d/hello.json", b'{"HELLO_GREETING": "hi"}\n')]), ".conda"),
        (PackageSpec("greeter", "0.3.0", "pyh4616a5c_0", subdir="noarch", noarch="python",
                     depends=("python >=3.12",), entry_points=("greet = greeter.cli:main",),
                     files=[PkgFile("site-packages/greeter/__init__.py", b'__version__ = "0.3.0"\n'),
                            PkgFile("site-packages/greeter/cli.py",
                                    b"def main():\n    print('greetings from greeter')\n    return 0\n"),
                            PkgFile("site-packages/greeter-0.3.0.dist-info/METADATA",
                                    b"Metadata-Version: 2.1\nName: greeter\nVersion: 0.3.0\n"),
                            PkgFile("python-scripts/greet-legacy", b"#!/usr/bin/env python\nprint('legacy')\n", 0o755)]),
         ".conda"),
        (PackageSpec("tzdata-demo", "2024b", "h0_0", subdir="noarch", noarch="generic", files=zoneinfo), ".tar.bz2"),
    ]


WEBAPP_TOML = """\
[workspace]
name = "webapp"
channels = ["{channel}"]
platforms = ["linux-64", "linux-aarch64"]

[dependencies]
hello = ">=1.0"
greeter = "*"
hello-activation = "*"

[feature.dev.dependencies]
tzdata-demo = "*"

[environments]
default = {{ features = ["dev"], solve-group = "prod" }}
prod = {{ features = [], solve-group = "prod" }}

[tool.pixibuild]
outputs = ["pack", "image", "unpack"]

[tool.pixibuild.image]
base = "oci:../base:busybox"  # written by the demo from Debian's busybox-static: /bin/sh runs the entrypoint
cmd = ["hello"]
include = ["app/**"]
expose = [8000]
labels = {{ "org.opencontainers.image.title" = "webapp" }}
"""

WORKER_PYPROJECT = """\
[project]
name = "worker"
version = "0.1.0"

[tool.pixi.workspace]
channels = ["{channel}"]
platforms = ["linux-64"]

[tool.pixi.dependencies]
hello = "*"
tzdata-demo = "2024b.*"
"""


def write_demo(root: Path) -> dict[str, Path]:
    """Write channel + projects (+ the images' base layout) under `root`; returns project name →
    project dir. Idempotent."""
    write_demo_base(root / "base")
    hello_binary = compile_hello()
    specs = _noarch_specs()
    for platform in PLATFORMS:
        specs += _specs(platform, hello_binary)
    channel = root / "channel"
    write_channel(specs, channel)
    records: dict[str, dict[str, CondaRecord]] = {}
    for spec, fmt in specs:
        path = channel / spec.subdir / f"{spec.dist_name}{fmt}"  # same file name in several subdirs
        records.setdefault(spec.subdir, {})[spec.name] = locked_record(spec, path)

    def env(platform: str, names: list[str]) -> list[CondaRecord]:
        return [records[platform].get(n) or records["noarch"][n] for n in sorted(names)]

    prod = ["libgreet", "hello", "python", "greeter", "hello-activation"]
    webapp, worker = root / "webapp", root / "worker"
    webapp.mkdir(parents=True, exist_ok=True)
    worker.mkdir(parents=True, exist_ok=True)
    channel_url = channel.resolve().as_uri()
    (webapp / "pixi.toml").write_text(WEBAPP_TOML.format(channel=channel_url))
    (webapp / "app").mkdir(exist_ok=True)
    (webapp / "app" / "main.sh").write_text("#!/bin/sh\nexec hello\n")
    write_lock(webapp / "pixi.lock", {
        "default": {p: env(p, prod + ["tzdata-demo"]) for p in PLATFORMS},
        "prod": {p: env(p, prod) for p in PLATFORMS},
    }, channels=[channel_url])
    (worker / "pyproject.toml").write_text(WORKER_PYPROJECT.format(channel=channel_url))
    write_lock(worker / "pixi.lock", {"default": {"linux-64": env("linux-64", ["libgreet", "hello", "tzdata-demo"])}},
               channels=[channel_url])
    return {"webapp": webapp, "worker": worker}


def use_channel_url(root: Path, url: str, channel: Path | None = None) -> list[Path]:
    """Point the locks and manifests below `root` at `url` (e.g. an HTTP server serving the channel)
    instead of the channel's file:// URL (`channel`, default `root/channel`), as a workspace whose channel
    is on the network; returns the files changed. Also for `pixibuild.demo.synthetic` workspaces."""
    old = (channel or root / "channel").resolve().as_uri()
    changed = []
    for name in ("pixi.lock", "pixi.toml", "pyproject.toml"):
        for path in sorted(root.rglob(name)):
            text = path.read_text()
            if old in text:
                path.write_text(text.replace(old, url.rstrip("/")))
                changed.append(path)
    return changed
