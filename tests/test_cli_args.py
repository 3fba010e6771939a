"""One set of flags: every command spells the target, store and network options the same way, and the
store flag (`--cache-dir`, alias `--use-cache`) puts packages and image layers under one root."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from pixibuild.cli import build_parser, main
from pixibuild.conda.platforms import current_subdir
from pixibuild.demo.demo import write_demo
from pixibuild.inputs.lockfile import read_lock
from pixibuild.oci.layer import LayerCache
from pixibuild.store.blobs import Store
from pixibuild.store.roots import layer_cache_root

DOWNLOADING = ("fetch", "pack", "image")


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _option_help(text: str, option: str) -> str:
    """The help entry of `option` (its flag line and the indented lines after it), whitespace-normalized."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option))
    entry = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 6) or line.strip().startswith("-"):
            break
        entry.append(line)
    return " ".join(" ".join(entry).split())


def test_every_downloading_command_lists_the_same_store_and_network_flags(capsys) -> None:
    helps = {command: _help(capsys, command) for command in DOWNLOADING}
    for option in ("--cache-dir DIR, --use-cache DIR", "--verify-cache", "-c CONFIG, --config CONFIG",
                   "--auth-file FILE", "--ca-bundle FILE", "--tls-no-verify", "-j N, --jobs N"):
        entries = {command: _option_help(text, option) for command, text in helps.items()}
        assert len(set(entries.values())) == 1, entries
    store = _option_help(helps["pack"], "--cache-dir DIR, --use-cache DIR")
    assert "package store" in store and "oci/" in store and "$PIXIBUILD_CACHE_DIR" in store


@pytest.mark.parametrize("command", ["fetch", "pack", "image", "lock-info"])
def test_target_flags_show_their_real_defaults(capsys, command: str) -> None:
    text = _help(capsys, command)
    assert "--manifest-file MANIFEST_PATH" in text and "MANIFEST_PATH" in text
    assert re.search(r"\(default:\s+default\)", _option_help(text, "-e ENVIRONMENT"))
    platform = _option_help(text, "-p PLATFORM")
    assert f"(default: {current_subdir()}, this machine's)" in platform


def test_shells_and_environment_are_spelled_alike(capsys) -> None:
    hook, unpack = _help(capsys, "shell-hook"), _help(capsys, "unpack")
    assert _option_help(hook, "-s {") == _option_help(unpack, "-s {")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"pixibuild": parser, **sub.choices}


def test_every_flag_and_argument_of_every_command_has_help_text() -> None:
    """`pixibuild COMMAND --help` explains everything it lists (the issue found `-s` bare)."""
    bare = [f"{name} {'/'.join(action.option_strings) or action.dest}"
            for name, parser in _subcommands().items() for action in parser._actions
            if not isinstance(action, argparse._SubParsersAction)
            and (action.help is None or action.help == argparse.SUPPRESS or not action.help.strip())]
    assert bare == []
    assert set(_subcommands()) >= {"lock-info", "fetch", "pack", "unpack", "shell-hook", "image", "build"}


def _layer_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


@pytest.mark.parametrize("flag", ["--cache-dir", "--use-cache"])
def test_store_flag_holds_packages_and_image_layers_for_pack_and_image(tmp_path: Path, store_dir: Path,
                                                                      flag: str) -> None:
    webapp = write_demo(tmp_path / "demo")["webapp"]
    root = tmp_path / "one-root"
    target = ["-e", "prod", "-p", "linux-64", flag, str(root)]
    records = read_lock(webapp / "pixi.lock").environment("prod").conda_packages("linux-64")
    store = Store(root)
    try:
        assert main(["pack", str(webapp), *target, "-o", str(tmp_path / "env.tar")]) == 0
        assert records and all(store.has(r.sha256) for r in records)
        assert main(["image", str(webapp), *target, "--oci-dir", str(tmp_path / "layout"), "--tag", "w:1"]) == 0
    finally:
        store.close()
    layers = LayerCache(layer_cache_root(root))
    digests = _layer_digests(tmp_path / "layout")
    assert digests and all(layers.blob_path(d).is_file() for d in digests)
    assert layers.root == root / "oci"
    # nothing went to the default store ($PIXIBUILD_CACHE_DIR here): the flag moved all of it
    assert not any(p.is_file() for p in store_dir.rglob("*")) if store_dir.exists() else True


def test_the_store_option_is_declared_in_one_place() -> None:
    """Every command that takes the store (fetch, pack, image, build, sbom, cache, …) gets `--cache-dir`
    and its `--use-cache` alias from commands/args.py, so the spelling cannot drift between commands."""
    commands = Path(__file__).resolve().parents[1] / "pixibuild" / "commands"
    declaring = sorted(p.name for p in commands.glob("*.py") if '"--cache-dir"' in p.read_text())
    assert declaring == ["args.py"]
    with_store = {name for name, sub in _subcommands().items()
                  if any("--cache-dir" in a.option_strings for a in sub._actions)}
    assert {"fetch", "pack", "image", "sbom", "cache"} <= with_store
    for name in with_store:
        action = next(a for a in _subcommands()[name]._actions if "--cache-dir" in a.option_strings)
        assert action.option_strings == ["--cache-dir", "--use-cache"] and action.dest == "cache_dir", name
