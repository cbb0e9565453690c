import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from conftest import moving_frames
from openwfm.video import (VideoError, VideoWriter, center_crop, from_tensor, pad, pad_to_multiple, probe, read_video,
                           resize, resize_short_side, to_tensor, write_gif, write_video)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def luma(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV)[..., 0] for f in frames])


def encode(path, frames, fps, fmt, codec, pix_fmt="yuv420p", **opts):
    """Write with PyAV directly, for containers openwfm does not write itself."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        s.options = {k: str(v) for k, v in opts.items()}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_mp4_round_trip_within_codec_tolerance(tmp_path, frames):
    path = write_video(tmp_path / "a.mp4", frames, fps=12, crf=12)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.num_frames, info.codec) == (80, 64, 12.0, len(frames), "h264")
    assert info.exact and not info.has_audio and abs(info.duration - len(frames) / 12) < 1e-6
    v = read_video(path)
    assert v.frames.shape == frames.shape and v.frames.dtype == np.uint8
    # yuv420p halves chroma resolution: luma is near-lossless, RGB is bounded by the colour subsampling
    assert psnr(luma(v.frames), luma(frames)) > 40
    assert psnr(v.frames, frames) > 29
    coarse = read_video(write_video(tmp_path / "b.mp4", frames, fps=12, crf=40)).frames
    assert psnr(luma(coarse), luma(frames)) < psnr(luma(v.frames), luma(frames)) - 3  # crf is honoured
    assert list(v.indices) == list(range(len(frames)))


@pytest.mark.parametrize("fmt,codec,ext,pix", [("avi", "mpeg4", "avi", "yuv420p"), ("matroska", "libx264", "mkv", "yuv420p"),
                                               ("mov", "libx264", "mov", "yuv420p"), ("webm", "libvpx-vp9", "webm", "yuv420p")])
def test_reads_common_containers(tmp_path, frames, fmt, codec, ext, pix):
    path = tmp_path / f"a.{ext}"
    encode(path, frames, 12, fmt, codec, pix, **({"qscale": 2} if codec == "mpeg4" else {}))
    v = read_video(path)
    assert v.frames.shape == frames.shape and psnr(luma(v.frames), luma(frames)) > 33, psnr(luma(v.frames), luma(frames))
    assert abs(v.fps - 12) < 1e-6
    part = read_video(path, 5, 17, step=3)
    assert np.array_equal(part.frames, v.frames[5:17:3])


def test_gif_write_and_read(tmp_path, frames):
    path = write_gif(tmp_path / "a.gif", frames, fps=10)
    v = read_video(path)
    assert v.frames.shape == frames.shape
    assert psnr(v.frames, frames) > 22  # 256-colour palette


def test_frame_ranges_time_windows_and_steps_equal_slices_of_a_full_read(tmp_path):
    frames = moving_frames(t=90, h=48, w=64)
    path = tmp_path / "long.mp4"
    encode(path, frames, 15, "mp4", "libx264", g=10, bf=2)  # keyframes every 10 frames, B-frames
    full = read_video(path)
    for start, end, step in [(0, 5, 1), (37, 52, 1), (41, 90, 4), (89, 90, 1), (10, None, 7)]:
        part = read_video(path, start, end, step)
        assert np.array_equal(part.frames, full.frames[start:end:step]), (start, end, step)
        assert list(part.indices) == list(range(90)[start:end:step])
    win = read_video(path, start_time=2.0, end_time=3.0)
    assert np.array_equal(win.frames, full.frames[30:45])
    assert np.allclose(win.timestamps, np.arange(30, 45) / 15)
    assert read_video(path, step=5).fps == 3.0


@pytest.mark.parametrize("name", ["vtest.avi", "Megamind.avi", "tree.avi", "bikes.mp4", "box.mp4"])
def test_real_footage_ranges_equal_full_read(real_video, name):
    path = real_video(name)
    full = read_video(path)
    n = len(full.frames)
    assert n > 20 and full.frames.shape[-1] == 3
    for start, end, step in [(n // 2, n // 2 + 6, 1), (3, n - 2, 5)]:
        part = read_video(path, start, end, step)
        sel = full.frames[(full.indices >= start) & (full.indices < end)]
        assert np.array_equal(part.frames, sel[::step])


def test_real_footage_metadata(real_video):
    info = probe(real_video("bikes.mp4"))
    assert (info.width, info.height, info.num_frames, info.fps) == (640, 272, 250, 25.0)
    info = probe(real_video("vtest.avi"))
    assert (info.width, info.height, info.num_frames, info.fps) == (768, 576, 795, 10.0)


def test_error_paths_name_the_file_and_cause(tmp_path, frames):
    good = write_video(tmp_path / "good.mp4", moving_frames(t=40), fps=10)
    data = good.read_bytes()
    cases = {"missing.mp4": (None, "no such file"), "empty.mp4": (b"", "empty"),
             "random.mp4": (np.random.default_rng(0).bytes(5000), "not a video"),
             "text.mp4": (b"this is a text file, not a video\n" * 50, "not a video"),
             "truncated.mp4": (data[: len(data) // 2], "truncated")}
    for name, (content, cause) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(VideoError, match=cause) as e:
            read_video(path, missing="error")
        assert str(path) in str(e.value)
    # moov atom at the end (no faststart), cut in the middle: the container index is gone
    encode(tmp_path / "late.mp4", frames, 12, "mp4", "libx264")
    raw = (tmp_path / "late.mp4").read_bytes()
    (tmp_path / "late_cut.mp4").write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(VideoError, match="late_cut.mp4"):
        read_video(tmp_path / "late_cut.mp4")


def test_audio_only_and_zero_frame_files(tmp_path):
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with pytest.raises(VideoError, match=r"audio.m4a: no video stream \(only audio"):
        read_video(audio)
    empty = tmp_path / "zero.mp4"
    with av.open(str(empty), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    with pytest.raises(VideoError, match="zero.mp4"):
        read_video(empty)


def test_decode_deadline_and_bad_ranges(tmp_path, frames):
    path = write_video(tmp_path / "a.mp4", frames, fps=12)
    with pytest.raises(VideoError, match="deadline"):
        read_video(path, timeout=0.0)
    with pytest.raises(VideoError, match="past the end"):
        read_video(path, start=len(frames) + 5)
    with pytest.raises(ValueError):
        read_video(path, step=0)


def test_writer_rejects_bad_frames_and_leaves_nothing_behind(tmp_path, frames):
    with pytest.raises(VideoError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", frames[:, :63], fps=10)
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "f.mp4", frames.astype(np.float32), fps=10)
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "partial.mp4", fps=10) as w:
            w.write(frames[:3])
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    out = write_video(tmp_path / "odd_ok.mp4", pad_to_multiple(frames[:, :63], 2), fps=10)
    assert probe(out).height == 64


def test_tensor_convention_round_trip_is_exact():
    values = np.arange(256, dtype=np.uint8)
    frames = np.broadcast_to(values[None, :, None, None], (2, 256, 3, 3)).copy()
    x = to_tensor(frames)
    assert x.shape == (3, 2, 256, 3) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert np.array_equal(from_tensor(x), frames)
    batch = to_tensor(np.stack([frames, frames[::-1]]))
    assert batch.shape == (2, 3, 2, 256, 3)
    assert np.array_equal(from_tensor(batch)[1], frames[::-1])
    assert from_tensor(torch.full((3, 1, 2, 2), 5.0)).max() == 255  # clamped


def test_resize_crop_pad(frames):
    assert resize(frames, (32, 40)).shape == (len(frames), 32, 40, 3)
    assert resize_short_side(frames, 32).shape[1:3] == (32, 40)
    c = center_crop(frames, (32, 32))
    assert np.array_equal(c, frames[:, 16:48, 24:56])
    p = pad(frames, (70, 84), mode="reflect")
    assert p.shape[1:3] == (70, 84) and np.array_equal(p[:, 3:67, 2:82], frames)
    assert np.array_equal(p[:, 2, 2:82], frames[:, 1])  # reflection about the first row
    assert pad(frames, (66, 80)).shape[1] == 66 and pad(frames, (66, 80))[:, 0].max() == 0
    with pytest.raises(ValueError):
        center_crop(frames, (100, 100))
    with pytest.raises(ValueError):
        pad(frames, (10, 10))


def _cut(src, dst, keep_frames: int):
    """``src`` with the data of every frame after the first ``keep_frames`` (in file order) cut off."""
    with av.open(str(src)) as c:
        ends = sorted(p.pos + p.size for p in c.demux(c.streams.video[0]) if p.size)
    dst.write_bytes(src.read_bytes()[: ends[keep_frames - 1]])
    return dst


@pytest.mark.parametrize("lost", [1, 2, 17])
def test_missing_frames_one_rule_for_one_or_many(tmp_path, lost):
    """A file whose last ``lost`` frames are cut off: read_video returns what decodes and counts the rest
    (warn), or refuses (missing="error"); video info says present vs declared; convert warns, --strict
    fails. The same for 1, 2 or many missing frames."""
    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.video import count_frames

    good = write_video(tmp_path / "good.mp4", moving_frames(t=30), fps=10)
    bad = _cut(good, tmp_path / "cut.mp4", 30 - lost)
    present, declared, problem = count_frames(bad)
    assert declared == 30 and present < 30
    v = read_video(bad)
    assert v.missing == 30 - len(v.frames) >= lost - 1 and v.missing >= 1
    with pytest.raises(VideoError, match="truncated or damaged: decoded"):
        read_video(bad, missing="error")
    res = CliRunner().invoke(app, ["video", "info", str(bad), "--json"])
    info = __import__("json").loads(res.output)[0]
    assert res.exit_code == 0 and info["frames_declared"] == 30 and info["frames_present"] == present
    assert "declare" in CliRunner().invoke(app, ["video", "info", str(bad)]).output
    res = CliRunner().invoke(app, ["video", "convert", str(bad), str(tmp_path / "out.mp4")])
    assert res.exit_code == 0 and "could not be read" in res.output
    res = CliRunner().invoke(app, ["video", "convert", str(bad), str(tmp_path / "strict.mp4"), "--strict"])
    assert res.exit_code != 0 and "truncated" in str(res.exception)
    assert read_video(good).missing == 0


def test_files_follow_the_umask(tmp_path):
    """mkstemp and safetensors create 0600 files; what openwfm writes follows the umask instead."""
    import os

    import torch

    from openwfm.files import UMASK, save_safetensors

    want = 0o666 & ~UMASK
    v = write_video(tmp_path / "a.mp4", moving_frames(t=4, h=32, w=32), fps=8)
    s = save_safetensors({"x": torch.ones(2)}, tmp_path / "w.safetensors")
    assert os.stat(v).st_mode & 0o777 == want and os.stat(s).st_mode & 0o777 == want
