"""Plain video files as training samples: cut into fixed-length clips, scaled down, re-encoded.

The curator (shot splitting, filters, captions) is the full path from raw footage to shards; this is the
short one for footage that is already clean, e.g. the real videos that train the shipped tokenizers:
every ``clip_frames`` frames of a file become one sample (``mp4`` + ``json``), scaled so that the short
side is ``short_side`` pixels (even sizes, as H.264 needs) and stored as H.264 at quality ``crf``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from openwfm.data.shards import DataError
from openwfm.video import VideoError, probe, read_video, write_video
from openwfm.video.transforms import resize_short_side


def _even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


def video_file_samples(path: str | os.PathLike, clip_frames: int = 33, short_side: int = 128,
                       crf: int = 15, max_clips: int | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {"mp4": ..., "json": ...})`` for consecutive ``clip_frames``-frame clips of one video file;
    a tail shorter than ``clip_frames`` is dropped. Keys are ``<file stem>-<clip number>`` (dots in the
    stem become underscores). ``short_side=0`` keeps the size."""
    path = Path(path)
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    try:
        info = probe(path)
    except VideoError as e:
        raise DataError(path, f"not a readable video ({e.cause})") from None
    stem = path.name.split(".")[0] or "video"
    n = info.num_frames // clip_frames
    if max_clips is not None:
        n = min(n, max_clips)
    if n == 0:
        raise DataError(path, f"has {info.num_frames} frames, fewer than one clip of {clip_frames}")
    with tempfile.TemporaryDirectory(prefix="openwfm-clips-") as tmp:
        for i in range(n):
            start = i * clip_frames
            video = read_video(path, start, start + clip_frames)
            if len(video.frames) < clip_frames:  # the header over-counted frames: stop at the real end
                break
            frames = video.frames if not short_side else resize_short_side(video.frames, short_side)
            frames = _even(frames)
            mp4 = write_video(Path(tmp) / "clip.mp4", frames, info.fps, crf=crf).read_bytes()
            meta = {"source": path.name, "start_frame": start, "num_frames": clip_frames, "fps": info.fps,
                    "caption": ""}
            yield f"{stem}-{i:04d}", {"mp4": mp4, "json": json.dumps(meta).encode()}
