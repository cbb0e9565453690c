"""Pre-guard stage 2: a prompt-safety classifier that runs offline (Cosmos paper §7 uses an LLM,
Aegis; ``llm.py`` runs such a model when one is given).

all-MiniLM-L6-v2 reads ``classifier_text(prompt)`` (the ``normalize()``-d prompt, so leetspeak and spacing
tricks reach it undone, with a short list of benign idioms paraphrased: "kill the process" -> "stop the
process"); a small head on its mean-pooled, L2-normalized sentence embedding gives P(unsafe). Two kinds:
- **fine-tuned** (shipped): MiniLM with LoRA adapters (Hu et al. 2021; ``posttrain.lora``) on every linear
  layer of its encoder, trained with the head, so the encoder learns what tells "smothers a patient with a
  pillow" from "fluffs a patient's pillow" — a frozen sentence embedding puts them side by side;
- **frozen**: a logistic (or MLP) head on the unchanged encoder.
Both ship in ``assets/guardrail/``: ``classifier.safetensors`` (``layers.{i}.weight``/``.bias``, ReLU
between layers, sigmoid at the end; for the fine-tuned kind also ``encoder.{module}.lora_A``/``lora_B``)
and ``classifier.json`` (threshold, encoder, ``lora`` rank/alpha/targets when fine-tuned, training set
size and hash, validation and held-out rates). ``train_classifier.py`` makes both.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from openwfm.errors import OpenWFMError
from openwfm.guardrail.blocklist import normalize
from openwfm.guardrail.decision import Decision

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "guardrail"
HEAD, META = "classifier.safetensors", "classifier.json"


# Benign idioms built from violent-looking words, paraphrased before the classifier reads a prompt (the
# blocklist never lists their words). Only idioms a curator lists up front: the held-out tricky prompts
# use others, so the measured rates are not helped by this list.
_VERB = r"(?:{})(?:s|es|ed|ing)?"
_DET = r"(?:(?:the|a|an|this|that|my|your|our|some|all|every|its|their) )?"
BENIGN_IDIOMS = [
    (r"\bbleeding[ -]edge\b", "cutting edge"),
    (rf"\b{_VERB.format('kill')} ({_DET}(?:process|processes|job|jobs|task|tasks|app|apps|program|programs|"
     r"application|server|script|lights?|power|music|switch|tab|tabs|window|windows|container|thread)s?)\b",
     r"stop \1"),
    (rf"\b{_VERB.format('execut')} ({_DET}(?:script|scripts|code|program|command|commands|query|queries|plan|"
     r"function|test|tests|notebook|cell|job|workflow|pipeline))\b", r"run \1"),
    (rf"\b(?:shoot|shoots|shot|shooting) ({_DET}(?:video|videos|film|films|movie|clip|clips|scene|scenes|photo|"
     r"photos|picture|pictures|footage|time-?lapse|documentary|vlog|portrait|portraits|hoops|baskets))\b", r"film \1"),
    (r"\bphoto ?shoots?\b", "photo session"),
    (r"\bbombs? of (flavou?r|taste|colou?r|fun|joy)\b", r"burst of \1"),
    (r"\bbath ?bombs?\b", "bath fizzer"),
    (r"\bkiller whales?\b", "orca"),
    (r"\bkiller (app|apps|feature|deal|view|views|smile|outfit|look)\b", r"great \1"),
    (rf"\b{_VERB.format('blow')} up ({_DET}(?:balloon|balloons|air mattress|pool float|beach ball))\b", r"inflate \1"),
]
BENIGN_IDIOMS = [(re.compile(p), r) for p, r in BENIGN_IDIOMS]


def defuse(text: str) -> str:
    """``text`` (already ``normalize``-d) with the benign idioms above paraphrased: "kill the process"
    -> "stop the process", "shoot a video" -> "film a video", "bleeding edge" -> "cutting edge"."""
    for pattern, repl in BENIGN_IDIOMS:
        text = pattern.sub(repl, text)
    return text


def classifier_text(prompt: str) -> str:
    """What the classifier reads: the normalized prompt with benign idioms paraphrased."""
    return defuse(normalize(prompt)) or prompt


class ClassifierError(OpenWFMError):
    """A classifier head that is missing or cannot be read."""


def head_files(path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(weights, metadata) of a head: ``path`` is its directory or its ``.safetensors`` file; None = shipped."""
    path = Path(path) if path else ASSETS
    weights = path if path.suffix == ".safetensors" else path / HEAD
    return weights, weights.with_suffix(".json")


