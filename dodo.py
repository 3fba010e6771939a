"""Build the embedded demo monorepo (examples/demo: generated channel, two projects).

    doit list                      # every task, with docs
    doit                           # all packs and images of both projects
    doit pack:webapp:prod:linux-64 # one target

The demo's store is the repo's `cache/` unless PIXIBUILD_CACHE_DIR is set. For your own monorepo
the whole dodo.py is two lines: see README.md.
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE / "examples" / "demo"
os.environ.setdefault("PIXIBUILD_CACHE_DIR", str(HERE / "cache"))

if not (DEMO / "webapp" / "pixi.lock").exists():
    from pixibuild.demo.demo import write_demo

    write_demo(DEMO)

from pixibuild.rules import workspace_tasks  # noqa: E402

globals().update(workspace_tasks(DEMO, build_dir=HERE / "build"))
