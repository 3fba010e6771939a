"""doit's console output plus pixibuild's end-of-run summary line (`pixibuild.graph.summary`) on stderr:
node outcomes, the remote cache's traffic, layers compressed. Used for `doit` and `pixibuild build` alike."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from doit.reporter import ConsoleReporter

from pixibuild.graph.plan import Workspace
from pixibuild.graph.summary import RUN, as_json, summary


def layers_compressed() -> int:
    """Layers this process tarred and compressed (0 when the image code was never loaded)."""
    module = sys.modules.get("pixibuild.oci.remote")
    return module.COMPRESSED.count if module is not None else 0


def verbose() -> bool:
    return bool(os.environ.get("PIXIBUILD_VERBOSE")) or logging.getLogger("pixibuild").isEnabledFor(logging.INFO)


class SummaryReporter(ConsoleReporter):
    """ConsoleReporter that also counts up-to-date nodes and prints the summary when the run completes."""

    workspace: Workspace | None = None

    @classmethod
    def for_workspace(cls, ws: Workspace) -> type["SummaryReporter"]:
        return type("WorkspaceSummaryReporter", (cls,), {"workspace": ws})

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        RUN.reset()
        self.layers_elsewhere = 0
        super().initialize(tasks, selected_tasks)

    def add_success(self, task: Any) -> None:
        super().add_success(task)
        ran = task.__dict__.get("pixibuild_ran")
        if ran is not None and ran[0] != os.getpid():  # run by a `doit -P process` worker: its result came back
            _, name, kind, outcome, layers = ran
            RUN.record(name, kind, outcome)
            self.layers_elsewhere += layers

    def skip_uptodate(self, task: Any) -> None:
        super().skip_uptodate(task)
        kind = task.name.partition(":")[0]
        if task.actions and kind != "pull" and ":" in task.name:
            RUN.record(task.name, kind, "local")

    def complete_run(self) -> None:
        super().complete_run()
        ws = self.workspace
        remote = ws.remote if ws is not None else None
        stats = RUN.counts()
        args = (stats, remote.stats.as_dict() if remote else None, remote.name if remote else None,
                remote.settings.mode if remote else None, layers_compressed() + getattr(self, "layers_elsewhere", 0))
        if verbose():
            for name, outcome in stats["outcomes"].items():
                print(f"pixibuild:   {name}: {outcome}", file=sys.stderr)
            if remote is not None:
                for what, outcome, nbytes in list(remote.log):
                    print(f"pixibuild:   remote cache: {what}: {outcome} ({nbytes} bytes)", file=sys.stderr)
        print(summary(*args), file=sys.stderr)
        target = os.environ.get("PIXIBUILD_SUMMARY_JSON")
        if target:
            Path(target).write_text(as_json(*args))
        sys.stderr.flush()
