"""SBOMs of an environment from its lock: every conda and PyPI package with version, purl, sha256,
license and download location, what depends on what, and — for an image — its base image by
digest. SPDX 2.3 JSON or CycloneDX 1.6 JSON, with NTIA's minimum elements (supplier, name, version,
unique ids, dependency relationships, author, timestamp).

Deterministic: the timestamp is SOURCE_DATE_EPOCH's (as the image's `created`), document ids are
UUIDv5 of the content, lists are in lock order. Licenses that are valid SPDX expressions are
declared as such; any other text (conda's "BSD", "Apache 2.0") becomes a LicenseRef with the text.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urlsplit

from pixibuild import __version__
from pixibuild.attest.purl import channel_of, conda_purl, pypi_purl
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.digest import canonical_json
from pixibuild.net.auth import storage_key

SPDX_MEDIA_TYPE = "application/spdx+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
FORMATS = {"spdx": SPDX_MEDIA_TYPE, "cyclonedx": CYCLONEDX_MEDIA_TYPE}
FILE_SUFFIX = {"spdx": ".spdx.json", "cyclonedx": ".cdx.json"}
_NAMESPACE = uuid.UUID("5b0ad0d8-6a1f-4d6e-9a55-8f3f1c7a2e10")
"""UUIDv5 namespace of pixibuild's document ids (any fixed value: only uniqueness matters)."""
_DEP_NAME = re.compile(r"^\s*(?:[^:\s]+::)?([A-Za-z0-9_.\-]+)")


@dataclass(frozen=True)
class Subject:
    """What the SBOM describes: an image (by manifest digest), a pack (by file sha256), or the
    environment as locked (no digest)."""

    name: str
    kind: str
    """"image", "archive" or "environment"."""
    version: str | None = None
    sha256: str | None = None
    purl: str | None = None
    supplier: str | None = None
    """Who distributes it (a base image: its registry namespace or local file); default: the project."""


@dataclass(frozen=True)
class SbomInput:
    project: str
    environment: str
    platform: str
    subject: Subject
    conda: Sequence[CondaRecord]
    pypi: Sequence[PypiRecord] = ()
    base: Subject | None = None
    """An image's base image (by digest), if it has one."""
    created: str = "1970-01-01T00:00:00Z"
    lock_sha256: str | None = None


@dataclass
class _Component:
    ref: str
    name: str
    version: str
    purl: str
    supplier: str
    download: str
    hashes: dict[str, str]
    license: str | None
    depends: list[str] = field(default_factory=list)


def _spdx_id(text: str) -> str:
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-")


def _location(url: str) -> str:
    return storage_key(url) if "://" in url else url


_SPDX_URL = re.compile(r"^(https?|ftp)://([\w\-.!~*'()%;:&=+$,]+@)?[a-z0-9]+([\-.][a-z0-9]+){0,100}\.[a-z]{2,5}"
                       r"(:[0-9]{1,5})?(/.*)?$", re.IGNORECASE)
"""What SPDX 2.3 accepts as a package download URL (spdx-tools' uri_validators, after the spec):
a host name with a top-level domain — not an IP address, a dotless host or a file:// URL."""


def _spdx_download(url: str) -> str:
    """The URL where SPDX accepts it, else NOASSERTION (the purl and the CycloneDX distribution
    reference still name a file:// channel, a path in the lock or a host without a domain)."""
    return url if _SPDX_URL.match(url) else "NOASSERTION"


def _pypi_supplier(location: str) -> str:
    """PyPI for pypi.org's files, else the index's host (or the path of a local wheel)."""
    host = urlsplit(location).hostname if "://" in location else None
    if host in ("pypi.org", "files.pythonhosted.org"):
        return "PyPI"
    return host or location


