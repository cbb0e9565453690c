"""Curator foundations: the manifest survives crashes; the classical shot detector on real footage with
synthetic transitions (cuts, fades, dissolves) and distractors (flashes, fast motion); clip rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openwfm.curate.manifest import MANIFEST, Manifest
from openwfm.curate.shots import ClipRules, clips, detect, shots, small_frames
from openwfm.curate.transitions import fast_motion, flash, join, labels, match


def test_manifest_latest_record_wins_and_a_torn_line_is_dropped(tmp_path):
    with Manifest(tmp_path) as m:
        m.record("input", "a.mp4", "started", path="/x/a.mp4")
        m.record("clip", "a.mp4:0", "kept", input="a.mp4", start=0.5, end=3.0)
        m.record("clip", "a.mp4:1", "dropped", input="a.mp4", reason="too short")
        m.record("input", "a.mp4", "done", clips=2)
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"type": "input", "id": "b.mp4", "sta')  # kill -9 mid-write
    m = Manifest(tmp_path)
    assert m.get("input", "a.mp4")["status"] == "done" and m.get("input", "b.mp4") is None
    assert [r["id"] for r in m.clips_of("a.mp4")] == ["a.mp4:0", "a.mp4:1"]
    assert m.counts() == {"input": {"done": 1}, "clip": {"kept": 1, "dropped": 1}}
    m.record("input", "b.mp4", "failed", error="corrupt")
    m.close()
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert all(json.loads(line) for line in lines) and json.loads(lines[-1])["id"] == "b.mp4"


@pytest.fixture(scope="module")
def pool(real_video):
    from openwfm.video import read_video

    out = []
    for name, a, b in [("vtest.avi", 0, 60), ("vtest.avi", 400, 460), ("bikes.mp4", 80, 130),
                       ("box.mp4", 0, 60), ("cup.mp4", 0, 60)]:
        out.append((small_frames(read_video(real_video(name), a, b).frames) * 255).astype(np.uint8))
    return out


def _hits(pred, truth, slack: int = 2) -> tuple[int, int, int]:
    return match([(p.start + p.end) / 2 for p in pred], truth, slack)


def test_detector_finds_cuts_and_fades_but_not_flashes(pool):
    video, truth = join([pool[0], flash(pool[2], 25, 2), pool[3], pool[4], pool[1]], ["cut", "cut", "fade", "cut"],
                        [1, 1, 12, 1], 27, 48)
    pred = detect(video)
    tp, fp, fn = _hits(pred, truth)
    assert fn == 0 and fp == 0, ([(p.start, p.kind) for p in pred], truth)
    assert labels(len(video), truth).sum() == 3 + 12


def test_fast_motion_and_a_dissolve(pool):
    moving = fast_motion(pool[0], np.random.default_rng(0))
    assert detect(moving) == []
    video, truth = join([pool[1], pool[3]], ["dissolve"], [14], 27, 48)
    pred = detect(video)
    assert _hits(pred, truth) == (1, 0, 0), [(p.start, p.end, p.kind) for p in pred]


def test_shots_and_clip_rules():
    from openwfm.curate.transitions import Transition

    tr = [Transition(60, 60, "cut"), Transition(300, 311, "dissolve")]
    assert shots(4000, tr) == [(0, 60), (60, 300), (312, 4000)]
    kept, dropped = clips(shots(4000, tr), fps=25.0, rules=ClipRules(min_seconds=2, max_seconds=60, trim_seconds=0.5))
    assert dropped == [(0, 60, dropped[0][2])] and "shorter than 2 s" in dropped[0][2]  # 2.4 s - 2 x 0.5 s
    assert kept[0] == (72, 288)
    long = [k for k in kept if k[0] >= 312]
    assert len(long) == 3 and all(b - a <= 60 * 25 for a, b in long) and long[0][0] == 324 and long[-1][1] == 3988


def test_learned_detector_ships_and_finds_transitions(pool):
    from openwfm.curate.shotnet import WEIGHTS, detect_learned, load_shotnet

    assert (WEIGHTS / "model.safetensors").stat().st_size <= 5e6
    model = load_shotnet()
    video, truth = join([pool[4], pool[2], pool[3], pool[0]], ["cut", "dissolve", "cut"], [1, 14, 1], 27, 48)
    assert _hits(detect_learned(video, model), truth) == (3, 0, 0)
    assert detect_learned(flash(pool[4], 25, 2), model) == []  # a flash is not a boundary


@pytest.mark.parametrize("detector", ["classical", "learned"])
def test_streamed_detection_equals_whole_video_detection(pool, detector):
    """Long inputs are scanned in chunks (bounded memory); transitions on and near chunk borders are found
    once, as in one scan of the whole video."""
    from openwfm.curate.shots import SplitConfig, find_transitions, stream_transitions

    video, truth = join([pool[0], pool[2], pool[3], pool[4], pool[1], pool[0]],
                        ["cut", "dissolve", "cut", "fade", "cut"], [1, 14, 1, 12, 1], 27, 48)
    whole = find_transitions(video.astype(np.float32) / 255, SplitConfig(detector=detector))
    assert _hits(whole, truth)[0] >= 4
    for chunk in (60, 97, len(video)):  # borders on, just before and after transitions; one chunk
        cfg = SplitConfig(detector=detector, chunk=chunk, context=64)
        streamed, n = stream_transitions(iter(video), cfg)
        assert n == len(video) and streamed == whole, (chunk, streamed, whole)
    with pytest.raises(ValueError, match="split.chunk"):
        stream_transitions(iter(video), SplitConfig(chunk=0))


def test_a_clip_is_read_in_pieces_with_the_frames_of_one_whole_read(real_video):
    """filter_clip decodes CLIP_PIECE source frames at a time (bounded memory on large sources): the
    transcoded frames and the looks frames equal those of one whole read, also across a rate change."""
    import cv2

    from openwfm.curate.stages import CLIP_PIECE, CurateConfig, read_clip
    from openwfm.video import read_video

    path, start, end = real_video("vtest.avi"), 30, 30 + 2 * CLIP_PIECE + 17
    whole = read_video(path, start, end).frames
    cfg = CurateConfig(short_side=144, fps=4.0)  # vtest: 768x576 at 10 fps
    frames, fps, looks = read_clip(path, start, end, 10.0, cfg)
    keep = np.round(np.arange(0, len(whole), 10.0 / 4.0)).astype(int)
    ref = np.stack([cv2.resize(f, (192, 144), interpolation=cv2.INTER_AREA) for f in whole[keep[keep < len(whole)]]])
    assert fps == 4.0 and np.array_equal(frames, ref)
    at = np.linspace(0, len(whole) - 1, 4).round().astype(int)
    assert np.array_equal(looks, np.stack([cv2.resize(f, (341, 256), interpolation=cv2.INTER_AREA) for f in whole[at]]))


def test_hysteresis_turns_frame_probabilities_into_transitions():
    """A run above ``low`` is one transition when its peak passes the threshold: a wobbling run is not cut
    in pieces, a low bump is ignored; where the frames passing the threshold span fewer than CUT_WIDTH it is
    a cut, on the most likely frame."""
    from openwfm.curate.shotnet import transitions_from_probs

    p = np.array([0, .2, .96, .6, .97, .4, .92, .94, .6, 0, .7, .8, 0, .99, 0, .95, .97, .5], dtype=np.float32)
    found = transitions_from_probs(p, threshold=0.9, low=0.3)
    assert [(t.start, t.end, t.kind) for t in found] == [(2, 8, "gradual"), (13, 13, "cut"), (16, 16, "cut")]
    plain = transitions_from_probs(p, threshold=0.9, low=0.9)  # no hysteresis: runs above the threshold
    assert [(t.start, t.end) for t in plain] == [(2, 2), (4, 4), (7, 7), (13, 13), (16, 16)]


def test_spike_cuts_keep_isolated_difference_spikes_under_the_threshold():
    """A sub-threshold probability peak is a cut only where the frame difference spikes alone: not at a flash
    (two spikes a frame apart), not in fast motion (large differences all around), not beside a transition
    already found, not under ``low``."""
    from openwfm.curate.shotnet import spike_cuts
    from openwfm.curate.transitions import Transition

    t = 60
    p = np.full(t, 0.02, dtype=np.float32)
    d = np.full(t, 0.01, dtype=np.float32)
    p[10], d[10] = 0.7, 0.08  # a static shot cut to a look-alike one: found
    p[20], d[20], d[21] = 0.8, 0.1, 0.1  # a flash: the picture jumps back a frame later
    p[30], d[27:34] = 0.9, 0.08  # fast motion
    d[30] = 0.12
    p[40], d[40] = 0.6, 0.09  # two frames from a transition already found
    p[50], d[50] = 0.3, 0.09  # the network does not lean to a transition
    found = [Transition(42, 44, "gradual")]
    assert [(c.start, c.kind) for c in spike_cuts(p, d, found, low=0.5, ratio=3.0)] == [(10, "cut")]
    assert spike_cuts(p, d, found, low=0.5, ratio=9.0) == []  # 0.08 is 8x its neighbours


def test_frame_differences_and_the_spike_setting_round_trip(tmp_path):
    """``frame_differences`` is the mean absolute change in [0, 1]; a saved detector keeps its calibrated
    spike ratio, and null (none) loads as infinity, which finds no spike cut."""
    from openwfm.curate.shotnet import ShotNet, frame_differences, load_shotnet, save_shotnet, spike_cuts

    f = np.zeros((3, 27, 48, 3), np.uint8)
    f[1] = 255
    assert np.allclose(frame_differences(f), [0, 1, 1]) and frame_differences(f[:1]).tolist() == [0]
    save_shotnet(ShotNet((4, 4, 4)), tmp_path / "a", 0.9, {}, spike_ratio=4.0)
    assert load_shotnet(tmp_path / "a").spike_ratio == 4.0
    save_shotnet(ShotNet((4, 4, 4)), tmp_path / "b", 0.9, {}, spike_ratio=float("inf"))
    model = load_shotnet(tmp_path / "b")
    assert model.spike_ratio == float("inf")
    p, d = np.array([0, 0.8, 0], np.float32), np.array([0, 0.5, 0], np.float32)
    assert spike_cuts(p, d, [], ratio=model.spike_ratio) == []

def test_the_detector_input_is_area_averaged_and_bt601_converted(real_video):
    """``shrink`` (bilinear to a multiple of the size, then block means) stays within 1.5 levels on average
    of one-step area averaging; ``_yuv_to_rgb`` is the BT.601 limited-range formula within a level."""
    import cv2

    from openwfm.curate.stages import _yuv_to_rgb, shrink
    from openwfm.video import read_video

    frame = cv2.cvtColor(read_video(real_video("vtest.avi"), 0, 1).frames[0], cv2.COLOR_RGB2GRAY)  # 768x576
    for w, h in [(48, 27), (48, 36), (32, 24)]:
        ours, ref = shrink(frame, w, h).astype(int), cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        assert ours.shape == (h, w) and np.abs(ours - ref).mean() < 1.5, (w, h, np.abs(ours - ref).mean())
    exact = frame[:27 * 4, :48 * 4]  # a multiple of the size: 4x4 block means (2x2 of 2x2: rounded twice)
    assert np.abs(shrink(exact, 48, 27) - exact.reshape(27, 4, 48, 4).mean((1, 3))).max() <= 1
    y, u, v = (np.random.default_rng(i).integers(0, 256, (27, 48)).astype(np.uint8) for i in range(3))
    yy, uu, vv = 1.164 * (y - 16.0), u - 128.0, v - 128.0
    ref = np.clip(np.stack([yy + 1.596 * vv, yy - 0.392 * uu - 0.813 * vv, yy + 2.017 * uu], -1), 0, 255)
    assert np.abs(_yuv_to_rgb(y, u, v) - ref).max() < 1


def test_learned_detector_runs_every_convolution_on_onednn_and_its_inference_form_is_exact(pool):
    """Inference windows (MIN_WINDOW to INFER_WINDOW frames, one per call) never fall to PyTorch's slow
    reference 3D convolution (5-7x slower on one thread); the inference form (batch norms folded, frames
    and kernels transposed) gives the trained network's probabilities."""
    import torch
    from safetensors.torch import load_file

    from openwfm.curate.shotnet import INFER_WINDOW, MIN_WINDOW, WEIGHTS, ShotNet, frame_probs, load_shotnet

    model = load_shotnet()
    for t in (MIN_WINDOW, INFER_WINDOW):
        with torch.inference_mode(), torch.profiler.profile() as prof:
            model(torch.zeros(1, t, 27, 48, 3, dtype=torch.uint8))
        names = {e.key for e in prof.key_averages()}
        assert "aten::mkldnn_convolution" in names and not any("slow_conv" in n and "3d" in n for n in names), names
    trained = ShotNet(tuple(sum(c.out_channels for c in b.convs) for b in model.blocks))
    trained.load_state_dict(load_file(str(WEIGHTS / "model.safetensors")))
    video = np.concatenate(pool * 2)  # ~580 frames: three windows
    for frames in (video, video[:70]):  # and a video shorter than a window
        assert np.allclose(frame_probs(model, frames), frame_probs(trained.eval(), frames), atol=1e-4)


def test_churning_pictures_are_distractors_not_transitions(pool):
    """particles, turbulence and flicker change every frame of a segment (the training's hard negatives),
    keep its shape, and are reproducible from the seed."""
    from openwfm.curate.transitions import flicker, particles, turbulence

    seg = pool[0]
    for fn in (particles, turbulence, flicker):
        out = fn(seg, np.random.default_rng(0))
        assert out.shape == seg.shape and out.dtype == np.uint8
        assert np.array_equal(out, fn(seg, np.random.default_rng(0)))
        changed = np.abs(out.astype(int) - seg).mean((1, 2, 3))
        assert (changed > 0.5).all(), (fn.__name__, changed.min())
