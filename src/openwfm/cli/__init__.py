"""``wfm``: the openwfm command line. One Typer app (``cli/app.py``); each module here adds the commands of
one part of the data flow."""

from __future__ import annotations

import sys

# each module registers its commands on ``app``, in the order of the data flow (the order of ``wfm --help``)
from openwfm.cli import basics, training, tokenizer, guard, generate, evaluate  # noqa: F401
from openwfm.cli.app import _state, app, console
from openwfm.cli.guard import BLOCKED_EXIT, _guard_hooks
from openwfm.errors import OpenWFMError

__all__ = ["BLOCKED_EXIT", "_guard_hooks", "app", "main"]


def _global_flags(argv: list[str]) -> list[str]:
    """``--quiet``/``-q`` and ``--debug`` are accepted anywhere on the line (Typer reads them only before the
    subcommand): move them to the front. Arguments after ``--`` are left alone."""
    head = argv[:argv.index("--")] if "--" in argv else argv
    flags = [a for a in head if a in ("--quiet", "-q", "--debug")]
    rest = [a for i, a in enumerate(argv) if not (a in flags and i < len(head))]
    return flags + rest


def command():
    """The click command of ``app`` with flags shown as flags in --help (Typer prints ``<bool>`` for them)."""
    import typer

    cmd = typer.main.get_command(app)

    def walk(c) -> None:
        for p in c.params:
            if getattr(p, "is_flag", False):
                p.metavar = ""
        get_help = c.get_help_option

        def help_option(ctx, get_help=get_help):
            opt = get_help(ctx)
            if opt is not None:
                opt.metavar = ""
            return opt

        c.get_help_option = help_option
        for sub in getattr(c, "commands", {}).values():
            walk(sub)

    walk(cmd)
    return cmd


def main() -> None:
    try:
        command().main(args=_global_flags(sys.argv[1:]), prog_name="wfm")
    except OpenWFMError as e:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted; complete outputs were kept")
        sys.exit(130)
