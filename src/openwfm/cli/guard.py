"""``wfm guard prompt|video``, ``wfm upsample`` and the guard / upsampler options of ``wfm generate``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from openwfm.cli.app import app, console, out


_NO_GUARD = typer.Option(False, "--no-guardrail", help="Skip the prompt and video guards (a warning is printed).")
_GUARD_CFG = typer.Option(None, "--guardrail-config", help="YAML with guardrail settings (docs/guardrail.md).")
_INDEX = typer.Option(None, "--upsample-index", help="Caption index (wfm data caption-index): upsample the prompt.")
_UPSAMPLER = typer.Option(None, "--upsampler", help="Local LLM/VLM directory for the prompt upsampler.")


def _guard_hooks(no_guardrail: bool, config: Optional[Path]) -> dict:
    """Pipeline hooks of the guardrail (pre: prompt, post: frames), or none with a warning."""
    from openwfm.guardrail import Guardrail, load_guardrail_config

    cfg = load_guardrail_config(config)
    cfg.enabled = cfg.enabled and not no_guardrail
    return Guardrail(cfg).hooks()  # warns when disabled


def _upsampler(index: Optional[Path], llm: Optional[Path]):
    """The prompt upsampler for ``--upsample-index`` / ``--upsampler`` (None when neither is given)."""
    if index is None and llm is None:
        return None
    from openwfm.text import CaptionIndex, LLMUpsampler, RetrievalUpsampler

    idx = CaptionIndex.load(index) if index is not None else None
    return LLMUpsampler(llm, index=idx) if llm is not None else RetrievalUpsampler(idx)


guard_app = typer.Typer(help="Guardrails: check a prompt or a video (exit 0 allowed, 3 blocked, 1 error).",
                        no_args_is_help=True)
app.add_typer(guard_app, name="guard")
_GUARD_SET = typer.Option(None, "--set", help="key=value guardrail settings, e.g. pre.classifier_threshold=0.7.")
BLOCKED_EXIT = 3


@guard_app.command("prompt")
def guard_prompt(prompt: str = typer.Argument(..., help="The prompt to check."),
                 config: Optional[Path] = _GUARD_CFG, overrides: Optional[List[str]] = _GUARD_SET) -> None:
    """Pre-guard: blocklist (normalized, lemmatized, fuzzy), prompt classifier, optional local LLM guard."""
    from openwfm.guardrail import Guardrail, load_guardrail_config

    d = Guardrail(load_guardrail_config(config, overrides)).check_prompt(prompt)
    out.print(f"{'allowed' if d.allowed else '[bold red]BLOCKED[/]'} ({d.component}): {d.reason}")
    raise typer.Exit(0 if d.allowed else BLOCKED_EXIT)


@guard_app.command("video")
def guard_video(src: Path = typer.Argument(..., help="Video to check."),
                dst: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the cleaned video (faces pixelated)."),
                config: Optional[Path] = _GUARD_CFG, overrides: Optional[List[str]] = _GUARD_SET) -> None:
    """Post-guard: content safety on sampled frames (any unsafe frame -> unsafe), faces pixelated in every
    frame they appear in. Nothing is written for an unsafe video."""
    from openwfm.guardrail import Guardrail, load_guardrail_config
    from openwfm.video import read_video, write_video

    video = read_video(src)
    frames, d = Guardrail(load_guardrail_config(config, overrides)).check_video(video.frames)
    out.print(f"{'safe' if d.allowed else '[bold red]UNSAFE[/]'} ({d.component}): {d.reason}")
    if not d.allowed:
        raise typer.Exit(BLOCKED_EXIT)
    if dst is not None:
        write_video(dst, frames, video.fps)
        out.print(f"wrote {dst}: {len(frames)} frames")


@app.command()
def upsample(prompt: str = typer.Argument(..., help="A short prompt."),
             index: Optional[Path] = typer.Option(None, "--index", help="Caption index (wfm data caption-index)."),
             llm: Optional[Path] = _UPSAMPLER,
             video: Optional[Path] = typer.Option(None, "--video", help="Video2World: use this input video's caption."),
             word_limit: int = typer.Option(0, "--word-limit", help="Leave longer prompts as they are (0: default)."))\
        -> None:
    """Prompt upsampler: rewrite a short prompt in the style of the training captions, keeping its facts."""
    from openwfm.text import upsample_video2world, video_caption

    if index is None and llm is None:
        raise typer.BadParameter("give a caption index (--index DIR) and/or a local model (--upsampler DIR)")
    up = _upsampler(index, llm)
    if word_limit:
        up.word_limit = word_limit
    if video is not None:
        from openwfm.video import read_video

        v = read_video(video)
        res = upsample_video2world(prompt, video_caption(v.frames, fps=v.fps), up, v.frames)
    else:
        res = up.upsample(prompt)
    out.print(res.upsampled)
    if res.skipped:
        console.print(f"[yellow]not upsampled:[/] {res.reason}")
