"""Curator filters on real footage (opencv-doc) and its controlled degradations: motion (static, pan,
tilt, zoom, shake) and visual quality (blur, noise, exposure)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from openwfm.video.motion import motion_decision, motion_scores
from openwfm.curate.quality import quality_decision, quality_scores


@pytest.fixture(scope="module")
def street(real_video):
    from openwfm.video import read_video

    return read_video(real_video("vtest.avi"), 0, 40).frames  # static camera, people walking


def _warp(frames: np.ndarray, matrix) -> np.ndarray:
    h, w = frames.shape[1:3]
    return np.stack([cv2.warpAffine(f, np.float32(matrix(i, h, w)), (w, h), borderMode=cv2.BORDER_REFLECT)
                     for i, f in enumerate(frames)])


def test_motion_labels_and_decisions(street):
    still = np.repeat(street[:1], 40, axis=0)
    s = motion_scores(still, fps=10)
    assert s["camera"] == "static" and "static" in motion_decision(s)
    walking = motion_scores(street, fps=10)
    assert walking["camera"] == "static" and motion_decision(walking) is None  # objects move, camera does not
    first = np.repeat(street[:1], 40, axis=0)
    assert motion_scores(_warp(first, lambda i, h, w: [[1, 0, -3 * i], [0, 1, 0]]), 10)["camera"] == "pan"
    assert motion_scores(_warp(first, lambda i, h, w: [[1, 0, 0], [0, 1, -3 * i]]), 10)["camera"] == "tilt"
    zoom = _warp(first, lambda i, h, w: [[1 + 0.01 * i, 0, -0.005 * i * w], [0, 1 + 0.01 * i, -0.005 * i * h]])
    assert motion_scores(zoom, 10)["camera"] == "zoom"
    off = np.random.default_rng(0).normal(0, 10, (40, 2))  # hand-held jitter of ~10 px on 768 x 576
    shaky = motion_scores(_warp(first, lambda i, h, w: [[1, 0, off[i, 0]], [0, 1, off[i, 1]]]), 10)
    assert "shaky" in motion_decision(shaky)


def test_quality_flags_blur_noise_and_exposure(street):
    assert quality_decision(quality_scores(street)) is None
    blur = np.stack([cv2.GaussianBlur(f, (0, 0), 4) for f in street])
    assert "blurry" in quality_decision(quality_scores(blur))
    noisy = np.clip(street + np.random.default_rng(0).normal(0, 25, street.shape), 0, 255).astype(np.uint8)
    q = quality_scores(noisy)
    assert "noisy" in quality_decision(q) and 12 < q["noise"] < 25
    assert "exposed" in quality_decision(quality_scores((street * 0.1).astype(np.uint8)))
    assert "exposed" in quality_decision(quality_scores(np.full_like(street, 255)))


def test_overlay_text_is_found_and_dropped(street):
    pytest.importorskip("rapidocr")
    from openwfm.curate.text_overlay import text_decision, text_scores

    clean = text_scores(street[:3])
    assert clean["text_boxes"] == 0 and text_decision(clean) is None
    news = street[:3].copy()
    for f in news:
        cv2.rectangle(f, (0, 430), (767, 575), (20, 20, 120), -1)
        cv2.putText(f, "BREAKING NEWS 24/7", (30, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
        cv2.putText(f, "markets close higher", (30, 555), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    s = text_scores(news)
    assert s["text_boxes"] >= 1 and "overlay text" in text_decision(s)


def test_overlay_text_needs_readable_text(real_video):
    """Issue 23: on cup.mp4 (a hand turning a bottle, no overlay) detection alone boxed 75 % of the frame;
    recognition reads that box as one character at 0.59, so nothing counts, while a burned-in subtitle on
    the same frames reads back, is found, and drops the clip: it stays in place over the clip."""
    from openwfm.curate.text_overlay import text_decision, text_scores
    from openwfm.video import read_video

    cup = read_video(real_video("cup.mp4"), 100, 112).frames
    assert text_scores(cup)["text_area"] == 0 and text_decision(text_scores(cup)) is None
    subtitled, small = cup.copy(), cup.copy()
    for f in subtitled:
        cv2.putText(f, "I told you we would be late", (60, 440), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    s = text_scores(subtitled)
    assert s["text_boxes"] >= 1 and text_decision(s) is not None
    for f in small:  # a channel logo: too little text for the area rule, but it stays in place while the hand moves
        cv2.putText(f, "TV5 NEWS", (500, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    s = text_scores(small)
    assert 0 < s["text_area"] < 0.05 and s["persistent_text"] > 0 and "burned-in" in text_decision(s), s


def test_video_type_on_footage_it_never_saw(real_video):
    """The shipped classifier: a held-out animated film, held-out filmed footage, generated screen content
    and a fresh simulator rollout; animation and screen content are dropped by default."""
    from openwfm.config import make_config
    from openwfm.curate.train_videotype import screen_clip
    from openwfm.curate.videotype import type_decision, type_scores
    from openwfm.sim import SimConfig
    from openwfm.sim.dataset import simulate
    from openwfm.video import read_video

    anim = type_scores(read_video(real_video("Megamind.avi"), 200, 216).frames)
    assert anim["type"] == "animation" and "animation" in type_decision(anim)
    film = type_scores(read_video(real_video("cup.mp4"), 50, 66).frames)
    assert film["type"] == "natural" and type_decision(film) is None
    screen = type_scores(screen_clip(np.random.default_rng(123)))
    assert screen["type"] == "screen" and "screen" in type_decision(screen)
    sim = simulate("falling", make_config(SimConfig, overrides=["height=128", "width=128", "num_frames=9"]), 424242)
    assert type_scores(sim.frames)["type"] == "synthetic"


def _exact_dedup(ids, emb, quality, threshold):
    """The reference: every pair compared, clips scanned in quality order (written out independently)."""
    sims = emb @ emb.T
    order = sorted(range(len(ids)), key=lambda i: (-quality[i], ids[i]))
    kept, removed = [], {}
    for i in order:
        twin = next((j for j in kept if sims[i, j] >= threshold), None)
        if twin is None:
            kept.append(i)
        else:
            removed[ids[i]] = ids[twin]
    return removed


def test_dedup_matches_every_pair_compared_and_the_inverted_file_finds_planted_twins(monkeypatch):
    import numpy as np

    from openwfm.curate import dedup as D

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    x[200:260] = x[:60] + 0.05 * rng.standard_normal((60, 32)).astype(np.float32)  # near-duplicates
    x[260:270] = x[200:210]  # and exact copies of copies (chains)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"c{i:03d}" for i in range(len(x))]
    quality = rng.random(len(x)).tolist()
    exact = _exact_dedup(ids, x, quality, 0.95)
    assert D.dedup(ids, x, quality, 0.95) == exact and len(exact) >= 60
    monkeypatch.setattr(D, "EXACT_UP_TO", 100)  # the inverted-file path on the same set
    assert D.dedup(ids, x, quality, 0.95) == exact
