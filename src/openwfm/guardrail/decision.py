"""What every guard returns: a decision with its reason, and the error that refuses a generation.

Cosmos runs generation between two guards (paper §7): a pre-guard on the prompt and a post-guard on the
frames. Each component here answers with a ``Decision``; a blocked one is logged with its reason and,
inside a pipeline, raised as ``GuardrailError``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from openwfm.errors import OpenWFMError

log = logging.getLogger("openwfm.guardrail")


@dataclass
class Decision:
    """``allowed``: the input may pass; ``component``: which guard decided (``blocklist``,
    ``classifier``, ``llm``, ``video-safety``, ``faces`` ...); ``reason``: a sentence for the user;
    ``score``: the component's score where it has one; ``details``: anything else worth logging."""

    allowed: bool
    component: str
    reason: str
    score: float | None = None
    details: dict = field(default_factory=dict)

    def log(self, what: str) -> "Decision":
        """Log the decision (INFO when allowed, WARNING when blocked) and return it."""
        level = logging.INFO if self.allowed else logging.WARNING
        log.log(level, "%s %s by %s: %s", what, "allowed" if self.allowed else "BLOCKED", self.component, self.reason)
        return self


class GuardrailError(OpenWFMError):
    """A guard refused the input or the output; ``decision`` says which guard and why."""

    def __init__(self, decision: Decision):
        super().__init__(f"guardrail ({decision.component}): {decision.reason}")
        self.decision = decision
