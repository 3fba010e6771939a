"""The README tells the truth about the command line and the test suite: its usage lines name only flags
the commands have, its defaults are the parsers' defaults (`default`, this machine's platform — not an
example's `-e prod -p linux-64`), its shells are the activation's, and "What the tests need" lists every
tool a test requires and every Debian package CI installs, with the command CI runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pixibuild.cli import build_parser
from pixibuild.install.activation import SHELLS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _section(heading: str) -> str:
    start = README.index(heading)
    following = re.search(r"^#{2,3} ", README[start + len(heading):], re.M)
    return README[start:start + len(heading) + following.start()] if following else README[start:]


def _usage_block() -> str:
    section = _section("### One-shot commands")
    return section[section.index("```sh") + 5:section.index("```", section.index("```sh") + 5)]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _usage_lines() -> dict[str, str]:
    """command → its usage text (continuation lines included), from the README's block."""
    out: dict[str, str] = {}
    current = None
    for line in _usage_block().splitlines():
        found = re.match(r"pixibuild (\S+)", line)
        if found:
            current = found.group(1)
            out[current] = line.split("#", 1)[0]
        elif line.startswith(" ") and current:
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def test_usage_names_every_command_and_only_flags_it_has() -> None:
    usage, parsers = _usage_lines(), _parsers()
    assert set(usage) == set(parsers)
    groups = {"STORE": ["--cache-dir", "--use-cache", "--verify-cache"],
              "NETWORK": ["-c", "--auth-file", "--ca-bundle", "--tls-no-verify", "-j"],
              "REMOTE": ["--remote-cache", "--remote-cache-mode"]}
    for command, text in usage.items():
        flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))
        for group, members in groups.items():
            if group in text:
                flags |= set(members)
        known = {option for action in parsers[command]._actions for option in action.option_strings}
        assert flags - known == set(), f"README shows {command} flags it does not have: {flags - known}"


def test_usage_states_the_real_defaults() -> None:
    """`-e` defaults to `default`, `-p` to this machine's platform, unpack's to environment.tar/./env/bash."""
    block = _usage_block()
    defaults = block[block.index("Defaults:"):]
    parsers = _parsers()
    pack = {a.dest: a.default for a in parsers["pack"]._actions}
    unpack = {a.dest: a.default for a in parsers["unpack"]._actions}
    assert f"-e ENV = {pack['environment']}" in defaults
    assert "-p PLATFORM = this machine's platform" in defaults
    assert "MANIFEST_PATH = ." in defaults
    assert (f"PACK_FILE = {unpack['pack_file']}" in defaults and f"-o OUTPUT_DIR = {unpack['output_directory']}" in defaults
            and f"-e ENV_NAME = {unpack['env_name']}" in defaults and f"-s SHELL = {unpack['shell']}" in defaults)
    assert not re.search(r"pixibuild \w+ .*-e prod|-p linux-64", block.split("Defaults:")[0])  # no example posing


def test_the_shells_listed_are_the_ones_unpack_accepts() -> None:
    shells = re.search(r"^SHELL\s+=\s+(.+)$", _usage_block(), re.M)
    assert shells and [s.strip() for s in shells.group(1).split("|")] == list(SHELLS)


def _required_tools() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        names |= set(re.findall(r'require_tool\("([\w-]+)"', path.read_text()))
    from test_activation_shells import TOOL  # the shells it runs, by executable name

    return names | set(TOOL.values())


def _ci_debs() -> list[str]:
    found = re.search(r'^DEBS="([^"]+)"', (REPO / ".ci" / "run").read_text(), re.M)
    assert found
    return found.group(1).split()


def test_what_the_tests_need_lists_every_tool_and_every_ci_package() -> None:
    section = _section("## What the tests need")
    missing_tools = {t for t in _required_tools() if f"`{t}`" not in section and t not in ("bash", "chroot")}
    assert missing_tools == set(), f"tools the tests require but the README does not list: {missing_tools}"
    missing_debs = {d for d in _ci_debs() if d not in section and d != "python3-venv"}
    assert missing_debs == set(), f"Debian packages .ci/run installs but the README does not list: {missing_debs}"
    assert "PIXIBUILD_SHARED" in section and "../shared" in section and "PIXIBUILD_REQUIRE_TOOLS=1" in section


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    quick = _section("## Quick start")
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'" in quick
    assert ".venv/bin/pip install -q -e '.[test]'" in ci
    assert ".venv/bin/python -m pytest -q" in quick and re.search(r"^\.venv/bin/python -m pytest -q$", ci, re.M)
    assert "python3-venv" in quick and "python3-venv" in " ".join(_ci_debs())
    version = re.search(r"^NU_VERSION=([\d.]+)$", ci, re.M)
    assert version and f"@nushell/linux-x64@{version.group(1)}" in _section("## What the tests need")


@pytest.mark.parametrize("command", ["lock-info", "fetch", "pack", "image"])
def test_help_and_readme_agree_on_the_target_defaults(command: str) -> None:
    actions = {a.dest: a for a in _parsers()[command]._actions}
    assert actions["environment"].default == "default"
    assert "this machine's" in actions["platform"].help
