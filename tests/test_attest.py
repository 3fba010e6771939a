"""SBOM and provenance, checked by the real validators from PyPI: spdx-tools (SPDX 2.3),
cyclonedx-python-lib's strict JSON validator (CycloneDX 1.6), ntia-conformance-checker (NTIA
minimum elements), in-toto-attestation's Statement/Provenance models (the in-toto project's
attestation library); and attached to images as OCI 1.1 referrers — with the `sha256-<digest>` tag
fallback on Debian's docker-registry, which has no referrers API — surviving `skopeo copy --all`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_corpus
from oci_helpers import LocalRegistry, require_busybox, skopeo

from pixibuild.cli import main
from pixibuild.demo.demo import write_demo
from pixibuild.inputs.project import load_project
from pixibuild.net.registry import RegistryClient
from pixibuild.oci.push import list_referrers
from pixibuild.oci.referrers import fallback_tag

spdx_parse = pytest.importorskip("spdx_tools.spdx.parser.parse_anything")
spdx_validate = pytest.importorskip("spdx_tools.spdx.validation.document_validator")
cyclonedx_json = pytest.importorskip("cyclonedx.validation.json")
cyclonedx_schema = pytest.importorskip("cyclonedx.schema")
ntia = pytest.importorskip("ntia_conformance_checker.sbom_checker")
statement_pb2 = pytest.importorskip("in_toto_attestation.v1.statement_pb2")
provenance_pb2 = pytest.importorskip("in_toto_attestation.predicates.provenance.v1.provenance_pb2")
from google.protobuf import json_format  # noqa: E402  (in-toto-attestation's dependency)
from in_toto_attestation.v1.statement import Statement  # noqa: E402


def check_spdx(path: Path, ntia_minimum: bool = True) -> dict:
    document = spdx_parse.parse_file(str(path))
    errors = [e.validation_message for e in spdx_validate.validate_full_spdx_document(document)]
    assert errors == [], errors[:5]
    if not ntia_minimum:
        return json.loads(path.read_text())
    report = ntia.SbomChecker(str(path)).output_json()
    assert report["isNtiaConformant"], {k: v for k, v in report.items() if "nonconformant" in str(v) or k.startswith("is")}
    return json.loads(path.read_text())


_CYCLONEDX = []


def check_cyclonedx(path: Path) -> dict:
    if not _CYCLONEDX:  # building the validator loads the 1.6 schema (seconds): once per run
        _CYCLONEDX.append(cyclonedx_json.JsonStrictValidator(cyclonedx_schema.SchemaVersion.V1_6))
    error = _CYCLONEDX[0].validate_str(path.read_text())
    assert error is None, str(error)[:2000]
    return json.loads(path.read_text())


def check_statement(data: bytes) -> dict:
    """Parsed strictly (unknown fields are errors) into the in-toto Statement and SLSA v1 Provenance
    protos, then the Statement's own validation."""
    doc = json.loads(data)
    statement = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(statement).validate()
    json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    return doc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_busybox()
    return write_demo(tmp_path_factory.mktemp("demo"))


