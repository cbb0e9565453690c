"""Video reading and writing with PyAV (FFmpeg).

Frames cross this boundary as ``uint8 (T, H, W, 3)`` RGB. Reads can take a frame range, a time window
or every n-th frame, and seek to the nearest keyframe instead of decoding from the start where the
container keeps timestamps. Every failure is a ``VideoError`` that names the file and the cause, and
every decode runs under a wall-clock deadline, so a hostile file cannot hang a pipeline.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from openwfm.errors import OpenWFMError
from openwfm.files import as_umask

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0  # wall-clock bound on one read, whatever the file does
MAX_BAD_PACKETS = 32  # undecodable packets in a row tolerated before a file is called corrupt


class VideoError(OpenWFMError):
    """A video that cannot be read or written; the message names the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path, self.cause = str(path), cause
        super().__init__(f"{path}: {cause}")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int  # declared by the container, or estimated from the duration (see ``exact``)
    duration: float  # seconds
    codec: str
    container: str
    exact: bool  # True when ``num_frames`` is the container's own count
    has_audio: bool


@dataclass
class Video:
    """Decoded frames and where they came from."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float  # rate of ``frames`` (the source rate divided by ``step``)
    indices: np.ndarray  # source frame index of each frame
    info: VideoInfo
    missing: int = 0  # frames declared in the range that could not be read (truncated / damaged file)

    @property
    def timestamps(self) -> np.ndarray:
        return self.indices / self.info.fps


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoError(p, "no such file")
    if not p.is_file():
        raise VideoError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoError(p, "file is empty (0 bytes)")
    try:
        return av.open(str(p), mode="r", timeout=30.0)
    except av.error.FFmpegError as e:
        raise VideoError(p, f"not a video FFmpeg can read ({_why(e)})") from e
    except (UnicodeDecodeError, ValueError, OSError) as e:
        raise VideoError(p, f"cannot open: {e}") from e


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _video_stream(container: av.container.InputContainer, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        what = f"only {', '.join(kinds)} stream(s)" if kinds else "no streams at all"
        container.close()
        raise VideoError(path, f"no video stream ({what})")
    return container.streams.video[0]


def _info(container, stream, path) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    exact = stream.frames > 0
    num = stream.frames if exact else int(round(duration * fps))
    if not duration and fps and num:
        duration = num / fps
    return VideoInfo(path=str(path), width=stream.codec_context.width, height=stream.codec_context.height,
                     fps=fps, num_frames=num, duration=duration, codec=stream.codec_context.name,
                     container=container.format.name, exact=exact, has_audio=bool(container.streams.audio))


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the header only: size, rate, frame count, duration, codec."""
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        info = _info(container, stream, path)
    finally:
        container.close()
    if info.width <= 0 or info.height <= 0:
        raise VideoError(path, "video stream has no frame size (corrupt header)")
    return info


# Containers whose packet timestamps are reliable enough to seek by (AVI and GIF are decoded linearly).
SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm", "mpegts")


@dataclass(frozen=True)
class _Index:
    """One demux pass (no decoding): the presentation timestamps of every frame, sorted."""

    pts: np.ndarray | None  # None when the stream cannot be indexed by timestamp
    keyframe_pts: np.ndarray
    packets: int  # non-empty packets, i.e. coded frames present
    declared: int = 0  # frames the container declares (0: it does not say)
    problem: str = ""  # why demuxing stopped early, if it did


_INDEX_CACHE: dict[tuple, _Index] = {}


def _packet_index(path, deadline: float) -> _Index:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _INDEX_CACHE:
        return _INDEX_CACHE[key]
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        fmt, declared = container.format.name, stream.frames
        pts, keys, problem = [], [], ""
        try:
            for packet in container.demux(stream):
                if time.monotonic() > deadline:
                    raise VideoError(path, "indexing ran past its deadline; the file is damaged or too large")
                if packet.size:
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
        except av.error.FFmpegError as e:
            if not pts:
                raise VideoError(path, f"truncated or corrupt container: no frame could be read ({_why(e)})") from e
            problem = f"truncated or corrupt container: demuxing stopped after {len(pts)} frames ({_why(e)})"
    finally:
        container.close()
    if not pts:
        raise VideoError(path, "contains no video frames")
    if not problem and declared and len(pts) < declared:
        problem = f"truncated: {len(pts)} of the {declared} frames the container declares are present"
    ok = any(f in fmt.split(",") for f in SEEKABLE_FORMATS) and None not in pts and None not in keys \
        and len(set(pts)) == len(pts) and not problem
    index = _Index(np.sort(np.asarray(pts, dtype=np.int64)) if ok else None,
                   np.sort(np.asarray(keys if ok else [], dtype=np.int64)), len(pts), max(declared, 0), problem)
    if len(_INDEX_CACHE) > 64:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[key] = index
    return index


