"""Run the build graph without a dodo.py: `pixibuild build [TASK…] [-C DIR] [-n JOBS] [--list | --dry-run]`."""

from __future__ import annotations

import argparse



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tasks", nargs="*", metavar="TASK",
                        help="task names, e.g. pack:prod:linux-64 (default: every pack/image/unpack)")
    parser.add_argument("-C", "--directory", default=".", help="workspace root (project dir or monorepo root)")
    parser.add_argument("-n", "--jobs", type=int, default=1, help="parallel tasks (threads)")
    parser.add_argument("--list", action="store_true", help="list the tasks instead of running them")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would run and why, run nothing (as `pixibuild plan`)")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print JSON")


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from pixibuild.commands import plan

        return plan.run(argparse.Namespace(tasks=args.tasks, directory=args.directory, json=args.json, push=None))
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from pixibuild.cli import stdout_closed_interrupts

    from . import workspace_tasks

    namespace = workspace_tasks(args.directory)
    argv = ["list", "--all"] if args.list else ["run", "-n", str(args.jobs), "-P", "thread", *args.tasks]
    # doit prints task lines and catches every Exception (a closed stdout would become a task failure
    # with a traceback): its output goes through a guard that stops the run like Ctrl-C instead, and
    # `pixibuild` exits quietly (141) as on any closed stdout.
    with stdout_closed_interrupts() as out:
        namespace["DOIT_CONFIG"] = {**namespace.get("DOIT_CONFIG", {}), "outfile": out}
        return int(DoitMain(ModuleTaskLoader(namespace)).run(argv))