def _components(data: SbomInput) -> list[_Component]:
    by_name: dict[str, _Component] = {}
    out = []
    for record in data.conda:
        hashes = {k: v for k, v in (("SHA256", record.sha256), ("MD5", record.md5)) if v}
        item = _Component(_spdx_id(f"conda-{record.name}-{record.version}-{record.build}"), record.name,
                          record.version, conda_purl(record), channel_of(record), _location(record.url), hashes,
                          record.license)
        by_name[record.name.lower()] = item
        out.append(item)
    for wheel in data.pypi:
        hashes = {k: v for k, v in (("SHA256", wheel.sha256), ("MD5", wheel.md5)) if v}
        item = _Component(_spdx_id(f"pypi-{wheel.name}-{wheel.version}"), wheel.name, wheel.version,
                          pypi_purl(wheel), _pypi_supplier(wheel.location), _location(wheel.location), hashes, None)
        by_name.setdefault(re.sub(r"[-_.]+", "-", wheel.name).lower(), item)
        out.append(item)
    for record, item in zip(data.conda, out):
        for spec in record.depends:
            match = _DEP_NAME.match(spec)
            dep = by_name.get(match.group(1).lower()) if match else None
            if dep is not None and dep is not item and dep.ref not in item.depends:
                item.depends.append(dep.ref)
    return out


@functools.lru_cache(maxsize=1)
def _licensing():
    """The SPDX license list (license-expression loads it in ~60 ms): once, and only for SBOMs."""
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


@functools.lru_cache(maxsize=4096)
def _spdx_license(text: str | None) -> tuple[str, dict | None]:
    """(licenseDeclared, extracted licensing info for a non-SPDX text)."""
    if not text or not text.strip():
        return "NOASSERTION", None
    try:
        valid = not _licensing().validate(text, strict=True).errors
    except Exception:  # the library raises odd errors on some inputs ("Zlib/libpng"): not an expression
        valid = False
    if valid:
        return text, None
    ref = "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-") or "unknown")
    return ref, {"licenseId": ref, "extractedText": text, "name": text}


def _uuid(data: SbomInput, kind: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, canonical_json({
        "kind": kind, "project": data.project, "environment": data.environment, "platform": data.platform,
        "subject": vars(data.subject), "base": vars(data.base) if data.base else None, "lock": data.lock_sha256,
        "packages": [c.purl + str(sorted(c.hashes.items())) for c in _components(data)]}).decode()))


def _document_name(data: SbomInput) -> str:
    return f"{data.subject.name} ({data.project} {data.environment} {data.platform})"


