"""Running as a non-root user: `--user UID[:GID]` / `user = "1000:1000"`.

The environment stays root-owned and read-only; one small layer on top gives the user the project
directory (the working directory, /app) and a HOME, and — when the base has an /etc/passwd — an
entry for the uid (and /etc/group for the gid), so `id`, `whoami` and tools that look up their
home directory work. The config's `User` is always written as UID:GID, so a runtime that finds no
passwd entry still uses the intended group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from pixibuild.errors import InputError
from pixibuild.files.digest import canonical_json
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.oci.layer import Layer, LayerCache
from pixibuild.oci.rootfs import BaseFacts

USER_NAME = "app"
_USER = re.compile(r"^(\d+)(?::(\d+))?$")
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int

    @property
    def config_user(self) -> str:
        return f"{self.uid}:{self.gid}"


def parse_user(text: str) -> RunAs:
    """`UID[:GID]` (numbers; the group defaults to the uid); an InputError naming the setting otherwise."""
    match = _USER.match(text.strip())
    if not match:
        raise InputError(f"expected UID[:GID] as numbers (e.g. 1000:1000), got {text!r}", field="user")
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else uid
    if uid > _MAX_ID or gid > _MAX_ID:
        raise InputError(f"uid/gid out of range in {text!r}", field="user")
    if uid == 0:
        raise InputError("user 0 is root: leave --user out to run as root", field="user")
    return RunAs(uid, gid)


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _with_line(text: str, line: str) -> bytes:
    return (text if not text or text.endswith("\n") else text + "\n").encode() + line.encode() + b"\n"


def _home_and_files(run_as: RunAs, facts: BaseFacts) -> tuple[str, dict[str, bytes]]:
    """(HOME, changed /etc files): the base's own entry for the uid if it has one, else ours."""
    files: dict[str, bytes] = {}
    home = f"/home/{USER_NAME}"
    if facts.passwd is not None:
        users = _entries(facts.passwd)
        mine = [u for u in users if len(u) >= 6 and u[2] == str(run_as.uid)]
        if mine:
            home = mine[0][5] or home
        else:
            names = {u[0] for u in users}
            name = USER_NAME if USER_NAME not in names else f"{USER_NAME}{run_as.uid}"
            shell = "/bin/sh" if facts.has_shell else "/sbin/nologin"
            files["etc/passwd"] = _with_line(facts.passwd, f"{name}:x:{run_as.uid}:{run_as.gid}:{name}:{home}:{shell}")
    if facts.group is not None:
        groups = _entries(facts.group)
        if not any(len(g) >= 3 and g[2] == str(run_as.gid) for g in groups):
            names = {g[0] for g in groups}
            name = USER_NAME if USER_NAME not in names else f"{USER_NAME}{run_as.gid}"
            files["etc/group"] = _with_line(facts.group, f"{name}:x:{run_as.gid}:")
    return home, files


def build_user_layer(run_as: RunAs, *, workdir: str, facts: BaseFacts, cache: LayerCache) -> tuple[Layer, str]:
    """The layer that makes the working directory and HOME the user's (and adds the passwd/group
    entries); returns it with the HOME it set up."""
    home, files = _home_and_files(run_as, facts)
    owned = sorted({p for p in (workdir, home) if PurePosixPath(p).is_absolute() and p.strip("/")})
    key = canonical_json({"kind": "user", "uid": run_as.uid, "gid": run_as.gid, "owned": owned,
                          "files": {k: v.decode() for k, v in files.items()}}).decode()

    def write(tar: DeterministicTarWriter) -> None:
        entries: dict[str, tuple[str, object]] = {}
        for path in owned:
            parts = PurePosixPath(path.strip("/")).parts
            for depth in range(1, len(parts)):
                entries.setdefault("/".join(parts[:depth]), ("dir", None))
            entries["/".join(parts)] = ("owned", None)
        if files:
            entries.setdefault("etc", ("dir", None))
        for name, data in files.items():
            entries[name] = ("file", data)
        for name in sorted(entries):
            kind, data = entries[name]
            if kind == "dir":
                tar.add_dir(name, 0o755)
            elif kind == "owned":
                tar.add_dir(name, 0o755, owner=(run_as.uid, run_as.gid))
            else:
                tar.add_bytes(name, data, 0o644)  # type: ignore[arg-type]

    return cache.get_or_write(key, write), home
