"""Shot splitting: find transitions, turn the shots between them into clips (Cosmos paper sec. 3.1).

The classical detector here works on 48x27 frames (TransNetV2's input size):
- hard cut at frame t: the change d1[t] = mean |f_t - f_{t-1}| stands out against its neighborhood
  (> ``cut_ratio`` x the local median and > ``cut_min``), unless the picture comes back within a few
  frames (a flash: the frames after the spike look like the one before it);
- gradual transition (dissolve, wipe) around t: the long-range change dk[t] = |f_{t+k} - f_{t-k}| is large
  and *coherent* — close to the sum of the per-frame changes in between, which is what a blend of two
  shots gives and what camera motion (changes that go back and forth) does not — and the middle frame is
  close to the mean of the two ends (true of a cross-fade, not of an object moving across the frame);
- fade: a run of near-uniform frames (near black or white) between two shots.
Clip rules (``ClipRules``): trim the ends, split long shots, drop short ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from openwfm.curate.transitions import Transition


@dataclass
class SplitConfig:
    detector: str = "learned"  # learned (ShotNet, shotnet.py) | classical (this module)
    cut_ratio: float = 3.0  # a cut's change vs the local median change
    cut_min: float = 0.08  # and at least this much (mean |diff| of [0, 1] frames)
    window: int = 8  # frames each side for the local median / the long-range change
    flash_return: float = 0.5  # a spike whose after-frames differ from the before-frame by less than this
    #                            fraction of the spike is a flash, not a cut
    gradual_min: float = 0.12  # long-range change of a gradual transition
    coherence: float = 0.6  # long-range change / summed per-frame change, for a gradual transition
    blend: float = 0.35  # and the middle frame is the mean of the ends within this fraction of that change
    fade_std: float = 0.03  # a frame this uniform (std of [0, 1] values) is a fade frame
    size: tuple[int, int] = (27, 48)  # (h, w) the detector works at
    chunk: int = 4096  # frames a long video is scanned in (each with ``context`` more on both sides):
    context: int = 64  # memory is bounded by the chunk, not the video's length


@dataclass
class ClipRules:
    min_seconds: float = 2.0  # shorter clips are dropped
    max_seconds: float = 60.0  # longer shots are split into equal parts no longer than this
    trim_seconds: float = 0.5  # cut from each end of every shot (transitions bleed into shots)


def small_frames(frames: np.ndarray, size: tuple[int, int] = (27, 48)) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 (T, h, w, 3) in [0, 1] at the detector's size."""
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32) / 255


def detect(frames: np.ndarray, cfg: SplitConfig | None = None) -> list[Transition]:
    """Transitions in uint8 (T, H, W, 3) frames (or frames already at the detector's size, float)."""
    cfg = cfg or SplitConfig()
    f = frames if frames.dtype == np.float32 and frames.shape[1:3] == cfg.size else small_frames(frames, cfg.size)
    t = len(f)
    if t < 3:
        return []
    f = f.copy()
    d1 = _changes(f)
    found: list[Transition] = []
    w = cfg.window
    for i in range(1, t):  # hard cuts, and flashes (removed from f so that later tests do not see them)
        lo, hi = max(1, i - w), min(t, i + w + 1)
        neigh = np.concatenate([d1[lo:i], d1[i + 1:hi]])
        base = float(np.median(neigh)) if len(neigh) else 0.0
        if d1[i] < cfg.cut_min or d1[i] < cfg.cut_ratio * base:
            continue
        pairs = [(np.abs(f[j] - f[m]).mean(), m, j) for m in range(max(0, i - 4), i) for j in range(i, min(t, i + 4))
                 if (m, j) != (i - 1, i)]
        agree = min(pairs) if pairs else None
        if agree is not None and agree[0] < cfg.flash_return * d1[i]:
            _, m, j = agree  # a frame on each side of the spike agree: a flash; hold the frame before it
            f[m + 1:j] = f[m]
            d1 = _changes(f)
            continue
        found.append(Transition(i, i, "cut"))

    # fades: runs of near-uniform frames with other content after them than before
    flat = f.std(axis=(1, 2, 3)) < cfg.fade_std
    i = 0
    while i < t:
        if flat[i]:
            j = i
            while j + 1 < t and flat[j + 1]:
                j += 1
            a, b = f[max(0, i - 3)], f[min(t - 1, j + 3)]
            if 0 < i and j < t - 1 and np.abs(a - b).mean() > cfg.cut_min:
                tr = Transition(max(0, i - 2), min(t - 1, j + 2), "fade")  # cuts into and out of the dip are it
                found = [o for o in found if not tr.start - 4 <= o.start <= tr.end + 4] + [tr]
            i = j + 1
        else:
            i += 1

    k = w  # gradual: coherent long-range change, away from the cuts and fades found
    score = np.zeros(t, dtype=np.float32)
    for i in range(k, t - k):
        dk = np.abs(f[i + k] - f[i - k]).mean()
        total = d1[i - k + 1:i + k + 1].sum()
        if dk > cfg.gradual_min and total > 0 and dk / total > cfg.coherence:
            blend = np.abs(f[i] - (f[i - k] + f[i + k]) / 2).mean()  # a cross-fade's middle is the mean of its ends
            if blend < cfg.blend * dk:
                score[i] = dk
    i = 0
    while i < t:
        if score[i] > 0:
            j = i
            while j + 1 < t and score[j + 1] > 0:
                j += 1
            mid = i + int(np.argmax(score[i:j + 1]))
            tr = Transition(max(0, mid - k // 2), min(t - 1, mid + k // 2), "gradual")
            if not any(o.start - k <= mid <= o.end + k for o in found):
                found.append(tr)
            i = j + 1
        else:
            i += 1
    return sorted(found, key=lambda tr: tr.start)


def _changes(f: np.ndarray) -> np.ndarray:
    """d1[t] = mean |f_t - f_{t-1}| (d1[0] = 0)."""
    d1 = np.zeros(len(f), dtype=np.float32)
    d1[1:] = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))
    return d1


