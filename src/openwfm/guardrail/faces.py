"""Face pixelation for generated video: detect on every frame, link into tracks, pixelate every frame a face is in.

Cosmos' post-guard (paper §7) blurs or pixelates every face of at least 20x20 pixels. Here faces are found
with OpenCV's Haar cascades (frontal, plus profile on the frame and its mirror) on every frame; a detector
misses faces now and then, so detections are linked across frames into tracks, gaps of up to ``max_gap``
frames are filled by interpolating the box, each track is extended by ``extend`` frames at both ends and
every box is dilated by ``margin``. Recall matters more than precision: an unpixelated face is the failure,
a pixelated patch of wall is not. Only tiny, weak one-frame blips are dropped.

Boxes are ``(N, 4)`` arrays ``x0, y0, x1, y1`` (x1, y1 exclusive) in the frame's own pixels; detections
carry a 5th column, the detector's confidence (the number of neighbouring windows that agreed).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from openwfm.guardrail.video_safety import ModelFileError

FRONTAL = ("frontalface_alt2", "frontalface_default")


@dataclass
class FaceConfig:
    """How faces are found, tracked and pixelated; sizes in pixels of the original frame."""

    min_face: int = 20  # smallest face side to find (paper §7: >= 20x20)
    cascades: tuple[str, ...] = FRONTAL  # OpenCV haarcascade_<name>.xml, frontal faces
    profile: bool = True  # also the profile cascade, on the frame and on its mirror
    scale_factor: float = 1.1  # pyramid step of the cascade scan
    min_neighbors: int = 3  # overlapping windows a detection needs
    max_side: int | None = 1280  # frames whose long side is larger are scanned downscaled to it (speed);
    # faces smaller than the cascade window / scale are then missed
    equalize: bool = True  # histogram-equalize the gray frame first
    link_iou: float = 0.2  # a detection continues a track when its IoU with the track's last box is >= this
    link_distance: float = 0.6  # ... or its centre is within this many box sides of it
    max_gap: int = 8  # missed frames inside a track that are filled by interpolation
    long_gap: int = 36  # ... for a track already detected in >= long_track frames (a confirmed face)
    long_track: int = 12
    extend: int = 3  # frames each track is extended by at both ends
    blip_size: int = 32  # a one-frame track is dropped only when its box is smaller than this
    blip_neighbors: int = 6  # ... and its confidence is below this
    margin: float = 0.2  # boxes grow by this fraction of their side on every side
    max_blocks: int = 8  # a pixelated box is at most this many blocks across
    min_block: int = 4  # smallest mosaic block side


def _cv2_threads() -> None:
    """Honour OMP_NUM_THREADS for OpenCV's own thread pool (it otherwise uses every core)."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        cv2.setNumThreads(int(n))


@functools.lru_cache(maxsize=None)
def load_cascade(name: str) -> cv2.CascadeClassifier:
    """OpenCV's bundled ``haarcascade_<name>.xml`` (or a path to a cascade xml)."""
    path = name if name.endswith(".xml") else os.path.join(cv2.data.haarcascades, f"haarcascade_{name}.xml")
    cascade = cv2.CascadeClassifier()
    if not os.path.isfile(path) or not cascade.load(path):
        raise ModelFileError(path, "face cascade is missing or unreadable")
    return cascade


def detect_scale(shape: tuple[int, ...], cfg: FaceConfig, window: int = 20) -> float:
    """The factor a frame is downscaled by before the scan: no finer than ``min_face`` needs (a face of
    ``min_face`` px becomes one cascade window), no larger than ``max_side``; never upscaled."""
    scale = min(1.0, window / max(cfg.min_face, 1))
    if cfg.max_side:
        scale = min(scale, cfg.max_side / max(shape[0], shape[1]))
    return scale


def _scan(cascade: cv2.CascadeClassifier, gray: np.ndarray, min_size: int, cfg: FaceConfig) -> np.ndarray:
    """(N, 5) boxes of one cascade on one gray image: x0, y0, x1, y1, neighbours."""
    win = cascade.getOriginalWindowSize()
    size = max(min_size, win[0], win[1])
    rects, neighbours = cascade.detectMultiScale2(gray, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
                                                  minSize=(size, size))
    if len(rects) == 0:
        return np.zeros((0, 5), np.float32)
    r = np.asarray(rects, np.float32).reshape(-1, 4)
    return np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3],
                            np.asarray(neighbours, np.float32).reshape(-1)])


