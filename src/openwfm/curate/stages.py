"""The per-input work of the curator, as plain functions an engine (local or Ray) calls.

``process_input(path, cfg, out_dir)`` splits one video into shots, cuts clips by the clip rules,
transcodes each kept clip to ``out_dir/clips/<id>.mp4`` (atomically), runs the filters, captions and
embeds it, and returns the manifest records of the input and its clips — it writes no manifest itself,
so every engine produces the same records. A clip that fails is recorded as failed with its error; an
input that cannot be read is recorded as failed (quarantined) and never stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from openwfm.curate.motion import MotionConfig, motion_decision, motion_scores
from openwfm.curate.quality import QualityConfig, quality_decision, quality_scores
from openwfm.curate.split import ClipRules, SplitConfig, clips, find_transitions, shots
from openwfm.curate.text_overlay import TextConfig, text_decision, text_scores
from openwfm.curate.videotype import TypeConfig

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


@dataclass
class CurateConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    rules: ClipRules = field(default_factory=ClipRules)
    motion: MotionConfig = field(default_factory=MotionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    text: TextConfig = field(default_factory=TextConfig)
    text_filter: bool = True  # OCR-based overlay-text filter (rapidocr)
    type: TypeConfig = field(default_factory=TypeConfig)
    type_filter: bool = True  # video-type classifier (skipped when its weights are not installed)
    fps: float = 0.0  # transcode frame rate (0: keep the source's)
    short_side: int = 256  # transcode size (0: keep)
    crf: int = 18
    caption_model: str = ""  # local vision-language model directory ("" = template captions)
    dedup_threshold: float = 0.95  # cosine similarity of near-duplicates
    shard_maxcount: int = 500
    seed: int = 0


def input_id(path: str | os.PathLike) -> str:
    """Stable id of an input: its file stem and a hash of its absolute path."""
    p = Path(path).resolve()
    stem = "".join(c if c.isalnum() else "_" for c in p.stem)[:40] or "video"
    return f"{stem}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"


def find_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Video files named, or found (recursively, sorted) in the directories named."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_SUFFIXES and q.is_file())
        else:
            out.append(p)
    return out


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV -> RGB (what FFmpeg's default conversion does), uint8."""
    yy = 1.164 * (y.astype(np.float32) - 16)
    uu, vv = u.astype(np.float32) - 128, v.astype(np.float32) - 128
    rgb = np.stack([yy + 1.596 * vv, yy - 0.392 * uu - 0.813 * vv, yy + 2.017 * uu], -1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def small_frames_of(path: str | os.PathLike, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Every frame of a video at the detector's size (h, w), float32 in [0, 1], and its frame rate;
    decoded once, in order. 4:2:0 frames are scaled plane by plane (area averaging) and converted to RGB
    at the small size: converting full frames first costs ~10x the decode itself."""
    h, w = size
    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        for frame in c.decode(stream):
            if frame.format.name in ("yuv420p", "yuvj420p") and frame.height % 2 == 0 and frame.width % 2 == 0:
                planes = frame.to_ndarray()  # (H * 3/2, W): Y, then U and V quarter planes
                fh, fw = frame.height, frame.width
                y = cv2.resize(planes[:fh], (w, h), interpolation=cv2.INTER_AREA)
                uv = planes[fh:].reshape(2, fh // 2, fw // 2)
                u = cv2.resize(uv[0], (w, h), interpolation=cv2.INTER_AREA)
                v = cv2.resize(uv[1], (w, h), interpolation=cv2.INTER_AREA)
                frames.append(_yuv_to_rgb(y, u, v))
            else:
                frames.append(frame.to_ndarray(width=w, height=h, format="rgb24"))
    if not frames:
        raise ValueError("no decodable video frames")
    return np.stack(frames).astype(np.float32) / 255, fps


def _transcode(frames: np.ndarray, src_fps: float, cfg: CurateConfig) -> tuple[np.ndarray, float]:
    """Frames at the target rate (nearest source frames) and size (short side, even sides)."""
    fps = src_fps
    if cfg.fps and src_fps and cfg.fps < src_fps:
        idx = np.round(np.arange(0, len(frames), src_fps / cfg.fps)).astype(int)
        frames, fps = frames[idx[idx < len(frames)]], cfg.fps
    h, w = frames.shape[1:3]
    if cfg.short_side and min(h, w) != cfg.short_side:
        s = cfg.short_side / min(h, w)
        size = (max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    elif h % 2 or w % 2:
        frames = frames[:, : h - h % 2, : w - w % 2]
    return frames, fps


def _type_weights() -> bool:
    from openwfm.curate.videotype import WEIGHTS

    return (WEIGHTS / "model.safetensors").is_file()


def process_input(path: str | os.PathLike, cfg: CurateConfig, out_dir: str | os.PathLike, vlm=None) -> list[dict]:
    """Manifest records for one input: its clips, then the input itself (status done or failed)."""
    from openwfm.curate.caption import caption
    from openwfm.curate.dedup import clip_embedding
    from openwfm.video import read_video, write_video

    path, out = Path(path), Path(out_dir)
    iid = input_id(path)
    base = {"type": "input", "id": iid, "path": str(path)}
    try:
        small, fps = small_frames_of(path, cfg.split.size)
        if fps <= 0:
            raise ValueError("the stream has no frame rate")
    except Exception as e:  # noqa: BLE001 - any unreadable input is quarantined, never fatal
        return [{**base, "status": "failed", "error": f"unreadable video: {type(e).__name__}: {e}"}]
    transitions = find_transitions(small, cfg.split)
    kept, dropped = clips(shots(len(small), transitions), fps, cfg.rules)
    records = []
    for k, (s, e, reason) in enumerate(dropped):
        records.append({"type": "clip", "id": f"{iid}-d{k:03d}", "input": iid, "status": "dropped", "reason": reason,
                        "start": s / fps, "end": e / fps})
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for k, (s, e) in enumerate(kept):
        cid = f"{iid}-{k:04d}"
        rec = {"type": "clip", "id": cid, "input": iid, "start": s / fps, "end": e / fps, "source": str(path)}
        try:
            frames, clip_fps = _transcode(read_video(path, s, e).frames, fps, cfg)
            scores = {**motion_scores(frames, clip_fps, cfg.motion), **quality_scores(frames, cfg.quality),
                      "duration": len(frames) / clip_fps, "width": frames.shape[2], "height": frames.shape[1]}
            why = motion_decision(scores, cfg.motion) or quality_decision(scores, cfg.quality)
            if not why and cfg.type_filter and _type_weights():
                from openwfm.curate.videotype import type_decision, type_scores

                scores.update(type_scores(frames))
                why = type_decision(scores, cfg.type)
            if not why and cfg.text_filter:  # the slowest filter runs last, on what survived the others
                scores.update(text_scores(frames, cfg.text))
                why = text_decision(scores, cfg.text)
            rec.update(scores=scores, fps=clip_fps, frames=len(frames))
            if why:
                records.append({**rec, "status": "dropped", "reason": why})
                continue
            text, how = caption(frames, scores, path, vlm)
            fd, tmp = tempfile.mkstemp(prefix=f".{cid}.", suffix=".mp4", dir=out / "clips")
            os.close(fd)
            write_video(tmp, frames, clip_fps, crf=cfg.crf)
            os.replace(tmp, out / "clips" / f"{cid}.mp4")
            np.save(out / "clips" / f"{cid}.emb.npy", clip_embedding(frames))
            records.append({**rec, "status": "kept", "caption": text, "caption_source": how,
                            "file": f"clips/{cid}.mp4"})
        except Exception as e:  # noqa: BLE001 - a failing clip is recorded, the rest go on
            log.warning("%s: clip %s failed: %s", path, cid, e)
            records.append({**rec, "status": "failed", "error": f"{type(e).__name__}: {e}"})
    n_kept = sum(r["status"] == "kept" for r in records)
    records.append({**base, "status": "done", "fps": fps, "frames": len(small), "transitions": len(transitions),
                    "clips": n_kept})
    return records
