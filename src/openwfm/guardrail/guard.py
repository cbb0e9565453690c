"""Generation between two guards (Cosmos §7): the pre-guard on the prompt, the post-guard on the frames.

``GuardrailConfig`` holds both halves (each component on or off, thresholds, model paths) and loads from
YAML (``--guardrail-config``); ``Guardrail`` plugs into the pipelines' hooks: ``pre(prompt)`` raises
``GuardrailError`` on a blocked prompt, ``post(frames)`` raises on an unsafe video and otherwise returns
the frames with faces pixelated. Models load on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openwfm.guardrail.decision import Decision, GuardrailError
from openwfm.guardrail.post import PostGuard, PostGuardConfig
from openwfm.guardrail.pre import PreGuard, PreGuardConfig

log = logging.getLogger("openwfm.guardrail")


@dataclass
class GuardrailConfig:
    enabled: bool = True
    pre: PreGuardConfig = field(default_factory=PreGuardConfig)
    post: PostGuardConfig = field(default_factory=PostGuardConfig)


def load_guardrail_config(path: str | Path | None = None, overrides: list[str] | None = None) -> GuardrailConfig:
    """Defaults, then a YAML file, then ``key=value`` overrides (e.g. ``post.faces=false``)."""
    from openwfm.config import make_config

    return make_config(GuardrailConfig, yaml_files=[path] if path else (), overrides=overrides or [])


class Guardrail:
    """Both guards, as pipeline hooks; ``decisions`` keeps what they decided during this run."""

    def __init__(self, cfg: GuardrailConfig | None = None):
        self.cfg = cfg or GuardrailConfig()
        self._pre: PreGuard | None = None
        self._post: PostGuard | None = None
        self.decisions: list[Decision] = []

    def check_prompt(self, prompt: str) -> Decision:
        if self._pre is None:
            self._pre = PreGuard(self.cfg.pre)
        d = self._pre.check(prompt)
        self.decisions.append(d)
        return d

    def check_video(self, frames: np.ndarray) -> tuple[np.ndarray, Decision]:
        if self._post is None:
            self._post = PostGuard(self.cfg.post)
        frames, d = self._post.check(frames)
        self.decisions.append(d)
        return frames, d

    def pre(self, prompt: str) -> None:
        """The pipelines' ``pre_guard`` hook."""
        d = self.check_prompt(prompt)
        if not d.allowed:
            raise GuardrailError(d)

    def post(self, frames: np.ndarray) -> np.ndarray:
        """The pipelines' ``post_guard`` hook: the cleaned frames, or ``GuardrailError``."""
        frames, d = self.check_video(frames)
        if not d.allowed:
            raise GuardrailError(d)
        return frames

    def hooks(self) -> dict:
        """Keyword arguments for ``WorldPipeline`` / ``ARPipeline``; none when the guardrail is disabled."""
        if not self.cfg.enabled:
            log.warning("guardrails are disabled: prompts and generated videos are not checked")
            return {}
        return {"pre_guard": self.pre, "post_guard": self.post}
