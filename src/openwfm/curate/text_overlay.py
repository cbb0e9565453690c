"""Overlay-text filter (Cosmos paper sec. 3.2: clips with excessive text overlays are removed).

Text is found by the PP-OCR networks that PyPI's ``rapidocr`` ships as ONNX: detection proposes boxes,
and recognition must read each one as text (confidence >= ``min_confidence``, at least ``min_chars``
letters or digits) for it to count. Detection alone fires on textures and objects: on opencv-doc's
cup.mp4 (a hand turning a bottle, no overlay) it boxed 75 % of the frame, which recognition reads as one
character at 0.59; a burned-in subtitle reads back verbatim at 0.98. Two scores decide: the largest
fraction of the frame covered by read text over a few sampled frames (much text), and the fraction covered by
text read at the same place in every sampled frame (burned-in: subtitles, captions and logos stay put while
the scene changes; scene text in a moving shot does not).
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
    # burned-in text (subtitles, captions, logos) stays put while the scene changes: read text found at the
    # same place (box IoU >= 0.5) in every sampled frame, over this fraction of the frame: dropped (0: off)
    max_persistent_area: float = 0.003
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


def _rect(quad: np.ndarray) -> tuple[float, float, float, float]:
    return float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max())


def _iou(a: tuple, b: tuple) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _same_place(a: tuple, b: tuple, height: int) -> bool:
    """Two text boxes of different frames at the same place: overlapping (IoU >= 0.5), or, in the top or
    bottom fifth of the frame, on the same line (a ticker's text slides along its bar)."""
    if _iou(a, b) >= 0.5:
        return True
    edge = max(a[3], b[3]) <= 0.2 * height or min(a[1], b[1]) >= 0.8 * height
    inter = min(a[3], b[3]) - max(a[1], b[1])
    return edge and inter > 0.7 * max(a[3] - a[1], b[3] - b[1])


def text_scores(frames: np.ndarray, cfg: OverlayTextConfig | None = None) -> dict:
    """``text_area``: the largest fraction of a sampled frame covered by read text; ``text_boxes``: the most
    boxes in one frame; ``persistent_text``: the fraction covered by text read at the same place in every
    sampled frame (burned-in overlays stay put, tickers stay on their line; with a single sampled frame,
    all its text)."""
    cfg = cfg or OverlayTextConfig()
    idx = np.linspace(0, len(frames) - 1, min(cfg.frames, len(frames))).round().astype(int)
    area, count = 0.0, 0
    h, w = frames.shape[1:3]
    per_frame = []
    for i in idx:
        boxes = text_boxes(frames[i], cfg.size, cfg.min_confidence, cfg.min_chars)
        per_frame.append(boxes)
        mask = np.zeros((h, w), np.uint8)
        for b in boxes:
            cv2.fillPoly(mask, [b.round().astype(np.int32)], 1)
        area, count = max(area, float(mask.mean())), max(count, len(boxes))
    mask = np.zeros((h, w), np.uint8)
    for b in per_frame[0] if per_frame else []:
        if all(any(_same_place(_rect(b), _rect(o), h) for o in others) for others in per_frame[1:]):
            cv2.fillPoly(mask, [b.round().astype(np.int32)], 1)
    return {"text_area": area, "text_boxes": count, "persistent_text": float(mask.mean())}


def text_decision(scores: dict, cfg: OverlayTextConfig | None = None) -> str | None:
    cfg = cfg or OverlayTextConfig()
    if scores["text_area"] > cfg.max_text_area:
        return f"overlay text: {scores['text_area']:.1%} of the frame > {cfg.max_text_area:.0%}"
    if cfg.max_persistent_area and scores.get("persistent_text", 0.0) > cfg.max_persistent_area:
        return (f"burned-in text: {scores['persistent_text']:.2%} of the frame stays in place over the clip "
                f"(> {cfg.max_persistent_area:.1%})")
    return None