def _sbom(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", "sbom", *args], capture_output=True)


def test_sbom_command_lists_every_locked_package_in_both_formats(demo, tmp_path: Path) -> None:
    webapp = demo["webapp"]
    target = load_project(webapp).target("prod", "linux-64")
    spdx_out, cdx_out = tmp_path / "env.spdx.json", tmp_path / "env.cdx.json"
    for fmt, out in (("spdx", spdx_out), ("cyclonedx", cdx_out)):
        res = _sbom(str(webapp), "-e", "prod", "-p", "linux-64", "--format", fmt, "-o", str(out))
        assert res.returncode == 0, res.stderr
    spdx = check_spdx(spdx_out)
    cdx = check_cyclonedx(cdx_out)
    packages = {p["name"]: p for p in spdx["packages"]}
    components = {c["name"]: c for c in cdx["components"]}
    for record in target.conda:
        spdx_pkg, component = packages[record.name], components[record.name]
        assert spdx_pkg["versionInfo"] == component["version"] == record.version
        assert {"algorithm": "SHA256", "checksumValue": record.sha256} in spdx_pkg["checksums"]
        assert {"alg": "SHA-256", "content": record.sha256} in component["hashes"]
        purl = f"pkg:conda/{record.name}@{record.version}?build={record.build}&channel="
        assert spdx_pkg["externalRefs"][0]["referenceLocator"].startswith(purl) and component["purl"].startswith(purl)
        assert f"&subdir={record.subdir}&type=" in component["purl"]
        assert component["externalReferences"][0]["url"] == record.url
    hello = next(p for p in spdx["relationships"] if p["relationshipType"] == "DEPENDS_ON"
                 and p["spdxElementId"].startswith("SPDXRef-conda-hello-1"))
    assert hello["relatedSpdxElement"].startswith("SPDXRef-conda-libgreet")
    # stdout, and the same bytes twice
    res = _sbom(str(webapp), "-e", "prod", "-p", "linux-64")
    assert res.returncode == 0 and res.stdout == spdx_out.read_bytes()


@pytest.mark.slow
@pytest.mark.corpus
def test_sbom_of_real_locks_passes_the_validators(tmp_path: Path) -> None:
    """Real licenses ("BSD", "Apache 2.0", "LGPL-2.1-or-later", …) and PyPI entries from the corpus."""
    locks = require_corpus("locks")
    checked = 0
    for directory in sorted(p.parent for p in locks.glob("*/pixi.lock")):
        if not (directory / "pixi.toml").exists():
            continue
        try:
            project = load_project(directory / "pixi.toml", store_root=tmp_path / "store")
        except Exception:
            continue  # manifests the corpus keeps for other tests (newer syntax, missing tables)
        env, platform = next(iter(sorted(project.resolved)))
        target = project.target(env, platform)
        if not target.conda:
            continue
        # a source package (built from a recipe) may be locked without a version: NTIA needs one
        versioned = all(r.version for r in target.conda)
        for fmt in ("spdx", "cyclonedx"):
            out = tmp_path / f"{checked}.{fmt}.json"
            assert main(["sbom", str(directory / "pixi.toml"), "-e", env, "-p", platform, "--format", fmt,
                         "-o", str(out), "--cache-dir", str(tmp_path / "store")]) == 0
            check_spdx(out, ntia_minimum=versioned) if fmt == "spdx" else check_cyclonedx(out)
        checked += 1
        if checked == 10:
            break
    assert checked >= 8


def test_pack_writes_its_sbom_beside_the_archive(demo, tmp_path: Path, store_dir) -> None:
    out = tmp_path / "out" / "environment.tar"
    out.parent.mkdir()
    assert main(["pack", str(demo["webapp"]), "-e", "prod", "-p", "linux-aarch64", "-o", str(out),
                 "--sbom", "spdx"]) == 0
    document = check_spdx(tmp_path / "out" / "environment.spdx.json")
    import hashlib

    root = next(p for p in document["packages"] if p["primaryPackagePurpose"] == "ARCHIVE")
    assert root["checksums"] == [{"algorithm": "SHA256", "checksumValue": hashlib.sha256(out.read_bytes()).hexdigest()}]


def test_pack_sbom_to_stdout_is_refused(demo, capsys, store_dir) -> None:
    assert main(["pack", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "-o", "-", "--sbom", "spdx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sbom" in err and len(err.splitlines()) == 1


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_image_referrers_pushed_with_tag_fallback_and_copied_with_skopeo(demo, tmp_path: Path, store_dir) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    webapp = demo["webapp"]
    try:
        ref = f"{registry.host}/demo/webapp:1"
        layout = tmp_path / "layout"
        assert main(["image", str(webapp), "-e", "prod", "-p", "linux-64", "-p", "linux-aarch64", "--sbom", "spdx",
                     "--provenance", "--push", ref, "--oci-dir", str(layout), "--tag", "webapp:1"]) == 0
        index = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}"))
        base_index = json.loads((webapp.parent / "base" / "index.json").read_text())
        base_manifests = json.loads(_blob(webapp.parent / "base", base_index["manifests"][0]["digest"]))["manifests"]
        with RegistryClient(registry.host, scheme="http") as client:
            assert client.get_referrers("demo/webapp", index["manifests"][0]["digest"]) is None  # no API: fallback
            for platform, desc in zip(("linux-64", "linux-aarch64"), index["manifests"]):
                referrers = list_referrers(client, "demo/webapp", desc["digest"])
                kinds = sorted(r["artifactType"] for r in referrers)
                assert kinds == ["application/spdx+json", "application/vnd.in-toto+json"], referrers
                tag_index = json.loads(skopeo("inspect", "--tls-verify=false", "--raw",
                                              f"docker://{registry.host}/demo/webapp:{fallback_tag(desc['digest'])}"))
                assert {m["digest"] for m in tag_index["manifests"]} == {r["digest"] for r in referrers}
                for referrer in referrers:
                    artifact = json.loads(client.get_manifest("demo/webapp", referrer["digest"])[0])
                    assert artifact["subject"]["digest"] == desc["digest"]
                    payload = b"".join(client.iter_blob("demo/webapp", artifact["layers"][0]["digest"]))
                    if referrer["artifactType"] == "application/spdx+json":
                        path = tmp_path / f"{platform}.spdx.json"
                        path.write_bytes(payload)
                        sbom = check_spdx(path)
                        subject = next(p for p in sbom["packages"] if p["primaryPackagePurpose"] == "CONTAINER"
                                       and p["name"] == "webapp:1")
                        assert subject["checksums"][0]["checksumValue"] == desc["digest"].split(":")[1]
                        base = next(p for p in sbom["packages"] if p["SPDXID"].startswith("SPDXRef-base-image"))
                        base_digest = next(m["digest"] for m in base_manifests
                                           if m["platform"]["architecture"] == desc["platform"]["architecture"])
                        assert base["checksums"][0]["checksumValue"] == base_digest.split(":")[1]
                    else:
                        statement = check_statement(payload)
                        assert statement["subject"][0]["digest"]["sha256"] == desc["digest"].split(":")[1]
                        definition = statement["predicate"]["buildDefinition"]
                        assert definition["externalParameters"]["platform"] == platform
                        lock_sha = load_project(webapp).lock_sha256
                        assert definition["externalParameters"]["lock"]["sha256"] == lock_sha
                        resolved = {d["uri"]: d.get("digest", {}).get("sha256") for d in definition["resolvedDependencies"]}
                        for record in load_project(webapp).target("prod", platform).conda:
                            assert resolved[record.url] == record.sha256
                        byproducts = statement["predicate"]["runDetails"]["byproducts"]
                        assert any(b["name"].startswith("sbom") for b in byproducts)
        # the layout carries the same referrers, after the tagged index
        listed = json.loads((layout / "index.json").read_text())["manifests"]
        pushed_digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))["Digest"]
        assert listed[0]["digest"] == pushed_digest and "artifactType" not in listed[0]
        assert len([m for m in listed[1:] if m.get("artifactType")]) == 4 == len(listed) - 1
        # skopeo copy --all of the image and of its referrers' tags: the same digests in the new repository
        copy_repo = f"{registry.host}/demo/copy"
        skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{ref}",
               f"docker://{copy_repo}:1")
        for desc in index["manifests"]:
            tag = fallback_tag(desc["digest"])
            skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
                   f"docker://{registry.host}/demo/webapp:{tag}", f"docker://{copy_repo}:{tag}")
        assert skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{copy_repo}:1") == \
            skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
        with RegistryClient(registry.host, scheme="http") as client:
            for desc in index["manifests"]:
                original = sorted(r["digest"] for r in list_referrers(client, "demo/webapp", desc["digest"]))
                copied = sorted(r["digest"] for r in list_referrers(client, "demo/copy", desc["digest"]))
                assert copied == original and len(copied) == 2
    finally:
        registry.stop()