def detect_faces(frame: np.ndarray, cfg: FaceConfig = FaceConfig()) -> np.ndarray:
    """Faces in one uint8 (H, W, 3) RGB frame: (N, 5) float32 boxes ``x0, y0, x1, y1, confidence`` in the
    frame's pixels, overlapping detections of all cascades merged into one box each."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got {frame.shape}")
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = detect_scale(gray.shape, cfg)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if cfg.equalize:
        gray = cv2.equalizeHist(gray)
    min_size = math.ceil(cfg.min_face * scale)
    found = [_scan(load_cascade(name), gray, min_size, cfg) for name in cfg.cascades]
    if cfg.profile:
        profile = load_cascade("profileface")
        found.append(_scan(profile, gray, min_size, cfg))
        mirrored = _scan(profile, np.ascontiguousarray(gray[:, ::-1]), min_size, cfg)
        mirrored[:, [0, 2]] = gray.shape[1] - mirrored[:, [2, 0]]
        found.append(mirrored)
    boxes = np.concatenate(found) if found else np.zeros((0, 5), np.float32)
    boxes[:, :4] /= scale
    return merge_boxes(boxes)


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas of (N, 4+) and (M, 4+) boxes, (N, M), and the two area vectors."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter, (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4+) and (M, 4+) boxes: (N, M)."""
    inter, area_a, area_b = _intersections(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _contained(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area: (N, M)."""
    inter, area_a, area_b = _intersections(a, b)
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def merge_boxes(boxes: np.ndarray, min_iou: float = 0.3, min_contained: float = 0.6) -> np.ndarray:
    """Merge boxes that overlap (IoU >= ``min_iou``, or the smaller lies >= ``min_contained`` inside the
    other) into their union; the confidence of a merged box is the largest of its parts."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, boxes.shape[-1] if boxes.size else 5)
    while len(boxes) > 1:
        near = (iou(boxes, boxes) >= min_iou) | (_contained(boxes, boxes) >= min_contained)
        np.fill_diagonal(near, False)
        pairs = np.argwhere(np.triu(near))
        if len(pairs) == 0:
            break
        i, j = pairs[0]
        union = np.concatenate([np.minimum(boxes[i, :2], boxes[j, :2]), np.maximum(boxes[i, 2:4], boxes[j, 2:4]),
                                np.maximum(boxes[i, 4:], boxes[j, 4:])])
        boxes = np.concatenate([np.delete(boxes, [i, j], axis=0), union[None]])
    return boxes


def _link(per_frame: list[np.ndarray], cfg: FaceConfig) -> list[dict[int, np.ndarray]]:
    """Greedy frame-to-frame association: each track maps frame index -> (5,) box with confidence."""
    tracks: list[dict[int, np.ndarray]] = []
    for t, boxes in enumerate(per_frame):
        boxes = np.asarray(boxes, np.float32).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 4)
        if boxes.shape[1] == 4:  # no confidence: treat as confident
            boxes = np.column_stack([boxes, np.full(len(boxes), np.inf, np.float32)])
        live = [k for k, tr in enumerate(tracks)
                if t - max(tr) <= (cfg.long_gap if len(tr) >= cfg.long_track else cfg.max_gap) + 1]
        pairs = []
        if live and len(boxes):
            last = np.stack([tracks[k][max(tracks[k])] for k in live])
            overlap = iou(last, boxes)
            side = 0.5 * ((last[:, None, 2] - last[:, None, 0] + last[:, None, 3] - last[:, None, 1]) / 2
                          + (boxes[None, :, 2] - boxes[None, :, 0] + boxes[None, :, 3] - boxes[None, :, 1]) / 2)
            dx = (last[:, None, 0] + last[:, None, 2] - boxes[None, :, 0] - boxes[None, :, 2]) / 2
            dy = (last[:, None, 1] + last[:, None, 3] - boxes[None, :, 1] - boxes[None, :, 3]) / 2
            dist = np.hypot(dx, dy) / np.maximum(side, 1e-9)
            ok = (overlap >= cfg.link_iou) | (dist <= cfg.link_distance)
            pairs = sorted((-overlap[i, j], dist[i, j], i, j) for i, j in np.argwhere(ok))
        used_tracks, used_boxes = set(), set()
        for _, _, i, j in pairs:
            if i in used_tracks or j in used_boxes:
                continue
            used_tracks.add(i)
            used_boxes.add(j)
            tracks[live[i]][t] = boxes[j]
        tracks += [{t: boxes[j]} for j in range(len(boxes)) if j not in used_boxes]
    return tracks


def _is_blip(track: dict[int, np.ndarray], cfg: FaceConfig) -> bool:
    """A one-frame track that is both small and weak (a larger or confident one-frame face is kept)."""
    if len(track) > 1:
        return False
    box = next(iter(track.values()))
    side = min(box[2] - box[0], box[3] - box[1])
    return bool(side < cfg.blip_size and box[4] < cfg.blip_neighbors)


def face_tracks(per_frame_boxes: list[np.ndarray], cfg: FaceConfig = FaceConfig()) -> list[dict[int, np.ndarray]]:
    """Link detections into tracks (frame index -> box), drop small weak one-frame blips, fill gaps of
    <= ``max_gap`` frames (``long_gap`` once a track has ``long_track`` detections) by linear interpolation
    and extend each track by ``extend`` frames at both ends."""
    n = len(per_frame_boxes)
    tracks = []
    for track in _link(per_frame_boxes, cfg):
        if _is_blip(track, cfg):
            continue
        seen = sorted(track)
        for a, b in zip(seen, seen[1:]):
            for t in range(a + 1, b):
                u = (t - a) / (b - a)
                track[t] = (1 - u) * track[a] + u * track[b]
        for t in range(max(0, seen[0] - cfg.extend), seen[0]):
            track[t] = track[seen[0]]
        for t in range(seen[-1] + 1, min(n, seen[-1] + 1 + cfg.extend)):
            track[t] = track[seen[-1]]
        tracks.append(track)
    return tracks


def render_tracks(tracks: list[dict[int, np.ndarray]], num_frames: int, margin: float) -> list[np.ndarray]:
    """Tracks -> per-frame (N, 4) int32 boxes, each dilated by ``margin``."""
    out: list[list[np.ndarray]] = [[] for _ in range(num_frames)]
    for track in tracks:
        for t, box in track.items():
            out[t].append(dilate(box[:4], margin))
    return [np.array(b, np.int32).reshape(-1, 4) for b in out]


def smooth_tracks(per_frame_boxes: list[np.ndarray], cfg: FaceConfig = FaceConfig()) -> list[np.ndarray]:
    """Per-frame detections -> per-frame boxes to pixelate, (N, 4) int32 each: ``face_tracks`` then every
    box dilated by ``margin`` (boxes may leave the frame; ``pixelate`` clips them)."""
    return render_tracks(face_tracks(per_frame_boxes, cfg), len(per_frame_boxes), cfg.margin)


def dilate(box: np.ndarray, margin: float) -> np.ndarray:
    """Grow an ``x0, y0, x1, y1`` box by ``margin`` of its width / height on every side, rounding outwards."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return np.array([math.floor(x0 - mx), math.floor(y0 - my), math.ceil(x1 + mx), math.ceil(y1 + my)])


def block_size(w: int, h: int, cfg: FaceConfig = FaceConfig()) -> int:
    """Mosaic block side for a w x h box: at most ``max_blocks`` blocks across, never below ``min_block``."""
    return max(cfg.min_block, math.ceil(max(w, h) / max(cfg.max_blocks, 1)))


def pixelate(frame: np.ndarray, boxes: np.ndarray, cfg: FaceConfig = FaceConfig()) -> np.ndarray:
    """A copy of ``frame`` with each box (clipped to the frame) replaced by a mosaic: blocks anchored at the
    box's corner, each filled with its mean colour. Pixels outside the boxes are untouched."""
    out = frame.copy()
    h, w = frame.shape[:2]
    for box in np.asarray(boxes).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 4):
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        if x1 <= x0 or y1 <= y0:
            continue
        b = block_size(x1 - x0, y1 - y0, cfg)
        region = out[y0:y1, x0:x1].astype(np.float64)
        rows, cols = np.arange(0, y1 - y0, b), np.arange(0, x1 - x0, b)
        sums = np.add.reduceat(np.add.reduceat(region, rows, axis=0), cols, axis=1)
        counts = np.outer(np.diff(np.append(rows, y1 - y0)), np.diff(np.append(cols, x1 - x0)))
        means = np.rint(sums / counts[..., None]).astype(frame.dtype)
        out[y0:y1, x0:x1] = np.repeat(np.repeat(means, b, axis=0), b, axis=1)[: y1 - y0, : x1 - x0]
    return out


class FaceBlur:
    """Detect faces on every frame, smooth the tracks, pixelate (paper §7's face blur)."""

    def __init__(self, cfg: FaceConfig = FaceConfig()):
        self.cfg = cfg
        self.last_tracks = 0  # face tracks found by the last ``apply``
        _cv2_threads()

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """Raw detections of every frame of uint8 (T, H, W, 3) RGB frames."""
        return [detect_faces(f, self.cfg) for f in frames]

    def apply(self, frames: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Pixelated frames (the input array itself when no face was found) and the (N, 4) boxes pixelated
        in each frame."""
        return self.apply_detections(frames, self.detect(frames))

    def apply_detections(self, frames: np.ndarray, detections: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``apply`` with the per-frame detections already made."""
        tracks = face_tracks(detections, self.cfg)
        self.last_tracks = len(tracks)
        boxes = render_tracks(tracks, len(frames), self.cfg.margin)
        if not any(len(b) for b in boxes):
            return frames, boxes
        out = frames.copy()
        for t, b in enumerate(boxes):
            if len(b):
                out[t] = pixelate(frames[t], b, self.cfg)
        return out, boxes
