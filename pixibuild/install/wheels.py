"""PyPI wheels into a conda prefix with pypa `installer`: offline, RECORD and INSTALLER written,
console scripts generated for the environment's python (at its logical prefix)."""

from __future__ import annotations

from pathlib import Path
import zipfile
from typing import Any, Sequence

from pixibuild.errors import InputError
from pixibuild.conda.records import PypiRecord
from pixibuild.install.noarch import PythonLayout

INSTALLER_NAME = b"pixibuild"


def _scheme(root: Path, layout: PythonLayout, name: str) -> dict[str, str]:
    site = str(root / layout.site_packages)
    return {
        "purelib": site,
        "platlib": site,
        "headers": str(root / "include" / f"python{layout.version}" / name),
        "scripts": str(root / layout.bin_dir),
        "data": str(root),
    }


def install_wheels(wheels: Sequence[tuple[PypiRecord, Any]], root: Path, target_prefix: str,
                   layout: PythonLayout) -> list[str]:
    """Install each wheel; returns the installed distribution names in order."""
    # pypa/installer costs 60-90 ms to import (python -X importtime); only environments with wheels pay it
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    done = []
    for record, path in sorted(wheels, key=lambda w: w[0].name):
        # a store blob is named by its hash: the record knows the wheel's file name
        file_name = path.name if isinstance(path, Path) and path.name.endswith(".whl") else record.file_name
        if not file_name.endswith(".whl"):
            raise InputError(f"{file_name}: {record.name}: not a wheel file (only wheels can be installed)")
        interpreter = f"{target_prefix.rstrip('/')}/{layout.python_path}"
        destination = SchemeDictionaryDestination(
            _scheme(root, layout, record.name), interpreter=interpreter,
            script_kind="win-amd64" if layout.platform.startswith("win-") else "posix",
            bytecode_optimization_levels=(),
        )
        stream = open(path, "rb") if isinstance(path, Path) else path()
        try:
            with zipfile.ZipFile(stream) as zf:
                zf.filename = file_name  # installer derives name and version from the file name
                source = WheelFile(zf)
                install(source=source, destination=destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
        except InputError:
            raise
        except Exception as exc:  # installer raises plain exceptions for bad wheels
            raise InputError(f"{file_name}: cannot install wheel ({exc})") from None
        finally:
            stream.close()
        done.append(record.name)
    return done