def test_second_push_adds_to_the_fallback_index_without_duplicates(demo, tmp_path: Path, store_dir) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    try:
        ref = f"{registry.host}/demo/w:1"
        common = [str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--push", ref]
        assert main(["image", *common, "--sbom", "spdx"]) == 0
        assert main(["image", *common, "--sbom", "spdx", "--provenance"]) == 0
        assert main(["image", *common, "--sbom", "cyclonedx"]) == 0
        digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))["Digest"]
        with RegistryClient(registry.host, scheme="http") as client:
            kinds = sorted(r["artifactType"] for r in list_referrers(client, "demo/w", digest))
        assert kinds == ["application/spdx+json", "application/vnd.cyclonedx+json", "application/vnd.in-toto+json"]
    finally:
        registry.stop()


def test_pack_writes_its_provenance_beside_the_archive(demo, tmp_path: Path, store_dir, capsys) -> None:
    """`pack --provenance`: an in-toto statement (SLSA v1) whose subject is the archive by sha256, whose
    resolved dependencies are the lock and every packed package by URL and sha256, with the SBOM written
    beside it as a byproduct; the same pack gives the same statement."""
    import hashlib

    project = load_project(str(demo["webapp"]))
    target = project.target("prod", "linux-64")
    statements = []
    for run in ("a", "b"):
        out = tmp_path / run / "environment.tar"
        out.parent.mkdir()
        assert main(["pack", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "-o", str(out), "--sbom", "spdx",
                     "--provenance"]) == 0
        statements.append((tmp_path / run / "environment.provenance.json").read_bytes())
    doc = check_statement(statements[0])
    assert statements[0] == statements[1]
    assert doc["subject"] == [{"name": "environment.tar", "digest": {"sha256": hashlib.sha256(out.read_bytes()).hexdigest()}}]
    dependencies = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies[0]["digest"] == {"sha256": project.lock_sha256}
    by_sha = {d["digest"].get("sha256") for d in dependencies[1:]}
    assert {r.sha256 for r in target.conda} <= by_sha and len(dependencies) == 1 + len(target.conda) + len(target.pypi)
    sbom = tmp_path / "b" / "environment.spdx.json"
    assert doc["predicate"]["runDetails"]["byproducts"] == [
        {"name": sbom.name, "digest": {"sha256": hashlib.sha256(sbom.read_bytes()).hexdigest()}}]
    capsys.readouterr()
    assert main(["pack", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "-o", str(tmp_path / "dir"),
                 "--directory-only", "--provenance"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--provenance" in err and len(err.splitlines()) == 1 and not (tmp_path / "dir").exists()