def count_frames(path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, int, str]:
    """(frames present, frames the container declares (0: unknown), problem or ""), by demuxing without
    decoding: what ``wfm video info`` reports beside the header's claim."""
    index = _packet_index(path, time.monotonic() + timeout)
    return index.packets, index.declared, index.problem


def read_video(path: str | os.PathLike, start: int = 0, end: int | None = None, step: int = 1, *,
               start_time: float | None = None, end_time: float | None = None,
               timeout: float = DEFAULT_TIMEOUT_S, missing: str = "warn") -> Video:
    """Decode frames ``[start, end)`` taking every ``step``-th, or the time window ``[start_time, end_time)``.

    A frame's index is its rank in presentation order (in containers with reliable timestamps) or in
    decoding order (AVI, GIF, broken timestamps). Reads seek to the keyframe before ``start`` where the
    container allows, so a range read returns exactly the frames of a full read whose index is in range.

    Frames the container declares in the range but that cannot be read (a truncated or damaged file) are
    counted in ``Video.missing``, one rule for one frame or many: ``missing="warn"`` logs a warning naming
    the file and returns the frames that decoded, ``"error"`` raises ``VideoError``, ``"ignore"`` is silent.
    """
    if missing not in ("warn", "error", "ignore"):
        raise ValueError(f"missing must be 'warn', 'error' or 'ignore', got '{missing}'")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    info = probe(path)
    if start_time is not None or end_time is not None:
        if not info.fps:
            raise VideoError(path, "stream has no frame rate; read by frame index instead")
        start = max(0, math.ceil((start_time or 0.0) * info.fps - 1e-6))
        end = None if end_time is None else max(start, math.ceil(end_time * info.fps - 1e-6))
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad frame range [{start}, {end})")
    if end is not None and end == start:
        raise VideoError(path, f"empty frame range [{start}, {end})")
    deadline = time.monotonic() + timeout
    index = _packet_index(path, deadline)
    total = max(index.packets, index.declared)
    if start >= total:
        raise VideoError(path, f"frame {start} is past the end (the video has {total} frames)")
    if start >= index.packets:
        raise VideoError(path, f"truncated: frame {start} is missing ({index.problem})")
    try:
        frames, indices, seen = _collect(_decode(path, index, start, end, deadline, by_pts=True), start, step)
    except _Unordered:  # the decoder's timestamps are unusable: count frames in decoding order instead
        frames, indices, seen = _collect(_decode(path, index, start, end, deadline, by_pts=False), start, step)
    if not frames:
        raise VideoError(path, "contains no decodable video frames")
    expected = min(end or total, total) - start
    lost = max(0, expected - seen)
    if lost and missing != "ignore":
        why = f" ({index.problem})" if index.problem else " (undecodable data)"
        msg = f"truncated or damaged: decoded {seen} of the {expected} frames in [{start}, {start + expected}){why}"
        if missing == "error":
            raise VideoError(path, msg)
        log.warning("%s: %s", path, msg)
    return Video(np.stack(frames), info.fps / step, np.asarray(indices), info, lost)


class _Unordered(Exception):
    """Decoded timestamps are missing or out of order."""


def _collect(decoded: Iterator[tuple[int, av.VideoFrame]], start: int, step: int):
    frames, indices, seen = [], [], 0
    for idx, frame in decoded:
        seen += 1
        if (idx - start) % step == 0:
            frames.append(frame.to_ndarray(format="rgb24"))
            indices.append(idx)
    return frames, indices, seen


