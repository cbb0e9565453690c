"""Overlay-text filter (Cosmos paper sec. 3.2: clips with excessive text overlays are removed).

Text is found by the PP-OCR networks that PyPI's ``rapidocr`` ships as ONNX: detection proposes boxes,
and recognition must read each one as text (confidence >= ``min_confidence``, at least ``min_chars``
letters or digits) for it to count. Detection alone fires on textures and objects: on opencv-doc's
cup.mp4 (a hand turning a bottle, no overlay) it boxed 75 % of the frame, which recognition reads as one
character at 0.59; a burned-in subtitle reads back verbatim at 0.98. The score is the largest fraction
of the frame covered by read text boxes over a few sampled frames.
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
    min_confidence: float = 0.8  # a detected box counts when recognition reads it this confidently
    min_chars: int = 2  # ... as at least this many letters or digits


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


def text_boxes(frame: np.ndarray, size: int = 640, min_confidence: float = 0.8, min_chars: int = 2
               ) -> list[np.ndarray]:
    """Quadrilaterals (4, 2) of the text found and read in a frame, in its pixel coordinates. Frames are
    scaled to ``size`` on the long side (small frames up: the detector needs pixels per letter; on tiny
    inputs it otherwise returns the whole frame as one box, which is dropped here too)."""
    h, w = frame.shape[:2]
    s = size / max(h, w)
    img = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = _engine()(np.ascontiguousarray(img[..., ::-1]), use_det=True, use_cls=False, use_rec=True)  # BGR in
    boxes = getattr(out, "boxes", None)
    if boxes is None:
        return []
    keep = []
    for b, txt, conf in zip(boxes, out.txts or [], out.scores or []):
        b = np.asarray(b, dtype=np.float32)
        readable = conf >= min_confidence and sum(c.isalnum() for c in txt) >= min_chars
        if readable and cv2.contourArea(b) < 0.9 * img.shape[0] * img.shape[1]:  # read, and not the whole frame
            keep.append(b / s)
    return keep


def text_scores(frames: np.ndarray, cfg: OverlayTextConfig | None = None) -> dict:
    cfg = cfg or OverlayTextConfig()
    idx = np.linspace(0, len(frames) - 1, min(cfg.frames, len(frames))).round().astype(int)
    area, count = 0.0, 0
    h, w = frames.shape[1:3]
    for i in idx:
        boxes = text_boxes(frames[i], cfg.size, cfg.min_confidence, cfg.min_chars)
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
