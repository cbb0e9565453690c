"""The pre-generation guard (Cosmos paper §7): every prompt passes it before a world model runs.

Components, in order, each optional; the first that blocks decides:

1. ``blocklist`` — curated unambiguous terms, seen through obfuscation, lemmatized, fuzzy for long words;
2. ``classifier`` — P(unsafe) from a small head on MiniLM sentence embeddings (offline, shipped);
3. ``llm`` — a Llama-Guard-style model (Aegis in Cosmos) from a local directory, when ``llm_path`` is set.

Models load lazily, once. Every decision is logged (``Decision.log("prompt")``) with a reason a user
can read, e.g. ``blocked term 'decapitate' (category violence) matched 'd3c@pitates'``.
"""

from __future__ import annotations

from dataclasses import dataclass

from openwfm.guardrail.decision import Decision


@dataclass
class PreGuardConfig:
    blocklist: bool = True                 # the keyword blocklist
    blocklist_extra: str = ""              # a user's blocklist file on top of the shipped one ("" = none)
    fuzzy_min_length: int = 7              # words this long or longer also match with typos
    fuzzy_ratio: float = 0.85              # minimal similarity (optimal string alignment) of a typo'd word
    classifier: bool = True                # the prompt classifier
    classifier_path: str = ""              # its head: a directory or .safetensors file ("" = the shipped one)
    classifier_threshold: float | None = None  # None: the head's own (0.55 as shipped, chosen on validation)
    llm_path: str = ""                     # a local Llama-Guard-style model directory ("" = no LLM guard)
    llm_device: str = "cpu"
    llm_on_unparseable: str = "block"      # "block" | "allow" an answer that is neither safe nor unsafe


class PreGuard:
    """``check(prompt) -> Decision``: blocklist -> classifier -> LLM, the first block wins.

    ``encoder``: a ``MiniLMEncoder`` to share with other parts of a pipeline (made lazily otherwise)."""

    def __init__(self, cfg: PreGuardConfig | None = None, encoder=None):
        self.cfg = cfg or PreGuardConfig()
        self._encoder = encoder
        self._blocklist = self._classifier = self._llm = None

    @property
    def blocklist(self):
        if self._blocklist is None:
            from openwfm.guardrail.blocklist import Blocklist

            self._blocklist = Blocklist(self.cfg.blocklist_extra, fuzzy_min_length=self.cfg.fuzzy_min_length,
                                        fuzzy_ratio=self.cfg.fuzzy_ratio)
        return self._blocklist

    @property
    def classifier(self):
        if self._classifier is None:
            from openwfm.guardrail.classifier import PromptClassifier

            self._classifier = PromptClassifier(self.cfg.classifier_path or None, self.cfg.classifier_threshold,
                                                encoder=self._encoder)
        return self._classifier

    @property
    def llm(self):
        if self._llm is None:
            from openwfm.guardrail.llm import LLMGuard

            self._llm = LLMGuard(self.cfg.llm_path, self.cfg.llm_device, on_unparseable=self.cfg.llm_on_unparseable)
        return self._llm

    def load(self) -> "PreGuard":
        """Load every enabled component now (errors in files or models surface here, not mid-run)."""
        for name in self.components():
            getattr(self, name)
        return self

    def components(self) -> list[str]:
        return [name for on, name in ((self.cfg.blocklist, "blocklist"), (self.cfg.classifier, "classifier"),
                                      (bool(self.cfg.llm_path), "llm")) if on]

    def check(self, prompt: str) -> Decision:
        """The decision on one prompt, logged. An empty prompt is allowed (there is nothing to judge)."""
        if not prompt or not prompt.strip():
            return Decision(True, "pre-guard", "empty prompt").log("prompt")
        passed, scores = [], {}
        for name in self.components():
            d = getattr(self, name).check(prompt)
            if not d.allowed:
                d.details = {**d.details, "passed": passed}
                return d.log("prompt")
            passed.append(name)
            if d.score is not None:
                scores[name] = d.score
        reason = f"passed {', '.join(passed)}" if passed else "no pre-guard component enabled"
        if "classifier" in scores:
            reason += f" (unsafe probability {scores['classifier']:.2f} < {self.classifier.threshold:g})"
        return Decision(True, "pre-guard", reason, score=scores.get("classifier"),
                        details={"passed": passed}).log("prompt")
