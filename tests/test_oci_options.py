"""Image settings from [tool.pixibuild.image], per-environment tables, and CLI flags."""

from __future__ import annotations

import argparse

import pytest

from pixibuild.cli import build_parser
from pixibuild.errors import InputError
from pixibuild.oci.options import apply_cli, manifest_image_options

TOOL = {"image": {
    "base": "oci:/base:1", "cmd": "python -m app --port 8080", "expose": [8080], "labels": {"team": "a"},
    "env": {"MODE": "shared"},
    "prod": {"cmd": ["gunicorn", "app:app"], "labels": {"tier": "prod"}, "env": {"MODE": "prod"}, "tag": "x:prod"},
}}


def test_shared_then_environment_table() -> None:
    default = manifest_image_options(TOOL, "default")
    assert default.cmd == ["python", "-m", "app", "--port", "8080"] and default.expose == ["8080"]
    assert default.labels == {"team": "a"} and default.tag is None
    prod = manifest_image_options(TOOL, "prod")
    assert prod.cmd == ["gunicorn", "app:app"] and prod.base == "oci:/base:1" and prod.tag == "x:prod"
    assert prod.labels == {"team": "a", "tier": "prod"} and prod.env == {"MODE": "prod"}


def test_cli_overrides_manifest() -> None:
    args = build_parser().parse_args(["image", "-e", "prod", "--cmd", '["a", "b c"]', "--label", "team=b",
                                      "--expose", "9000/udp", "--env", "X=1", "--base", "scratch"])
    options = apply_cli(manifest_image_options(TOOL, "prod"), args)
    assert options.cmd == ["a", "b c"] and options.base == "scratch" and options.expose == ["9000/udp"]
    assert options.labels == {"team": "b", "tier": "prod"} and options.env == {"MODE": "prod", "X": "1"}
    assert options.tag == "x:prod"


@pytest.mark.parametrize("tool, field", [
    ({"image": {"cmd": 3}}, "tool.pixibuild.image.cmd"),
    ({"image": {"bogus": "x"}}, "tool.pixibuild.image.bogus"),
    ({"image": {"prod": {"max-layers": "many"}}}, "tool.pixibuild.image.prod.max-layers"),
    ({"image": "nope"}, "tool.pixibuild.image"),
])
def test_bad_settings_name_the_field(tool: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        manifest_image_options(tool, "prod")
    assert field in str(err.value) and "\n" not in str(err.value)


def test_bad_cli_values() -> None:
    args = argparse.Namespace(label=["novalue"])
    with pytest.raises(InputError, match="--label"):
        apply_cli(manifest_image_options({}, "default"), args)
    args = argparse.Namespace(cmd="[unclosed")
    with pytest.raises(InputError, match="--cmd"):
        apply_cli(manifest_image_options({}, "default"), args)
