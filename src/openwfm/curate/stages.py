"""The curator's work as three stages of plain functions that an engine (local or Ray) calls:

1. ``split_input(path)``: shots of one video, clips cut by the clip rules -> clip jobs;
2. ``filter_clip(job)``: transcode, filters (motion, quality, looks, type, overlay text), embedding; a
   kept clip's mp4 is written to ``out_dir/clips/<id>.mp4`` atomically;
3. ``annotate_clip(record)``: caption and caption embedding.
``finish_input`` gathers an input's records. No stage writes the manifest, so every engine produces the
same records. A clip that fails is recorded as failed with its error; an input that cannot be read is
recorded as failed (quarantined) and never stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from openwfm.config import register_preset
from openwfm.curate.aesthetic import AestheticConfig
from openwfm.video.motion import MotionConfig, motion_decision, motion_scores
from openwfm.curate.quality import QualityConfig, quality_decision, quality_scores
from openwfm.curate.shots import ClipRules, SplitConfig, clips, shots, stream_transitions
from openwfm.curate.transitions import Transition
from openwfm.curate.text_overlay import OverlayTextConfig, text_decision, text_scores
from openwfm.curate.videotype import TypeConfig

log = logging.getLogger(__name__)

LOOKS_FRAMES = 4  # frames of a clip its embedding (dedup, looks score) sees, at a short side of 256 px: its scale
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


@dataclass
class RayStage:
    """One stage's Ray actor pool: actors and the resources each asks for."""

    workers: int = 1  # 0: the engine's --workers
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class RayConfig:
    split: RayStage = field(default_factory=lambda: RayStage(1, 0.5))
    filter: RayStage = field(default_factory=lambda: RayStage(0, 1.0))
    annotate: RayStage = field(default_factory=lambda: RayStage(1, 0.5))
    backlog: int = 4  # clip jobs queued per filter actor before more inputs are split (backpressure)


@dataclass
class CurateConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    rules: ClipRules = field(default_factory=ClipRules)
    motion: MotionConfig = field(default_factory=MotionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    text: OverlayTextConfig = field(default_factory=OverlayTextConfig)
    text_filter: bool = True  # OCR-based overlay-text filter (rapidocr)
    type: TypeConfig = field(default_factory=TypeConfig)
    type_filter: bool = True  # video-type classifier (skipped when its weights are not installed)
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)
    aesthetic_filter: bool = True  # learned looks score (skipped when its weights are not installed)
    partial: str = "keep"  # an input whose declared frames do not all decode: keep the decodable part, or drop it
    fps: float = 0.0  # transcode frame rate (0: keep the source's)
    short_side: int = 256  # transcode size (0: keep)
    crf: int = 18
    caption_model: str = ""  # local vision-language model directory ("" = template captions)
    text_encoder: str = "minilm"  # caption embeddings in the shards: minilm | t5 | "" (none)
    text_encoder_path: str = ""  # local model directory ("" = MiniLM from its wheel)
    text_max_length: int = 64
    dedup_threshold: float = 0.95  # cosine similarity of near-duplicates
    shard_maxcount: int = 500
    seed: int = 0
    ray: RayConfig = field(default_factory=RayConfig)


@register_preset(CurateConfig, "sim")
def _sim_preset() -> CurateConfig:
    """Simulator renders (wfm sim, the demo, the tour): whole rollouts kept (no trimming; clips from 1 s),
    128 px, and the filters trained on real footage off: on 128 px renders OCR "reads" the floor's
    checkerboard as overlay text and the type classifier calls them screen content."""
    cfg = CurateConfig(short_side=128, text_filter=False, type_filter=False, aesthetic_filter=False)
    cfg.rules.trim_seconds, cfg.rules.min_seconds = 0.0, 1.0
    return cfg


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