def _decode(path, index: _Index, start: int, end: int | None, deadline: float,
            by_pts: bool) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` for every frame with ``start <= index < end``, before ``deadline``.

    By timestamp when the index allows, seeking to the keyframe before ``start``; raises ``_Unordered``
    if the decoded timestamps turn out unusable. Otherwise by decoding order, from the first frame.
    """
    by_pts = by_pts and index.pts is not None
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        if by_pts and start > 0:
            target = index.pts[start]
            k = np.searchsorted(index.keyframe_pts, target, side="right") - 1
            container.seek(int(index.keyframe_pts[max(k, 0)]), stream=stream, backward=True, any_frame=False)
        counter, prev, bad = 0, -1, 0
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                raise VideoError(path, "decoding ran past its deadline; the file is damaged or too large")
            try:
                decoded = packet.decode()
                bad = 0
            except av.error.FFmpegError as e:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise VideoError(path, f"corrupt video data ({_why(e)})") from e
                continue
            for frame in decoded:
                if by_pts:
                    idx = _rank(index.pts, frame.pts)
                    if idx is None or idx <= prev:
                        raise _Unordered
                    prev = idx
                else:
                    idx, counter = counter, counter + 1
                if end is not None and idx >= end:
                    return
                if idx >= start:
                    yield idx, frame
    except av.error.FFmpegError as e:
        raise VideoError(path, f"corrupt video data ({_why(e)})") from e
    finally:
        container.close()


def _rank(sorted_pts: np.ndarray, pts: int | None) -> int | None:
    if pts is None:
        return None
    i = int(np.searchsorted(sorted_pts, pts))
    return i if i < len(sorted_pts) and sorted_pts[i] == pts else None


# extensions VideoWriter writes, and their containers (H.264 in each)
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def check_output(path: str | os.PathLike, gif: bool = False) -> Path:
    """``path`` if its extension names a container this package writes (and ``.gif`` where ``gif``), else a
    VideoError naming the extensions: called before any work, so nothing is computed for a bad name."""
    path = Path(path)
    ok = list(CONTAINERS) + ([".gif"] if gif else [])
    if path.suffix.lower() not in ok:
        raise VideoError(path, f"cannot write a '{path.suffix}' video; the container follows the extension: "
                               f"{', '.join(ok)}")
    return path


class VideoWriter:
    """Stream frames into an H.264 video (yuv420p) in the container its extension names (``CONTAINERS``). Written to a temporary file and renamed on close,
    so an interrupted write never leaves a half file under the final name."""

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18, codec: str = "libx264",
                 preset: str = "medium"):
        self.path = Path(path)
        self.fps, self.crf, self.codec, self.preset = fps, crf, codec, preset
        if fps <= 0:
            raise VideoError(self.path, f"fps must be positive, got {fps}")
        if not 0 <= crf <= 51:
            raise VideoError(self.path, f"crf must be in [0, 51], got {crf}")
        fmt = CONTAINERS[check_output(self.path).suffix.lower()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._container = av.open(self._tmp, mode="w", format=fmt,
                                  options={"movflags": "+faststart"} if fmt in ("mp4", "mov") else {})
        self._stream = None
        self.num_frames = 0

    def _start(self, h: int, w: int) -> None:
        if h % 2 or w % 2:
            self.abort()
            raise VideoError(self.path, f"H.264 yuv420p needs even width and height, got {w}x{h}; "
                                        "pad or crop the frames first (openwfm.video.pad)")
        rate = Fraction(self.fps).limit_denominator(1001)
        s = self._container.add_stream(self.codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = s

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W, 3)`` or several ``(T, H, W, 3)``, uint8 RGB."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            self.abort()
            raise VideoError(self.path, f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if self._stream is None:
            self._start(frames.shape[1], frames.shape[2])
        elif frames.shape[1:3] != (self._stream.height, self._stream.width):
            self.abort()
            raise VideoError(self.path, f"frame size changed to {frames.shape[2]}x{frames.shape[1]} mid-stream")
        for f in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                self._container.mux(packet)
            self.num_frames += 1

    def close(self) -> Path:
        if self._stream is None:
            self.abort()
            raise VideoError(self.path, "no frames were written")
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        as_umask(self._tmp)  # mkstemp made it 0600
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # closing a container with no streams can itself fail
            pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 18,
                preset: str = "medium") -> Path:
    """Write ``uint8 (T, H, W, 3)`` frames as H.264 mp4 (yuv420p) at ``fps`` with quality ``crf``."""
    with VideoWriter(path, fps, crf=crf, preset=preset) as w:
        w.write(frames)
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float, loop: int = 0) -> Path:
    """Write ``uint8 (T, H, W, 3)`` frames as an animated GIF (adaptive palette per frame)."""
    from PIL import Image

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise VideoError(path, f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, round(1000 / fps)), loop=loop, optimize=False)
    os.replace(tmp, path)
    return path
