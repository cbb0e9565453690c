"""The ``wfm`` Typer app, its consoles and the helpers every command module shares."""

from __future__ import annotations

import logging
import re

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from openwfm import __version__
from openwfm.config import ConfigError

app = typer.Typer(help="openwfm: world foundation models — simulate, curate, tokenize, train, generate, evaluate.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
video_app = typer.Typer(help="Inspect and convert videos.", no_args_is_help=True)
app.add_typer(video_app, name="video")
console = Console(stderr=True, soft_wrap=True)
out = Console()
_state = {"debug": False, "quiet": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"openwfm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _state.update(debug=debug, quiet=quiet)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _configs() -> dict:
    from openwfm.sim.config import SimConfig
    from openwfm.tasks import get_task, task_names

    return {"sim": SimConfig, **{f"train-{n}": get_task(n).config_cls for n in task_names()}}


def _parse_size(size: str) -> tuple[int, int]:
    """``--size WxH`` (width first, as ffmpeg and ``wfm video info`` write it) -> (height, width)."""
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size '{size}': expected WIDTHxHEIGHT, e.g. 128x96") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"--size '{size}': width and height must be positive, e.g. 128x96 (WIDTHxHEIGHT)")
    return h, w


def _device(device: str) -> str:
    """``--device``: cpu, or cuda[:N] when this machine has that GPU; anything else is one clear line."""
    import torch

    if device == "cpu":
        return device
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise ConfigError(f"--device '{device}': use cpu or cuda (cuda:N for one GPU of several)")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible"
        raise ConfigError(f"--device {device}: {why} (torch {torch.__version__}); use --device cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, disable=_state["quiet"])