def load_head(path: str | os.PathLike | None = None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict]:
    """The head's layers ``[(weight, bias), ...]`` and its metadata; errors name the file at fault."""
    from safetensors.torch import load_file

    weights, meta_file = head_files(path)
    for f in (weights, meta_file):
        if not f.is_file():
            raise ClassifierError(f"{f}: no such classifier file (train one: python -m "
                                  "openwfm.guardrail.train_classifier --out DIR)")
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds on a damaged file
        raise ClassifierError(f"{weights}: not a readable safetensors classifier head ({e})") from e
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        threshold = float(meta["threshold"])
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise ClassifierError(f"{meta_file}: not a classifier metadata file ({e.__class__.__name__}: {e})") from e
    layers, i = [], 0
    while f"layers.{i}.weight" in tensors:
        w, b = tensors[f"layers.{i}.weight"].float(), tensors.get(f"layers.{i}.bias")
        if b is None or w.ndim != 2 or b.shape != (w.shape[0],) or (layers and layers[-1][0].shape[0] != w.shape[1]):
            raise ClassifierError(f"{weights}: layer {i} has inconsistent shapes")
        layers.append((w, b.float()))
        i += 1
    if not layers or layers[-1][0].shape[0] != 1:
        raise ClassifierError(f"{weights}: no classifier layers (layers.0.weight ...) ending in one output")
    if not 0.0 < threshold < 1.0:
        raise ClassifierError(f"{meta_file}: threshold {threshold} is not in (0, 1)")
    lora = meta.get("lora")
    if lora is not None and not (isinstance(lora, dict) and {"rank", "alpha", "targets"} <= set(lora)):
        raise ClassifierError(f"{meta_file}: 'lora' must give rank, alpha and targets")
    if (lora is not None) != any(k.startswith("encoder.") for k in tensors):
        raise ClassifierError(f"{weights}: encoder adapters and the metadata's 'lora' must come together")
    return layers, meta


def load_adapters(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The LoRA tensors of a fine-tuned head (``encoder.`` prefix removed); empty for a frozen-encoder head."""
    from safetensors.torch import load_file

    tensors = load_file(str(head_files(path)[0]))
    return {k[len("encoder."):]: v.float() for k, v in tensors.items() if k.startswith("encoder.")}


def adapt_encoder(encoder, lora: dict, adapters: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Wrap ``encoder``'s transformer layers (``encoder.model.encoder``) with LoRA adapters of the given
    rank / alpha / targets, loading ``adapters`` when given; returns the wrapped layers' names."""
    from openwfm.posttrain.lora import add_lora, load_lora

    encoder.model.requires_grad_(False)
    names = add_lora(encoder.model.encoder, int(lora["rank"]), float(lora["alpha"]), tuple(lora["targets"]))
    if adapters is not None:
        load_lora(encoder.model.encoder, adapters)
    return names


def forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Logits ``(N,)`` of embeddings ``(N, dim)``: linear layers with ReLU between them."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x[:, 0]


class PromptClassifier:
    """``score(prompts)`` -> probability that each prompt is unsafe; ``check(prompt)`` -> ``Decision``.

    ``path``: a head directory or ``.safetensors`` file (None = the shipped one); ``threshold``: overrides
    the head's own; ``encoder``: a ``MiniLMEncoder`` to share (made lazily otherwise). A fine-tuned head
    never shares: it loads its own MiniLM and folds its adapters in (the shared one stays unchanged)."""

    def __init__(self, path: str | os.PathLike | None = None, threshold: float | None = None, encoder=None):
        self.layers, self.meta = load_head(path)
        self.threshold = float(self.meta["threshold"] if threshold is None else threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ClassifierError(f"classifier threshold {self.threshold} is not in (0, 1)")
        self.path = head_files(path)[0]
        self._encoder = None if self.meta.get("lora") else encoder
        dim = self.layers[0][0].shape[1]
        if self._encoder is not None and encoder.dim != dim:
            raise ClassifierError(f"{self.path}: the head takes {dim}-wide embeddings, the encoder gives {encoder.dim}")

    @property
    def encoder(self):
        if self._encoder is None:
            from openwfm.posttrain.lora import merge_lora
            from openwfm.text import MiniLMEncoder

            encoder = MiniLMEncoder(max_length=int(self.meta.get("max_length", 64)))
            if self.meta.get("lora"):
                try:
                    adapt_encoder(encoder, self.meta["lora"], load_adapters(self.path))
                except ValueError as e:
                    raise ClassifierError(f"{self.path}: its adapters do not fit MiniLM ({e})") from e
                merge_lora(encoder.model)
            self._encoder = encoder
        return self._encoder

    def score_embeddings(self, emb: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(forward(self.layers, emb.float())).numpy()

    def windows(self, text: str) -> list[str]:
        """``text`` whole when the encoder reads all of it, else overlapping windows of words that it does
        (half a window apart): a harmful sentence after a long harmless preamble is still read."""
        limit = self.encoder.max_length - 2  # [CLS] and [SEP]
        if len(self.encoder.tokenizer(text, add_special_tokens=False)["input_ids"]) <= limit:
            return [text]
        words, size = text.split(), max(limit // 2, 2)  # a word is at most ~2 word pieces in plain English
        return [" ".join(words[i:i + size]) for i in range(0, max(len(words) - size // 2, 1), size // 2)]

    def score(self, prompts: list[str] | str) -> np.ndarray:
        """Probability ``(N,)`` that each prompt is unsafe (a single string gives ``(1,)``); a prompt longer
        than the encoder reads gets the highest of its windows' probabilities."""
        from openwfm.text import sentence_embeddings

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            return np.zeros(0, dtype=np.float32)
        pieces, owner = [], []
        for i, p in enumerate(prompts):
            for w in self.windows(classifier_text(p)):
                pieces.append(w)
                owner.append(i)
        out = np.zeros(len(prompts), dtype=np.float32)
        np.maximum.at(out, owner, self.score_embeddings(sentence_embeddings(self.encoder, pieces)))
        return out

    def check(self, prompt: str) -> Decision:
        """Blocked when the unsafe probability reaches the threshold."""
        p = float(self.score(prompt)[0])
        blocked = p >= self.threshold
        reason = f"unsafe probability {p:.2f} {'>=' if blocked else '<'} {self.threshold:g}"
        return Decision(not blocked, "classifier", reason, score=p)