def spdx_json(data: SbomInput) -> bytes:
    """An SPDX 2.3 JSON document."""
    components = _components(data)
    subject_id = _spdx_id(f"{data.subject.kind}-{data.subject.name}")
    purpose = {"image": "CONTAINER", "archive": "ARCHIVE"}.get(data.subject.kind, "APPLICATION")
    root: dict = {"SPDXID": subject_id, "name": data.subject.name, "versionInfo": data.subject.version or "NOASSERTION",
                  "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": purpose,
                  "supplier": f"Organization: {data.project}", "licenseConcluded": "NOASSERTION",
                  "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION"}
    if data.subject.sha256:
        root["checksums"] = [{"algorithm": "SHA256", "checksumValue": data.subject.sha256}]
    if data.subject.purl:
        root["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                 "referenceLocator": data.subject.purl}]
    packages = [root]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": subject_id}]
    extracted: dict[str, dict] = {}
    for item in components:
        declared, info = _spdx_license(item.license)
        if info:
            extracted[info["licenseId"]] = info
        packages.append({
            "SPDXID": item.ref, "name": item.name, **({"versionInfo": item.version} if item.version else {}),
            "downloadLocation": _spdx_download(item.download),
            "filesAnalyzed": False, "supplier": f"Organization: {item.supplier}", "primaryPackagePurpose": "LIBRARY",
            "checksums": [{"algorithm": k, "checksumValue": v} for k, v in item.hashes.items()],
            "licenseConcluded": "NOASSERTION", "licenseDeclared": declared, "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": item.purl}]})
        relationships.append({"spdxElementId": subject_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": item.ref})
        relationships += [{"spdxElementId": item.ref, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": dep}
                          for dep in item.depends]
    if data.base is not None:
        base_id = _spdx_id(f"base-image-{data.base.name}")
        base = {"SPDXID": base_id, "name": data.base.name, "versionInfo": data.base.version or "NOASSERTION",
                "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
                "supplier": f"Organization: {data.base.supplier or data.base.name}", "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION"}
        if data.base.sha256:
            base["checksums"] = [{"algorithm": "SHA256", "checksumValue": data.base.sha256}]
        if data.base.purl:
            base["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                     "referenceLocator": data.base.purl}]
        packages.append(base)
        relationships.append({"spdxElementId": subject_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": base_id})  # the image holds the base's layers
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": _document_name(data),
        "documentNamespace": f"https://spdx.org/spdxdocs/pixibuild-{re.sub(r'[^A-Za-z0-9.-]+', '-', data.project)}-"
                             f"{_uuid(data, 'spdx')}",
        "creationInfo": {"created": data.created, "creators": [f"Tool: pixibuild-{__version__}"]},
        "packages": packages, "relationships": relationships,
    }
    if extracted:
        document["hasExtractedLicensingInfos"] = [extracted[k] for k in sorted(extracted)]
    return canonical_json(document)


def _cyclonedx_hashes(hashes: dict[str, str]) -> list[dict]:
    names = {"SHA256": "SHA-256", "MD5": "MD5"}
    return [{"alg": names[k], "content": v} for k, v in hashes.items()]


def _cyclonedx_license(text: str | None) -> list[dict]:
    if not text or not text.strip():
        return []
    declared, info = _spdx_license(text)
    return [{"license": {"name": text}}] if info else [{"expression": declared}]


def cyclonedx_json(data: SbomInput) -> bytes:
    """A CycloneDX 1.6 JSON document."""
    components = _components(data)
    kind = {"image": "container", "archive": "file"}.get(data.subject.kind, "application")
    subject: dict = {"type": kind, "bom-ref": "subject", "name": data.subject.name,
                     "version": data.subject.version or "", "supplier": {"name": data.project}}
    if not subject["version"]:
        del subject["version"]
    if data.subject.sha256:
        subject["hashes"] = [{"alg": "SHA-256", "content": data.subject.sha256}]
    if data.subject.purl:
        subject["purl"] = data.subject.purl
    entries = []
    bom_ref = {c.ref: c.purl for c in components}  # purls are unique per package: CycloneDX's usual bom-ref
    for item in components:
        entry = {"type": "library", "bom-ref": bom_ref[item.ref], "name": item.name,
                 **({"version": item.version} if item.version else {}), "purl": item.purl, "supplier": {"name": item.supplier}, "hashes": _cyclonedx_hashes(item.hashes),
                 "externalReferences": [{"type": "distribution", "url": item.download}]}
        licenses = _cyclonedx_license(item.license)
        if licenses:
            entry["licenses"] = licenses
        entries.append(entry)
    roots = [bom_ref[c.ref] for c in components]
    if data.base is not None:
        base = {"type": "container", "bom-ref": "base-image", "name": data.base.name,
                "supplier": {"name": data.base.supplier or data.base.name}}
        if data.base.sha256:
            base["hashes"] = [{"alg": "SHA-256", "content": data.base.sha256}]
        if data.base.purl:
            base["purl"] = data.base.purl
        entries.append(base)
        roots.append("base-image")
    document = {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{_uuid(data, 'cyclonedx')}",
        "version": 1,
        "metadata": {"timestamp": data.created, "component": subject,
                     "tools": {"components": [{"type": "application", "name": "pixibuild", "version": __version__}]},
                     "properties": [{"name": "pixibuild:environment", "value": data.environment},
                                    {"name": "pixibuild:platform", "value": data.platform}]},
        "components": entries,
        "dependencies": [{"ref": "subject", "dependsOn": roots}]
                        + [{"ref": bom_ref[c.ref], "dependsOn": [bom_ref[d] for d in c.depends]} for c in components]
                        + ([{"ref": "base-image", "dependsOn": []}] if data.base is not None else []),
    }
    return canonical_json(document)


def sbom_json(data: SbomInput, fmt: str) -> bytes:
    return spdx_json(data) if fmt == "spdx" else cyclonedx_json(data)
