"""Guardrails (Cosmos §7): a pre-guard on the prompt (blocklist, prompt classifier, optional local LLM
guard) and a post-guard on the frames (content safety on sampled frames, face pixelation)."""

from openwfm.guardrail.decision import Decision, GuardrailError
from openwfm.guardrail.guard import Guardrail, GuardrailConfig, load_guardrail_config
from openwfm.guardrail.post import PostGuard, PostGuardConfig
from openwfm.guardrail.pre import PreGuard, PreGuardConfig

__all__ = ["Decision", "Guardrail", "GuardrailConfig", "GuardrailError", "PostGuard", "PostGuardConfig", "PreGuard",
           "PreGuardConfig", "load_guardrail_config"]
