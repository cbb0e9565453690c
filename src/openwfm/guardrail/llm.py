"""Pre-guard stage 3 (optional): an LLM safety judge in the Llama Guard family, from a local directory.

Cosmos (paper §7) runs Aegis-AI-Content-Safety-LlamaGuard on every prompt. Any causal LM that answers
the Llama Guard way works here: ``safe``, or ``unsafe`` with a line of category codes (``S1``..``S14``
for Llama Guard 3/4, ``O1``..``O13`` for Aegis). The prompt goes through the tokenizer's chat template
when it has one (Llama Guard 3/4 build their whole policy prompt there); otherwise a plain Llama-Guard
style instruction with the Aegis categories (what Aegis, a LoRA on LlamaGuard-7b, expects; give it as
a merged local model). Greedy decoding of a few tokens; nothing is downloaded.

An answer that is neither ``safe`` nor ``unsafe`` blocks the prompt by default (``on_unparseable=
"block"``): a judge that cannot be read is not a judge that said yes. ``"allow"`` lets it through.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from openwfm.errors import OpenWFMError
from openwfm.guardrail.decision import Decision

LLAMA_GUARD_CATEGORIES = {
    "S1": "violent crimes", "S2": "non-violent crimes", "S3": "sex-related crimes", "S4": "child sexual exploitation",
    "S5": "defamation", "S6": "specialized advice", "S7": "privacy", "S8": "intellectual property",
    "S9": "indiscriminate weapons", "S10": "hate", "S11": "suicide & self-harm", "S12": "sexual content",
    "S13": "elections", "S14": "code interpreter abuse"}
AEGIS_CATEGORIES = {
    "O1": "violence", "O2": "sexual", "O3": "criminal planning/confessions", "O4": "guns and illegal weapons",
    "O5": "controlled/regulated substances", "O6": "suicide and self harm", "O7": "sexual (minor)",
    "O8": "hate/identity hate", "O9": "PII/privacy", "O10": "harassment", "O11": "threat", "O12": "profanity",
    "O13": "needs caution"}
CATEGORY_NAMES = LLAMA_GUARD_CATEGORIES | AEGIS_CATEGORIES

INSTRUCTION = """[INST] Task: Check if there is unsafe content in 'User' messages in conversations according to our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

User: {prompt}

<END CONVERSATION>

Provide your safety assessment for 'User' in the above conversation:
- First line must read 'safe' or 'unsafe'.
- If unsafe, a second line must include a comma-separated list of violated categories. [/INST]"""


class LLMGuardError(OpenWFMError):
    """A guard model that cannot be loaded."""


@dataclass(frozen=True)
class Verdict:
    safe: bool | None                 # None: the output is neither "safe" nor "unsafe"
    categories: tuple[str, ...] = ()  # codes such as "S1", "O3", upper case, in order, no repeats


def parse_verdict(text: str) -> Verdict:
    """Read a Llama-Guard-style answer: its first word ``safe`` or ``unsafe`` (any case, quotes and
    markdown stripped), then, when unsafe, every category code (``S``/``O`` + number) after it."""
    m = re.match(r"[\s'\"`*#>:-]*([A-Za-z]+)", text or "")
    word = m.group(1).lower() if m else ""
    if word == "safe":
        return Verdict(True)
    if word == "unsafe":
        codes = re.findall(r"\b([SO]\d{1,2})\b", text[m.end():], flags=re.IGNORECASE)
        return Verdict(False, tuple(dict.fromkeys(c.upper() for c in codes)))
    return Verdict(None)


def describe(codes: tuple[str, ...]) -> str:
    return ", ".join(f"{c} {CATEGORY_NAMES[c]}" if c in CATEGORY_NAMES else c for c in codes) or "no category given"


class LLMGuard:
    """``check(prompt) -> Decision`` by a Llama-Guard-style causal LM from the local directory ``path``."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", max_new_tokens: int = 12,
                 on_unparseable: str = "block", categories: dict[str, str] | None = None):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise LLMGuardError(f"{path}: not a local model directory (no config.json); the LLM guard "
                                "loads a Llama-Guard-style model from disk, never from a hub")
        if on_unparseable not in ("block", "allow"):
            raise LLMGuardError(f"on_unparseable must be 'block' or 'allow', got {on_unparseable!r}")
        import transformers

        transformers.utils.logging.disable_progress_bar()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise LLMGuardError(f"{path}: cannot load the guard model ({e.__class__.__name__}: {e})") from e
        self.model = self.model.to(device).eval()
        self.path, self.device, self.max_new_tokens, self.on_unparseable = path, device, max_new_tokens, on_unparseable
        self.categories = categories or AEGIS_CATEGORIES

    def text(self, prompt: str) -> tuple[str, bool]:
        """The model's input text, and whether it came from the chat template (which brings its own BOS)."""
        if getattr(self.tokenizer, "chat_template", None):
            for content in (prompt, [{"type": "text", "text": prompt}]):  # Llama Guard 3 | 4 message formats
                try:
                    msgs = [{"role": "user", "content": content}]
                    return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), True
                except Exception:  # noqa: BLE001 - a template may reject one content format; try the other
                    continue
        cats = "\n".join(f"{k}: {v}." for k, v in self.categories.items())
        return INSTRUCTION.format(categories=cats, prompt=prompt), False

    def generate(self, prompt: str) -> str:
        """The model's answer to ``prompt`` (greedy, new tokens only, special tokens dropped)."""
        import torch

        text, templated = self.text(prompt)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not templated).to(self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def check(self, prompt: str) -> Decision:
        output = self.generate(prompt)
        v = parse_verdict(output)
        details = {"output": output, "categories": list(v.categories)}
        if v.safe is None:
            return Decision(self.on_unparseable == "allow", "llm", f"unparseable guard output {output[:80]!r}",
                            details=details)
        if v.safe:
            return Decision(True, "llm", "guard model answered safe", details=details)
        return Decision(False, "llm", f"guard model answered unsafe ({describe(v.categories)})", details=details)
