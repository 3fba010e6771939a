"""A small base image for the demo, built offline: Debian's static busybox (`/bin/busybox`, package
busybox-static) as /bin/sh and a few tools, plus /etc/passwd, /etc/group and /tmp — what the demo's
images need to start their entrypoint and to add a non-root user.

The layout is a two-platform index (linux/amd64, linux/arm64) so the demo's multi-arch images have
a base on each platform; busybox goes into the platform it was built for (the host's), the other
gets the same files without a shell (its images then run their command without /entrypoint.sh,
with the activation's variables from the image config).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pixibuild.oci.assemble import BaseImage, LayerSpec, assemble_image, build_layers
from pixibuild.oci.config import ImageSettings
from pixibuild.oci.index import make_index
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_oci_dir

BUSYBOX = Path("/bin/busybox")
TAG = "demo-base:busybox"
PLATFORMS = {"linux-64": 0x3E, "linux-aarch64": 0xB7}
"""conda subdir → ELF e_machine of a binary that runs there."""
APPLETS = ("sh", "ash", "cat", "echo", "env", "id", "ls", "mkdir", "printenv", "pwd", "rm", "sleep", "test",
           "touch", "whoami")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file (x86-64 = 0x3E, aarch64 = 0xB7), or None for anything else."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _populate(with_shell: bool):
    def populate(d: Path) -> None:
        (d / "bin").mkdir()
        if with_shell:
            shutil.copyfile(BUSYBOX, d / "bin" / "busybox")
            (d / "bin" / "busybox").chmod(0o755)
            for name in APPLETS:
                (d / "bin" / name).symlink_to("busybox")
        (d / "etc").mkdir()
        (d / "etc" / "passwd").write_text(PASSWD)
        (d / "etc" / "group").write_text(GROUP)
        for name in ("tmp", "root", "proc", "dev"):
            (d / name).mkdir()
    return populate


def write_demo_base(directory: Path) -> Path:
    """Write (replace) the base's OCI layout at `directory`; returns it. Deterministic for a given
    /bin/busybox."""
    busybox_machine = elf_machine(BUSYBOX)
    with tempfile.TemporaryDirectory(prefix="pixibuild-demo-base-") as tmp:
        cache = LayerCache(Path(tmp))
        images = []
        for platform, machine in PLATFORMS.items():
            shell = busybox_machine == machine
            what = "busybox-static (/bin/sh), passwd" if shell else "passwd, no shell (busybox is for another arch)"
            layers = build_layers([LayerSpec(f"demo-base:{platform}:{shell}", _populate(shell),
                                             created_by=f"pixibuild demo base: {what}")], cache)
            settings = ImageSettings(env={"PATH": BASE_PATH}, cmd=["/bin/sh"] if shell else None)
            images.append(assemble_image(platform=platform, layers=layers, settings=settings,
                                         base=BaseImage("scratch", None)))
        return write_oci_dir(make_index(images), directory, tag=TAG)
