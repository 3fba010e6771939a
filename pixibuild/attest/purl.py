"""Package URLs (purl-spec) for what an environment holds.

conda (purl-spec types/conda-definition.json): the namespace is *prohibited*; the channel goes in
the `channel` qualifier, with `build`, `subdir` and `type` — e.g.
`pkg:conda/absl-py@0.4.1?build=py36h06a4308_0&channel=main&subdir=linux-64&type=tar.bz2`. A
channel is named as conda names it (`conda-forge`, `main`) when it lives on anaconda.org /
repo.anaconda.com / prefix.dev, and by its URL (without credentials) otherwise.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.net.auth import storage_key

_NAMED_CHANNEL_HOSTS = ("conda.anaconda.org", "repo.anaconda.com", "prefix.dev", "repo.prefix.dev")


def _qualifiers(pairs: dict[str, str | None]) -> str:
    items = sorted((k, v) for k, v in pairs.items() if v)
    return ("?" + "&".join(f"{k}={quote(v, safe='/:')}" for k, v in items)) if items else ""


def channel_of(record: CondaRecord) -> str:
    """The channel a conda package came from: its name on the well-known hosts, else its URL."""
    url = storage_key(record.url) if "://" in record.url else record.url
    base = url.rsplit("/", 2)[0] if url.count("/") >= 2 else url
    parts = urlsplit(base)
    if parts.hostname in _NAMED_CHANNEL_HOSTS:
        return parts.path.rstrip("/").rsplit("/", 1)[-1] or base
    return base


def conda_purl(record: CondaRecord) -> str:
    kind = "conda" if record.file_name.endswith(".conda") else "tar.bz2"
    version = f"@{quote(record.version, safe='')}" if record.version else ""  # a source package may have none
    return (f"pkg:conda/{quote(record.name.lower(), safe='')}{version}"
            + _qualifiers({"build": record.build, "channel": channel_of(record), "subdir": record.subdir,
                           "type": kind}))


def pypi_purl(record: PypiRecord) -> str:
    name = re.sub(r"[-_.]+", "-", record.name).lower()  # PEP 503, as purl-spec's pypi type asks
    return f"pkg:pypi/{quote(name, safe='')}@{quote(record.version, safe='')}"


def oci_purl(repository: str, digest: str, tag: str | None = None) -> str:
    """`pkg:oci/<last path segment>@<digest>?repository_url=<registry/repo>&tag=<tag>`."""
    name = repository.rstrip("/").rsplit("/", 1)[-1].lower()
    return (f"pkg:oci/{quote(name, safe='')}@{quote(digest, safe='')}"
            + _qualifiers({"repository_url": repository if "/" in repository else None, "tag": tag}))
