"""Overlay-text filter (Cosmos paper sec. 3.2: clips with excessive text overlays are removed).

Text is found by the PP-OCR detection network that PyPI's ``rapidocr`` ships as ONNX (detection only:
no recognition is needed to know that text is there). The score is the largest fraction of the frame
covered by text boxes over a few sampled frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

_ENGINE = None


@dataclass
class OverlayTextConfig:
    frames: int = 3  # frames sampled evenly from the clip
    size: int = 640  # long side the detector sees
    max_text_area: float = 0.05  # fraction of the frame; above: dropped


def _engine():
    global _ENGINE
    if _ENGINE is None:
        try:
            from rapidocr import RapidOCR
        except ImportError as e:
            raise ImportError("the overlay-text filter needs rapidocr and onnxruntime (pip install rapidocr "
                              "onnxruntime)") from e
        _ENGINE = RapidOCR()
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # it warns on every frame without text
    return _ENGINE


def text_boxes(frame: np.ndarray, size: int = 640) -> list[np.ndarray]:
    """Quadrilaterals (4, 2) of the text the detector finds, in the frame's pixel coordinates. Frames are
    scaled to ``size`` on the long side (small frames up: the detector needs pixels per letter; on tiny
    inputs it otherwise returns the whole frame as one box, which is dropped here too)."""
    h, w = frame.shape[:2]
    s = size / max(h, w)
    img = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = _engine()(np.ascontiguousarray(img[..., ::-1]), use_det=True, use_cls=False, use_rec=False)  # BGR in
    boxes = getattr(out, "boxes", None)
    if boxes is None:
        return []
    keep = []
    for b in boxes:
        b = np.asarray(b, dtype=np.float32)
        if cv2.contourArea(b) < 0.9 * img.shape[0] * img.shape[1]:  # not the whole frame
            keep.append(b / s)
    return keep


def text_scores(frames: np.ndarray, cfg: OverlayTextConfig | None = None) -> dict:
    cfg = cfg or OverlayTextConfig()
    idx = np.linspace(0, len(frames) - 1, min(cfg.frames, len(frames))).round().astype(int)
    area, count = 0.0, 0
    h, w = frames.shape[1:3]
    for i in idx:
        boxes = text_boxes(frames[i], cfg.size)
        mask = np.zeros((h, w), np.uint8)
        for b in boxes:
            cv2.fillPoly(mask, [b.round().astype(np.int32)], 1)
        area, count = max(area, float(mask.mean())), max(count, len(boxes))
    return {"text_area": area, "text_boxes": count}


def text_decision(scores: dict, cfg: OverlayTextConfig | None = None) -> str | None:
    cfg = cfg or OverlayTextConfig()
    if scores["text_area"] > cfg.max_text_area:
        return f"overlay text: {scores['text_area']:.1%} of the frame > {cfg.max_text_area:.0%}"
    return None
