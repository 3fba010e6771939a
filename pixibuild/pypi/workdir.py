"""Put a job's source into a fresh directory for one backend run: a checked copy of a local tree, an
unpacked sdist or a copy of the git checkout. Backends write into their source directory (setuptools'
`build/` and `*.egg-info`); they never get the user's tree or the store's copies."""

from __future__ import annotations

from pathlib import Path

from pixibuild.errors import BuildError
from pixibuild.pypi import git
from pixibuild.pypi.jobs import WheelJob
from pixibuild.pypi.sdist import extract_sdist
from pixibuild.pypi.sources import GitSource, SdistSource, TreeSource
from pixibuild.pypi.tree import copy_snapshot, copy_tree, snapshot
from pixibuild.store.blobs import BlobRef, Store


def materialize(job: WheelJob, store_root: str | Path, dest: Path) -> Path:
    """The project directory of `job`'s source, copied under `dest`."""
    source = job.source
    if isinstance(source, TreeSource):
        snap = job.snapshot or snapshot(source.path)
        copy_snapshot(snap, dest / "src")
        return dest / "src"
    if isinstance(source, SdistSource):
        blob = Store(store_root).resolve(BlobRef.of(source.record))  # verified by its verify node
        return extract_sdist(blob, source.record.file_name, dest / "src")
    if isinstance(source, GitSource):
        checkout = git.checkout_dir(store_root, source.commit)
        if not checkout.is_dir():
            raise BuildError(f"git checkout of {source.commit} is not in the store (its git node has not run)",
                             field=job.where)
        copy_tree(checkout, dest / "src")
        return dest / "src" / source.subdirectory if source.subdirectory else dest / "src"
    raise TypeError(source)
