"""Synthetic shot transitions with ground truth, for training and testing shot-boundary detectors.

Segments of real or simulated footage are joined by hard cuts, dissolves (cross-fades), fades through
black or white, and wipes; distractors that are *not* boundaries are added inside segments: flashes
(a few frames brightened) and fast motion (a shaky, zooming crop). Labels are per frame: 1 on the frames
of a transition (for a cut: the first frame of the new shot), 0 elsewhere, plus the list of
transitions as ``(first_frame, last_frame, kind)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("cut", "dissolve", "fade", "wipe")


@dataclass
class Transition:
    start: int  # first frame of the transition (for a cut: the first frame of the new shot)
    end: int  # last frame of the transition (== start for a cut)
    kind: str


def _fit(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def flash(frames: np.ndarray, at: int, length: int, gain: float = 2.5) -> np.ndarray:
    """Brighten ``length`` frames from ``at`` (a camera flash): not a shot boundary."""
    out = frames.copy()
    seg = out[at:at + length].astype(np.float32) * gain + 60
    out[at:at + length] = np.clip(seg, 0, 255).astype(np.uint8)
    return out


def fast_motion(frames: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """A fast, smooth pan and zoom over every frame (a moving camera, sub-pixel): not a shot boundary."""
    t, h, w = frames.shape[:3]
    out = np.empty_like(frames)
    z0, dz = 1 + strength, strength * rng.uniform(-0.5, 0.5) / max(t, 1)
    vy, vx = rng.uniform(-1, 1, 2)
    for i in range(t):
        z = z0 + dz * i
        # the view sweeps back and forth over the margin the zoom leaves, a few frames per sweep
        ty = (0.5 * np.sin(vy * i / 4)) * h * (1 - 1 / z)
        tx = (0.5 * np.sin(vx * i / 4 + 1)) * w * (1 - 1 / z)
        m = np.array([[z, 0, (1 - z) * w / 2 - tx * z], [0, z, (1 - z) * h / 2 - ty * z]], dtype=np.float64)
        out[i] = cv2.warpAffine(frames[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def join(segments: list[np.ndarray], kinds: list[str], lengths: list[int], h: int, w: int,
         rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[Transition]]:
    """Join ``segments`` (uint8 (T, H, W, 3) each) with ``kinds[i]`` between segment i and i + 1 (gradual
    ones take ``lengths[i]`` frames, overlapping the two segments' ends)."""
    rng = rng or np.random.default_rng(0)
    if len(kinds) != len(segments) - 1 or len(lengths) != len(kinds):
        raise ValueError("need one transition kind and length between each pair of segments")
    out = _fit(segments[0], h, w)
    trans: list[Transition] = []
    for seg, kind, n in zip(segments[1:], kinds, lengths):
        seg = _fit(seg, h, w)
        if kind == "cut":
            trans.append(Transition(len(out), len(out), kind))
            out = np.concatenate([out, seg])
            continue
        n = max(2, min(n, len(out) - 1, len(seg) - 1))
        a, b = out[-n:].astype(np.float32), seg[:n].astype(np.float32)
        alpha = np.linspace(0, 1, n + 2)[1:-1, None, None, None]
        if kind == "dissolve":
            mid = (1 - alpha) * a + alpha * b
        elif kind == "fade":
            level = 0.0 if rng.random() < 0.7 else 255.0
            dip = 1 - np.abs(2 * alpha - 1)  # 0 -> 1 -> 0: into the color and back out
            src = np.where(alpha < 0.5, a, b)
            mid = (1 - dip) * src + dip * level
        elif kind == "wipe":
            cols = (alpha[:, 0, 0, 0] * w).astype(int)
            mid = a.copy()
            for i, c in enumerate(cols):
                mid[i, :, :c] = b[i, :, :c]
        else:
            raise ValueError(f"unknown transition '{kind}': {', '.join(KINDS)}")
        start = len(out) - n
        trans.append(Transition(start, start + n - 1, kind))
        out = np.concatenate([out[:-n], np.clip(mid, 0, 255).astype(np.uint8), seg[n:]])
    return out, trans


def labels(num_frames: int, transitions: list[Transition]) -> np.ndarray:
    y = np.zeros(num_frames, dtype=np.float32)
    for t in transitions:
        y[t.start:t.end + 1] = 1
    return y


def random_video(pool: list[np.ndarray], rng: np.random.Generator, num_segments: int = 4, h: int = 27, w: int = 48,
                 min_len: int = 20, max_len: int = 60, distractors: bool = True) -> tuple[np.ndarray, list[Transition]]:
    """Segments drawn from ``pool`` (random windows), joined by random transitions, with flashes and fast
    motion inside some segments."""
    segs = []
    for _ in range(num_segments):
        src = pool[int(rng.integers(len(pool)))]
        n = int(rng.integers(min_len, max_len + 1))
        n = min(n, len(src))
        s = int(rng.integers(0, len(src) - n + 1))
        seg = _fit(src[s:s + n], h, w)
        if distractors and rng.random() < 0.25:
            seg = fast_motion(seg, rng)
        if distractors and rng.random() < 0.25 and len(seg) > 8:
            seg = flash(seg, int(rng.integers(2, len(seg) - 4)), int(rng.integers(1, 3)))
        segs.append(seg)
    kinds = [str(rng.choice(KINDS, p=[0.55, 0.2, 0.15, 0.1])) for _ in range(num_segments - 1)]
    lengths = [int(rng.integers(6, 20)) for _ in kinds]
    return join(segs, kinds, lengths, h, w, rng)


def match(predicted: list[float], truth: list[Transition], slack: int = 2) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of predicted transition centers against the
    truth: a prediction matches an unmatched transition it falls within ``slack`` frames of."""
    matched: set[int] = set()
    for mid in predicted:
        j = next((j for j, t in enumerate(truth) if t.start - slack <= mid <= t.end + slack and j not in matched), None)
        if j is not None:
            matched.add(j)
    tp = len(matched)
    return tp, len(predicted) - tp, len(truth) - tp
