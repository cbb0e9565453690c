"""A learned "looks" score on ImageNet features (the aesthetic filter of Cosmos paper sec. 3.2, made
with what exists offline).

What it is: a logistic-regression head on the clip embedding the curator already computes for dedup
(``dedup.clip_embedding``: EfficientNet-Lite0 pooled features of 4 frames, L2-normalized), trained by
``train_aesthetic`` to tell clean real footage from degraded copies of it (blur, motion blur, noise,
heavy JPEG, pixelation, low contrast / haze, under- and over-exposure, colour casts, combinations).
``aesthetic_score`` is its probability that a clip is clean, in [0, 1], calibrated (Platt) on
leave-one-video-out predictions, for frames at a short side of about 256 px (the default transcode):
much smaller frames are upscaled by the embedding and read as blur (docs/curate.md has the numbers).

What it is not: a model of human aesthetic preference. The paper's filter uses a predictor trained on
human ratings; no such ratings exist here, so this score is a technical-quality (degradation) detector.
It says nothing about composition, subject or beauty, and it only knows the degradations it was trained
on. The weights, their standardization and the training facts (sources, held-out accuracy) ship in
``assets/aesthetic`` (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openwfm.errors import OpenWFMError

WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "aesthetic"
DIM = 1280  # dedup.clip_embedding's size


class AestheticError(OpenWFMError):
    """Missing or malformed aesthetic weights, or an embedding of the wrong shape."""


@dataclass
class AestheticConfig:
    min_aesthetic: float = 0.2  # clips whose probability of being clean is lower are dropped


class AestheticHead(torch.nn.Module):
    """Standardization + one linear unit: calibrated logit of "clean" for (N, 1280) embeddings.

    Standardization centres each feature and divides by one scale (the mean per-feature std): per-feature
    scaling gave rare, low-variance channels as much weight as strong ones and generalized worse to
    unseen videos (leave-one-video-out, docs/curate.md)."""

    def __init__(self, dim: int = DIM):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.linear = torch.nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.scale)[:, 0]


_HEAD: AestheticHead | None = None


def load_head(path: str | Path | None = None) -> AestheticHead:
    """The head from ``path`` (default: the shipped weights, cached after the first load)."""
    from safetensors.torch import load_file

    global _HEAD
    if path is None and _HEAD is not None:
        return _HEAD
    d = Path(path) if path else WEIGHTS
    f = d / "model.safetensors"
    if not f.is_file():
        raise AestheticError(f"aesthetic weights {f} not found; train them with "
                             "`python -m openwfm.curate.train_aesthetic` (see docs/curate.md)")
    head = AestheticHead()
    try:
        head.load_state_dict({k: v.float() for k, v in load_file(str(f)).items()})
    except RuntimeError as e:
        raise AestheticError(f"{f} is not an aesthetic head: {e}") from e
    head.eval()
    if path is None:
        _HEAD = head
    return head


def aesthetic_score(embedding: np.ndarray, head: AestheticHead | None = None) -> float:
    """Probability in [0, 1] that a clip with this ``clip_embedding`` (1280,) is clean footage."""
    e = np.asarray(embedding, dtype=np.float32)
    if e.shape != (DIM,):
        raise AestheticError(f"expected a clip embedding of shape ({DIM},), got {e.shape}")
    head = head or load_head()
    with torch.no_grad():
        return float(torch.sigmoid(head(torch.from_numpy(e)[None]))[0])


def aesthetic_decision(scores: dict, cfg: AestheticConfig | None = None) -> str | None:
    """Why a clip is dropped for its looks (None: kept); ``scores["aesthetic"]`` is ``aesthetic_score``."""
    cfg = cfg or AestheticConfig()
    if scores["aesthetic"] < cfg.min_aesthetic:
        return f"poor looks: aesthetic {scores['aesthetic']:.2f} < {cfg.min_aesthetic:g}"
    return None


def save_head(head: AestheticHead, out: str | Path, info: dict) -> Path:
    """Write ``model.safetensors`` (vectors in float16: a few KB) and ``config.json`` (training facts)."""
    from openwfm.files import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    state = {k: v.half() if k in ("mean", "linear.weight") else v for k, v in state.items()}
    save_safetensors(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(info, indent=1))
    return out
