"""`pack --create-executable`: a self-extracting `environment.sh` (`environment.ps1` for Windows targets).

The layout is pixi-pack's: a shell header, the pack tar in base64, an `@@END_ARCHIVE@@` line
(`__END_ARCHIVE__` in the .ps1), then the unpacker in base64. One addition: a last line carrying the byte
count and sha256 of both, so the header refuses a truncated or damaged copy before it writes anything.

The unpacker is either a given `pixi-unpack` binary (`--pixi-unpack-source`, as pixi-pack embeds it), or by
default pixibuild's own unpack as a zipapp run by the target's python: the `pixibuild` package itself plus
the pure-Python `packaging` and `installer` it uses, nothing compiled. So the target needs python3 (the
floor is the highest of the code's own and those distributions' Requires-Python) and, for `.conda`
packages, the `zstd` command unless the `zstandard` module is there (`pixibuild.conda.zstd_cli`). A
POSIX-only unpacker (tar + zstd + unzip) cannot do what installing needs — binary prefix replacement with
NUL padding, noarch python relocation and entry points, wheels — so none is offered.

Everything streams: the pack tar is base64-encoded while it is written, never held in memory or on disk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from pixibuild import __version__
from pixibuild.conda.platforms import is_windows
from pixibuild.errors import InputError

if TYPE_CHECKING:
    from importlib import metadata

CODE_FLOOR = (3, 8)
"""The oldest python pixibuild's unpack code itself runs on (tried by hand on 3.8 and 3.9 with a packaging
that still supports them); the vendored distributions' Requires-Python usually sets a higher floor."""
VENDORED = ("packaging", "installer")
"""Pure-Python distributions the unpack code imports, copied into the zipapp with their licences."""
LINE = 57
"""Raw bytes per base64 line: 76 characters, the width of `base64` and MIME."""
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
SKIPPED = {"rules", "demo", "__pycache__"}
"""Parts of an installed pixibuild the unpacker never imports (doit's rule set, the demo generator)."""

MAIN = '''"""pixibuild's unpacker, embedded in a self-extracting environment (pixibuild pack --create-executable)."""
import sys

from pixibuild.cli import embedded_unpack_main

sys.exit(embedded_unpack_main())
'''


def default_name(platform: str) -> str:
    return "environment.ps1" if is_windows(platform) else "environment.sh"


@dataclass(frozen=True)
class Unpacker:
    """What the executable runs: a pixi-unpack binary, or pixibuild's python zipapp."""

    kind: str
    """"binary" or "python"."""
    data: bytes
    min_python: tuple[int, int] = CODE_FLOOR

    @property
    def needs(self) -> str:
        if self.kind == "binary":
            return "nothing else (the embedded pixi-unpack runs on its own)"
        version = ".".join(map(str, self.min_python))
        return (f"python3 >= {version} (its standard library only); .conda packages also need the zstd command "
                "(or the zstandard module)")


def _requires_python_floor(dist: metadata.Distribution) -> tuple[int, int]:
    """The lower bound of a distribution's Requires-Python (`>=3.10` → (3, 10)); CODE_FLOOR without one."""
    spec = dist.metadata.get("Requires-Python") or ""
    found = re.search(r">=\s*(\d+)\.(\d+)", spec)
    return (int(found.group(1)), int(found.group(2))) if found else CODE_FLOOR


def _zip_add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=9)


def python_unpacker() -> Unpacker:
    """pixibuild's unpack as a zipapp, byte-identical for the same pixibuild and vendored versions."""
    files: dict[str, bytes] = {"__main__.py": MAIN.encode()}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = path.relative_to(PACKAGE_ROOT)
        if not SKIPPED & set(rel.parts):
            files[f"pixibuild/{rel.as_posix()}"] = path.read_bytes()
    from importlib import metadata  # ~14 ms to import: only a pack made with --create-executable needs it

    floor = CODE_FLOOR
    for name in VENDORED:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies of pixibuild
            raise InputError(f"the python unpacker needs the '{name}' distribution installed") from None
        floor = max(floor, _requires_python_floor(dist))
        for entry in dist.files or ():
            parts = entry.parts
            is_code = parts[0] == name and entry.suffix == ".py"
            is_licence = parts[0].endswith(".dist-info") and ("licenses" in parts or "LICENSE" in entry.name)
            if is_code or is_licence:
                files[entry.as_posix()] = Path(entry.locate()).read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(files):
            _zip_add(archive, name, files[name])
    return Unpacker("python", out.getvalue(), floor)


def binary_unpacker(path: Path) -> Unpacker:
    """A pixi-unpack executable given with --pixi-unpack-source (a download is saved to a file first)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the pixi-unpack executable: {exc.strerror}", path=path) from None
    if not data:
        raise InputError("the pixi-unpack executable is empty", path=path)
    return Unpacker("binary", data)


class _Base64Lines:
    """A write-only stream: base64 lines of LINE raw bytes out, sha256 and size of the raw bytes kept."""

    def __init__(self, out: BinaryIO, newline: bytes):
        self._out, self._newline = out, newline
        self._pending = b""
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        buffer = self._pending + bytes(data)
        whole = len(buffer) - len(buffer) % LINE
        if whole:
            self._out.write(b"".join(base64.b64encode(buffer[i:i + LINE]) + self._newline
                                     for i in range(0, whole, LINE)))
        self._pending = buffer[whole:]
        return len(data)

    def close(self) -> None:
        if self._pending:
            self._out.write(base64.b64encode(self._pending) + self._newline)
            self._pending = b""


def header(platform: str, unpacker: Unpacker) -> bytes:
    windows = is_windows(platform)
    template = (HERE / ("executable_header.ps1" if windows else "executable_header.sh")).read_text(encoding="utf-8")
    text = (template.replace("__PIXIBUILD_VERSION__", __version__)
            .replace("__PIXIBUILD_UNPACKER__", unpacker.kind)
            .replace("__PIXIBUILD_MIN_PYTHON__", ".".join(map(str, unpacker.min_python)))
            .replace("__PIXIBUILD_NEEDS__", unpacker.needs))
    return text.replace("\n", "\r\n").encode() if windows else text.encode()


def write_executable(write_archive: Callable[[BinaryIO], object], out: BinaryIO, *, platform: str,
                     unpacker: Unpacker) -> int:
    """Header, `write_archive(stream)`'s bytes in base64, the marker, the unpacker, the check line.
    Returns the number of bytes written to `out`."""
    windows = is_windows(platform)
    newline = b"\r\n" if windows else b"\n"
    counted = _Counting(out)
    counted.write(header(platform, unpacker))
    archive = _Base64Lines(counted, newline)
    write_archive(archive)  # type: ignore[arg-type]
    archive.close()
    counted.write((b"__END_ARCHIVE__" if windows else b"@@END_ARCHIVE@@") + newline)
    embedded = _Base64Lines(counted, newline)
    embedded.write(unpacker.data)
    embedded.close()
    end = b"__END_UNPACKER__" if windows else b"@@END_UNPACKER@@"
    counted.write(b" ".join([end, str(archive.size).encode(), archive.sha256.hexdigest().encode(),
                             str(embedded.size).encode(), embedded.sha256.hexdigest().encode()]) + newline)
    return counted.size


class _Counting:
    def __init__(self, out: BinaryIO):
        self._out, self.size = out, 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.size += len(data)
        return len(data)
