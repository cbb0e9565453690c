"""The curator's captions: simulator metadata, a local VLM (a tiny random-init Llava built offline here),
and the labeled template fallback."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from openwfm.text.caption import VLMCaptioner, caption, sim_caption, template_caption

def clip_frames(t: int = 6, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_vlm_captions_deterministically(tiny_vlm):
    vlm = VLMCaptioner(tiny_vlm, max_new_tokens=8)
    assert vlm.text == "user : <image> Describe this video in one sentence. assistant : "  # the chat template
    text = vlm(clip_frames())
    assert isinstance(text, str)
    assert text == vlm(clip_frames())
    assert len(text.split()) == 8  # one word per new token, and only the new tokens


def test_vlm_respects_max_new_tokens(tiny_vlm):
    text = VLMCaptioner(tiny_vlm, max_new_tokens=2)(clip_frames())
    assert len(text.split()) == 2  # the prompt (7+ words) is not in the decoded text


def test_vlm_without_chat_template_gets_image_token(tiny_vlm, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_vlm, plain)
    (plain / "chat_template.jinja").unlink()
    vlm = VLMCaptioner(plain, prompt="describe this video", max_new_tokens=4)
    assert vlm.text == "<image>\ndescribe this video"
    assert isinstance(vlm(clip_frames()), str)


def test_vlm_rejects_bad_frames(tiny_vlm):
    vlm = VLMCaptioner(tiny_vlm, max_new_tokens=2)
    with pytest.raises(ValueError, match="uint8"):
        vlm(clip_frames().astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        vlm(clip_frames()[..., 0])


def test_vlm_video_needs_a_video_processor(tiny_vlm):
    assert VLMCaptioner(tiny_vlm).video is False  # Llava: images only, the middle frame
    with pytest.raises(ValueError, match="no video processor"):
        VLMCaptioner(tiny_vlm, video=True)


def test_vlm_needs_a_local_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        VLMCaptioner(tmp_path)


def test_caption_sources(tiny_vlm, tmp_path):
    vlm = VLMCaptioner(tiny_vlm, max_new_tokens=4)
    frames, info = clip_frames(), {"camera": "pan", "motion": 0.02, "brightness": 0.8, "duration": 2.0}
    assert caption(frames, info, None, vlm) == (vlm(frames), "vlm")
    video = tmp_path / "scene_0001.mp4"
    video.write_bytes(b"")
    assert caption(frames, info, video, vlm) == (vlm(frames), "vlm")  # no NAME.json: the model
    video.with_suffix(".json").write_text(json.dumps({"caption": "A red cube slides left."}))
    assert caption(frames, info, video, vlm) == ("A red cube slides left.", "metadata")


def test_sim_caption_reads_json_beside_video(tmp_path):
    video = tmp_path / "scene_0002.mp4"
    assert sim_caption(video) is None
    meta = video.with_suffix(".json")
    meta.write_text(json.dumps({"caption": "A blue ball bounces.", "fps": 24}))
    assert sim_caption(video) == "A blue ball bounces."
    assert sim_caption(str(video)) == "A blue ball bounces."
    for bad in ("{not json", json.dumps({"caption": "  "}), json.dumps({"caption": 3}), json.dumps({"fps": 24})):
        meta.write_text(bad)
        assert sim_caption(video) is None


def test_template_captions_are_labeled(tmp_path):
    info = {"camera": "static", "motion": 0.001, "brightness": 0.2, "duration": 3.04}
    text, how = caption(clip_frames(), info)
    assert how == "template"
    assert text == template_caption(info) == "A static camera films a dark scene with little motion for 3.0 seconds."
    assert caption(clip_frames(), info, tmp_path / "no_meta.mp4") == (text, "template")
    assert template_caption({}) == "A static camera films a scene with little motion for 0.0 seconds."
