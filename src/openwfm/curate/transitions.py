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


def shake(frames: np.ndarray, rng: np.random.Generator, pixels: float = 0.06) -> np.ndarray:
    """Hand-held jitter: every frame shifted at random by up to ``pixels`` x the frame size (not a boundary)."""
    t, h, w = frames.shape[:3]
    out = np.empty_like(frames)
    for i in range(t):
        dx, dy = rng.uniform(-pixels, pixels, 2) * (w, h)
        m = np.array([[1.0, 0, dx], [0, 1.0, dy]])
        out[i] = cv2.warpAffine(frames[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def occluder(frames: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Something passing close to the camera: a large ``patch`` (uint8 (h', w', 3)) sweeps across the frame in
    a few frames and leaves the same shot behind it (not a boundary, though it can cover most of a frame)."""
    t, h, w = frames.shape[:3]
    out = frames.copy()
    ph, pw = min(h, patch.shape[0]), min(w, patch.shape[1])
    n = int(rng.integers(3, 10))
    start = int(rng.integers(0, max(1, t - n)))
    y = int(rng.integers(0, h - ph + 1))
    xs = np.linspace(-pw, w, n + 2)[1:-1].astype(int)
    if rng.random() < 0.5:
        xs = xs[::-1]
    for i, x in enumerate(xs):
        if start + i >= t:
            break
        a, b = max(0, x), min(w, x + pw)
        if b > a:
            out[start + i, y:y + ph, a:b] = patch[:ph, a - x:b - x]
    return out


def exposure(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth exposure or white-balance drift over the segment (a camera adapting): not a fade."""
    t = len(frames)
    gain = np.linspace(1, rng.uniform(0.5, 1.6), t)[:, None, None, None] * rng.uniform(0.85, 1.15, 3)
    return np.clip(frames.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def particles(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Snow, rain, bubbles or dust: many bright or dark specks at new places every frame over the whole
    segment (the picture churns, the shot goes on): not a boundary."""
    t, h, w = frames.shape[:3]
    out = frames.copy()
    n, level = int(rng.integers(h * w // 40, h * w // 6)), 255 if rng.random() < 0.7 else 0
    for i in range(t):
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        a = rng.uniform(0.3, 1.0, (n, 1))
        out[i, ys, xs] = (out[i, ys, xs] * (1 - a) + level * a).astype(np.uint8)
    return out


def turbulence(frames: np.ndarray, rng: np.random.Generator, pixels: float = 0.025) -> np.ndarray:
    """Churning water or heat haze: every frame warped by its own smooth random displacement of up to
    ``pixels`` x the frame size: not a boundary."""
    t, h, w = frames.shape[:3]
    out = np.empty_like(frames)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(t):
        d = rng.normal(0, 1, (2, 4, 6)).astype(np.float32)
        dy, dx = (cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) * pixels * s for c, s in zip(d, (h, w)))
        out[i] = cv2.remap(frames[i], gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def flicker(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Old film, fluorescent light or a noisy sensor: a random gain and noise on every frame: not a boundary."""
    gain = rng.uniform(0.8, 1.2, (len(frames), 1, 1, 1))
    noise = rng.normal(0, rng.uniform(2, 12), frames.shape)
    return np.clip(frames.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)


def reframe(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same scene seen through another frame (a punch-in after the shot it comes from): a fixed crop of
    1/1.3 to 1/1.8 of the frame, scaled back up. A cut *to* it is a shot boundary, however alike the two
    pictures look."""
    t, h, w = frames.shape[:3]
    z = rng.uniform(1.3, 1.8)
    ch, cw = int(h / z), int(w / z)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.stack([cv2.resize(f[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])


def random_video(pool: list[np.ndarray], rng: np.random.Generator, num_segments: int = 4, h: int = 27, w: int = 48,
                 min_len: int = 20, max_len: int = 60, distractors: bool = True,
                 hard: bool = False) -> tuple[np.ndarray, list[Transition]]:
    """Segments drawn from ``pool`` (random windows), joined by random transitions, with flashes and fast
    motion inside some segments. ``hard`` (training): also cuts to a look-alike shot (one of the three
    closest in mean colour) or to another framing of the same shot (``reframe``: a jump cut), segments
    played 2-3x faster, hand-held shake, things passing close to the camera, exposure drifts, and churning
    pictures (particles, turbulence, flicker)."""
    segs, src_i = [], int(rng.integers(len(pool)))
    looks = np.stack([p[0].reshape(-1, 3).mean(0) for p in pool]) if hard else None
    for k in range(num_segments):
        jump = bool(k and hard and rng.random() < 0.1)  # hard: another framing of the same scene
        if k and not jump and hard and rng.random() < 0.25 and len(pool) > 1:  # a quarter: a look-alike shot
            dist = np.abs(looks - looks[src_i]).sum(1)
            dist[src_i] = np.inf
            src_i = int(rng.choice(np.argsort(dist)[:3]))
        elif k and not jump:
            src_i = int(rng.integers(len(pool)))
        src = pool[src_i]
        stride = int(rng.choice([1, 1, 1, 2, 3])) if hard else 1
        n = int(rng.integers(min_len, max_len + 1))
        n = min(n, len(src) // stride)
        s = int(rng.integers(0, len(src) - n * stride + 1))
        seg = _fit(src[s:s + n * stride:stride], h, w)
        if jump:
            seg = reframe(seg, rng)
        if distractors and rng.random() < 0.25:
            seg = fast_motion(seg, rng)
        if distractors and rng.random() < 0.25 and len(seg) > 8:
            seg = flash(seg, int(rng.integers(2, len(seg) - 4)), int(rng.integers(1, 3)))
        if hard and rng.random() < 0.2:
            seg = shake(seg, rng)
        if hard and rng.random() < 0.15:
            other = _fit(pool[int(rng.integers(len(pool)))][:1], h, w)[0]
            ph, pw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.2, 0.6))
            seg = occluder(seg, other[:ph, :pw], rng)
        if hard and rng.random() < 0.15:
            seg = exposure(seg, rng)
        if hard and rng.random() < 0.12:
            seg = particles(seg, rng)
        if hard and rng.random() < 0.12:
            seg = turbulence(seg, rng)
        if hard and rng.random() < 0.1:
            seg = flicker(seg, rng)
        segs.append(seg)
    kinds = [str(rng.choice(KINDS, p=[0.55, 0.2, 0.15, 0.1])) for _ in range(num_segments - 1)]
    lengths = [int(rng.integers(6, 20)) for _ in kinds]
    return join(segs, kinds, lengths, h, w, rng)


def footage_pieces(videos: dict[str, tuple[str, np.ndarray, list[int]]], size: tuple[int, int], piece: int = 90,
                   min_len: int = 12) -> list[tuple[str, str, np.ndarray]]:
    """Pieces ``(source, family, frames)`` of at most ``piece`` frames, resized to ``size`` (h, w), of
    ``videos`` ``{source: (family, uint8 frames, frames where the source itself cuts)}``: no piece spans a cut."""
    out = []
    for name, (family, frames, cuts) in sorted(videos.items()):
        frames = _fit(frames, *size)
        bounds = [0, *cuts, len(frames)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            for s in range(a, b, piece):
                if min(b, s + piece) - s >= min_len:
                    out.append((name, family, frames[s:min(b, s + piece)]))
    return out


def edited_video(pool: list[tuple[str, str, np.ndarray]], rng: np.random.Generator, h: int, w: int
                 ) -> tuple[np.ndarray, list[Transition]]:
    """An edited video of 4-6 pieces of ``pool`` (``footage_pieces``), each from another source than the one
    before it, joined by cuts (a third of them to a look-alike source of the same family where there is one,
    labeled ``cut (look-alike)``), dissolves, fades and wipes, with fast camera motion and flashes inside a
    quarter of the pieces each. A gradual transition takes at most a third of either piece, so transitions
    never overlap. Two moments of one source are never joined: in a static-camera recording that "cut" can
    be a ball moving a few pixels, no shot boundary. (The held-out benchmark and the detector's calibration.)"""
    n = int(rng.integers(4, 7))
    kinds = [str(rng.choice(KINDS, p=[0.5, 0.2, 0.18, 0.12])) for _ in range(n - 1)]
    picks, similar = [int(rng.integers(len(pool)))], []
    for k in kinds:
        name, fam = pool[picks[-1]][:2]
        alike = [i for i, p in enumerate(pool) if p[1] == fam and p[0] != name]
        other = [i for i, p in enumerate(pool) if p[0] != name] or list(range(len(pool)))
        sim = k == "cut" and bool(alike) and rng.random() < 1 / 3
        similar.append(sim)
        picks.append(int(rng.choice(alike if sim else other)))
    segs = []
    for i in picks:
        seg = pool[i][2]
        length = int(rng.integers(min(20, len(seg)), len(seg) + 1))
        s = int(rng.integers(0, len(seg) - length + 1))
        seg = seg[s:s + length]
        if rng.random() < 0.25:
            seg = fast_motion(seg, rng)
        if rng.random() < 0.25 and len(seg) > 10:
            seg = flash(seg, int(rng.integers(3, len(seg) - 5)), int(rng.integers(1, 3)))
        segs.append(seg)
    lengths = [max(2, min(int(rng.integers(8, 20)), len(a) // 3, len(b) // 3)) for a, b in zip(segs, segs[1:])]
    video, truth = join(segs, kinds, lengths, h, w, rng)
    return video, [Transition(t.start, t.end, "cut (look-alike)" if s else t.kind) for t, s in zip(truth, similar)]


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