def find_transitions(small: np.ndarray, cfg: SplitConfig | None = None) -> list[Transition]:
    """Transitions of frames at the detector's size (uint8, or float32 in [0, 1]), with the configured
    detector (the classical one when the learned one's weights are not installed)."""
    cfg = cfg or SplitConfig()
    if cfg.detector == "learned":
        from openwfm.curate.shotnet import WEIGHTS, detect_learned

        if (WEIGHTS / "model.safetensors").is_file():
            return detect_learned(small if small.dtype == np.uint8 else (small * 255).round().astype(np.uint8))
    elif cfg.detector != "classical":
        raise ValueError(f"split.detector must be 'learned' or 'classical', got '{cfg.detector}'")
    return detect(small.astype(np.float32) / 255 if small.dtype == np.uint8 else small, cfg)


def stream_transitions(frames: Iterable[np.ndarray], cfg: SplitConfig | None = None
                       ) -> tuple[list[Transition], int]:
    """Transitions and frame count of a stream of uint8 (h, w, 3) frames at the detector's size, scanned
    in chunks of ``cfg.chunk`` frames that see ``cfg.context`` frames of their neighbours on each side (more
    than either detector looks at); a transition belongs to the chunk its first frame lies in. Memory holds
    one chunk and its context whatever the video's length; a video of at most ``chunk + context`` frames
    is scanned whole (``find_transitions``)."""
    cfg = cfg or SplitConfig()
    if cfg.chunk < 1 or cfg.context < 0:
        raise ValueError(f"split.chunk must be >= 1 and split.context >= 0, got {cfg.chunk} and {cfg.context}")
    buf: list[np.ndarray] = []  # frames offset .. offset + len(buf) - 1
    offset = core = 0  # core: the first frame whose transitions are not decided yet
    found: list[Transition] = []

    def scan(end: int | None) -> None:  # decide the transitions starting in [core, end); None: the rest
        nonlocal buf, offset, core
        for tr in find_transitions(np.stack(buf), cfg):
            start = tr.start + offset
            if start >= core and (end is None or start < end):
                found.append(Transition(start, tr.end + offset, tr.kind))
        if end is not None:
            drop = max(0, end - cfg.context - offset)
            buf, offset, core = buf[drop:], offset + drop, end

    for f in frames:
        buf.append(f)
        if offset + len(buf) >= core + cfg.chunk + cfg.context:
            scan(core + cfg.chunk)
    if buf:
        scan(None)
    return found, offset + len(buf)


def shots(num_frames: int, transitions: list[Transition]) -> list[tuple[int, int]]:
    """[start, end) frame ranges between transitions (transition frames belong to no shot)."""
    out, start = [], 0
    for tr in sorted(transitions, key=lambda x: x.start):
        if tr.start > start:
            out.append((start, tr.start))
        start = tr.start if tr.kind == "cut" else tr.end + 1
    if num_frames > start:
        out.append((start, num_frames))
    return out


def clips(shot_ranges: list[tuple[int, int]], fps: float, rules: ClipRules | None = None
          ) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
    """Apply the clip rules to shots: (kept [start, end) ranges, dropped (start, end, reason))."""
    rules = rules or ClipRules()
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    trim, lo, hi = round(rules.trim_seconds * fps), rules.min_seconds * fps, rules.max_seconds * fps
    kept, dropped = [], []
    for s, e in shot_ranges:
        s2, e2 = s + trim, e - trim
        if e2 - s2 < lo:
            dropped.append((s, e, f"shorter than {rules.min_seconds:g} s after trimming {rules.trim_seconds:g} s "
                                  f"at each end ({max(0, e2 - s2) / fps:.2f} s)"))
            continue
        parts = int(np.ceil((e2 - s2) / hi))
        edges = np.linspace(s2, e2, parts + 1).round().astype(int)
        kept += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return kept, dropped