def skipped_inputs(inputs: list[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Paths under the directories named that ``find_inputs`` leaves out, each with why: files without a
    video extension, dangling symbolic links, and anything else that is not a regular file."""
    out: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            continue
        for q in sorted(p.rglob("*")):
            if q.is_dir():
                continue
            if q.is_symlink() and not q.exists():
                out.append((q, f"dangling symbolic link (to {os.readlink(q)})"))
            elif not q.is_file():
                out.append((q, "not a regular file"))
            elif q.suffix.lower() not in VIDEO_SUFFIXES:
                out.append((q, f"not a video file extension ({q.suffix or 'none'}; curated: "
                               f"{' '.join(VIDEO_SUFFIXES)})"))
    return out


_BT601 = np.array([[1.164, 0.0, 1.596], [1.164, -0.392, -0.813], [1.164, 2.017, 0.0]], np.float32)
_YUV_TO_RGB = np.hstack([_BT601, -(_BT601 @ np.array([16, 128, 128], np.float32))[:, None]])  # offsets folded in


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV -> RGB (what FFmpeg's default conversion does), uint8 (clipped; OpenCV's
    fixed-point transform, within a level of the float formula)."""
    return cv2.transform(cv2.merge([y, u, v]), _YUV_TO_RGB)


def shrink(plane: np.ndarray, w: int, h: int) -> np.ndarray:
    """Area-average a uint8 plane down to (h, w) in two steps: bilinear to the nearest integer multiple
    k x (h, w) that is at most ~2x smaller than the plane (little aliasing), then k x k block means (OpenCV's
    fast integer path). One-step area averaging by a fractional factor costs ~4x (54 vs 17 us for 320x180 to
    48x27 on one core), a third of the decoder's time per frame."""
    ph, pw = plane.shape[:2]
    k = max(1, min(pw // (2 * w) + (pw % (2 * w) > 0), ph // (2 * h) + (ph % (2 * h) > 0)))
    if k > 1 and (pw, ph) != (k * w, k * h):
        plane = cv2.resize(plane, (k * w, k * h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(plane, (w, h), interpolation=cv2.INTER_AREA)


def _plane(plane, width: int, height: int) -> np.ndarray:
    """A decoded frame's plane as a (height, width) uint8 view of its buffer (rows padded to line_size)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def iter_small_frames(container, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Every frame of an open container's first video stream at the detector's size (h, w), uint8 RGB,
    decoded in order one at a time (nothing else is held). 4:2:0 frames are scaled plane by plane
    (``shrink``) and converted to RGB at the small size: converting full frames first costs ~10x the decode."""
    h, w = size
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.options = {"skip_loop_filter": "all"}  # no H.264/HEVC deblocking: unseen at 48x27, -15%
    for frame in _decode_until_error(container, stream):
        if frame.format.name in ("yuv420p", "yuvj420p") and frame.height % 2 == 0 and frame.width % 2 == 0:
            y, u, v = (_plane(frame.planes[i], frame.width >> (i > 0), frame.height >> (i > 0)) for i in range(3))
            yield _yuv_to_rgb(shrink(y, w, h), shrink(u, w, h), shrink(v, w, h))
        else:
            yield frame.to_ndarray(width=w, height=h, format="rgb24")


def small_frames_of(path: str | os.PathLike, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Every frame of a video at the detector's size (h, w), float32 in [0, 1], and its frame rate (the
    whole video in memory: for training sets and benchmarks; curation streams, ``iter_small_frames``)."""
    with av.open(str(path)) as c:
        fps = _frame_rate(c)
        frames = list(iter_small_frames(c, size))
    if not frames:
        raise ValueError("no decodable video frames")
    return np.stack(frames).astype(np.float32) / 255, fps


def detect_shots(path: str | os.PathLike, cfg: SplitConfig) -> tuple[list[Transition], int, float]:
    """Transitions, decoded frame count and frame rate of a video file, streamed: one pass of decoding,
    one chunk of detector-size frames in memory (``shots.stream_transitions``)."""
    with av.open(str(path)) as c:
        fps = _frame_rate(c)
        transitions, num = stream_transitions(iter_small_frames(c, cfg.size), cfg)
    return transitions, num, fps


def _frame_rate(container) -> float:
    stream = container.streams.video[0]
    return float(stream.average_rate or stream.guessed_rate or 0) or 0.0


def _decode_until_error(container, stream):
    """Frames of ``stream`` in decoding order, stopping (not raising) where the data ends or breaks: the
    caller compares the count with what the container declares (a truncated input is ``partial``)."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as e:
        log.warning("%s: decoding stopped early (%s)", container.name, e)


CLIP_PIECE = 64  # source frames filter_clip decodes at a time


def read_clip(path: str | os.PathLike, start: int, end: int, src_fps: float, cfg: CurateConfig
              ) -> tuple[np.ndarray, float, np.ndarray]:
    """Frames [start, end) of a video transcoded to the target rate (nearest source frames) and size (short
    side, even sides), their frame rate, and ``LOOKS_FRAMES`` source frames spread over the clip at a short
    side of 256 px. Decoded ``CLIP_PIECE`` source frames at a time: memory holds the transcoded clip and
    one piece at the source size, however large the source."""
    from openwfm.video import read_video

    n = end - start
    fps, keep = src_fps, np.arange(n)
    if cfg.fps and src_fps and cfg.fps < src_fps:
        keep = np.round(np.arange(0, n, src_fps / cfg.fps)).astype(int)
        fps = cfg.fps
    keep_at = set(keep[keep < n].tolist())
    looks_at = set(np.linspace(0, n - 1, min(LOOKS_FRAMES, n)).round().astype(int).tolist())
    frames, looks, i = [], [], 0
    for a in range(start, end, CLIP_PIECE):
        for f in read_video(path, a, min(end, a + CLIP_PIECE)).frames:
            if i in looks_at:
                looks.append(_resize_short(f, 256, even=False))
            if i in keep_at:
                frames.append(_resize_short(f, cfg.short_side, even=True))
            i += 1
    return np.stack(frames), fps, np.stack(looks)


def _resize_short(frame: np.ndarray, short_side: int, even: bool) -> np.ndarray:
    """A frame at the given short side (0: as it is); ``even``: both sides even (video encoders need it),
    area-averaged (the transcode); otherwise area averaging down and bilinear up (the looks frames)."""
    h, w = frame.shape[:2]
    if not short_side or min(h, w) == short_side:
        return frame[: h - h % 2, : w - w % 2] if even else frame
    s = short_side / min(h, w)
    size = (max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2)) if even else \
        (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if s < 1 or even else cv2.INTER_LINEAR)


def _shipped(module: str) -> bool:
    """Whether a shipped classifier's weights are installed (``assets/<module>/model.safetensors``)."""
    return (Path(__file__).resolve().parent.parent / "assets" / module / "model.safetensors").is_file()


def split_input(path: str | os.PathLike, cfg: CurateConfig) -> tuple[dict, list[dict], list[dict]]:
    """Stage 1 (split): (input record, dropped-clip records, clip jobs). The input record's status is
    ``done`` (its clip count is added once its clips are finished), ``partial`` (some declared frames do not
    decode: ``decoded`` / ``declared`` recorded, the decodable part curated; ``cfg.partial="drop"`` fails it
    instead) or ``failed`` (unreadable: quarantined)."""
    path = Path(path)
    iid = input_id(path)
    base = {"type": "input", "id": iid, "path": str(path)}
    try:  # streamed: the detector keeps one chunk of small frames, whatever the video's length
        transitions, num, fps = detect_shots(path, cfg.split)
        if fps <= 0:
            raise ValueError("the stream has no frame rate")
        if not num:
            raise ValueError("no decodable video frames")
        from openwfm.video import count_frames

        present, declared, problem = count_frames(path)
    except Exception as e:  # noqa: BLE001 - any unreadable input is quarantined, never fatal
        return {**base, "status": "failed", "error": f"unreadable video: {type(e).__name__}: {e}"}, [], []
    expected = max(present, declared)
    if num < expected:  # truncated or damaged: accounted for, by the configured policy
        note = {"decoded": num, "declared": expected,
                "error": f"decoded {num} of {expected} frames" + (f" ({problem})" if problem else "")}
        if cfg.partial == "drop":
            return {**base, "status": "failed", **note, "error": note["error"] + "; partial=drop"}, [], []
        base = {**base, **note}
    kept, dropped = clips(shots(num, transitions), fps, cfg.rules)
    dropped_recs = [{"type": "clip", "id": f"{iid}-d{k:03d}", "input": iid, "status": "dropped", "reason": reason,
                     "start": s / fps, "end": e / fps} for k, (s, e, reason) in enumerate(dropped)]
    jobs = [{"rec": {"type": "clip", "id": f"{iid}-{k:04d}", "input": iid, "start": s / fps, "end": e / fps,
                     "source": str(path)}, "frames": (s, e), "fps": fps} for k, (s, e) in enumerate(kept)]
    status = "partial" if "declared" in base else "done"
    return ({**base, "status": status, "fps": fps, "frames": num, "transitions": len(transitions)},
            dropped_recs, jobs)


def filter_clip(job: dict, cfg: CurateConfig, out_dir: str | os.PathLike) -> dict:
    """Stage 2 (transcode + filters + embedding): the clip's record, ``kept`` (its mp4 and embedding
    written, not yet captioned), ``dropped`` with the first failing filter's reason, or ``failed``."""
    from openwfm.curate.dedup import clip_embedding
    from openwfm.video import write_video

    rec, (s, e), out = dict(job["rec"]), job["frames"], Path(out_dir)
    try:
        frames, clip_fps, looks = read_clip(rec["source"], s, e, job["fps"], cfg)
        scores = {**motion_scores(frames, clip_fps, cfg.motion), **quality_scores(frames, cfg.quality),
                  "duration": len(frames) / clip_fps, "width": frames.shape[2], "height": frames.shape[1]}
        why = motion_decision(scores, cfg.motion) or quality_decision(scores, cfg.quality)
        emb = None
        if not why:
            emb = clip_embedding(looks)
            if cfg.aesthetic_filter and _shipped("aesthetic"):
                from openwfm.curate.aesthetic import aesthetic_decision, aesthetic_score

                scores["aesthetic"] = aesthetic_score(emb)
                why = aesthetic_decision(scores, cfg.aesthetic)
        if not why and cfg.type_filter and _shipped("videotype"):
            from openwfm.curate.videotype import type_decision, type_scores

            scores.update(type_scores(frames))
            why = type_decision(scores, cfg.type)
        if not why and cfg.text_filter:  # the slowest filter runs last, on what survived the others
            scores.update(text_scores(frames, cfg.text))
            why = text_decision(scores, cfg.text)
        rec.update(scores=scores, fps=clip_fps, frames=len(frames))
        if why:
            return {**rec, "status": "dropped", "reason": why}
        (out / "clips").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{rec['id']}.", suffix=".mp4", dir=out / "clips")
        os.close(fd)
        write_video(tmp, frames, clip_fps, crf=cfg.crf)
        os.replace(tmp, out / "clips" / f"{rec['id']}.mp4")
        np.save(out / "clips" / f"{rec['id']}.emb.npy", emb)
        return {**rec, "status": "kept", "file": f"clips/{rec['id']}.mp4"}
    except Exception as e:  # noqa: BLE001 - a failing clip is recorded, the rest go on
        log.warning("%s: clip %s failed: %s", rec["source"], rec["id"], e)
        return {**rec, "status": "failed", "error": f"{type(e).__name__}: {e}"}


def annotate_clip(rec: dict, out_dir: str | os.PathLike, vlm=None, text_encoder=None) -> dict:
    """Stage 3 (caption + text embedding) of a kept clip: the model-heavy stage (a GPU stage on Ray).
    The caption's token embeddings go to ``clips/<id>.text.safetensors`` (float16, padding cut off)."""
    from openwfm.text.caption import caption

    if rec["status"] != "kept":
        return rec
    out = Path(out_dir)
    try:
        frames = None
        if vlm is not None:
            from openwfm.video import read_video

            frames = read_video(out / rec["file"]).frames
        text, how = caption(frames, rec["scores"], rec["source"], vlm)
        rec = {**rec, "caption": text, "caption_source": how}
        if text_encoder is not None:
            from openwfm.files import save_safetensors

            emb, mask = text_encoder.encode([text])
            path = out / "clips" / f"{rec['id']}.text.safetensors"
            save_safetensors({"embedding": emb[0, : int(mask[0].sum())].half().contiguous()}, str(path) + ".tmp",
                      metadata={"encoder": text_encoder.name, "caption": text})
            os.replace(str(path) + ".tmp", path)
        return rec
    except Exception as e:  # noqa: BLE001 - a failing clip is recorded, the rest go on
        log.warning("clip %s: captioning failed: %s", rec["id"], e)
        return {**rec, "status": "failed", "error": f"{type(e).__name__}: {e}"}


def finish_input(input_rec: dict, dropped: list[dict], clip_recs: list[dict]) -> list[dict]:
    """An input's manifest records, written together once all its clips are done: clips, then the input."""
    if input_rec["status"] in ("done", "partial"):
        input_rec = {**input_rec, "clips": sum(r["status"] == "kept" for r in clip_recs)}
    return [*dropped, *clip_recs, input_rec]


def process_input(path: str | os.PathLike, cfg: CurateConfig, out_dir: str | os.PathLike, vlm=None,
                  text_encoder=None) -> list[dict]:
    """All three stages for one input, in this process (the local engine)."""
    input_rec, dropped, jobs = split_input(path, cfg)
    recs = [annotate_clip(filter_clip(job, cfg, out_dir), out_dir, vlm, text_encoder) for job in jobs]
    return finish_input(input_rec, dropped, recs)


def load_captioner(cfg: CurateConfig):
    """The captioning VLM ``cfg.caption_model`` names (None: template captions), loaded once per worker."""
    if not cfg.caption_model:
        return None
    from openwfm.text.caption import VLMCaptioner

    return VLMCaptioner(cfg.caption_model)


def load_text_encoder(cfg: CurateConfig):
    """The text encoder whose caption states the curator stores (None: none stored)."""
    if not cfg.text_encoder:
        return None
    from openwfm.text import make_encoder

    return make_encoder(cfg.text_encoder, cfg.text_encoder_path, cfg.text_max_length)
