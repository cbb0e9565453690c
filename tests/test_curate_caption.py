"""The curator's captions: simulator metadata, a local VLM (a tiny random-init Llava built offline here),
and the labeled template fallback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from openwfm.curate.caption import VLMCaptioner, caption, sim_caption, template_caption

WORDS = ("a the camera scene moves static fast slow red blue cube ball video image describe this in one "
         "sentence user assistant : . ,").split()
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}"
            "{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    """A tiny random-init Llava (CLIP vision tower + Llama text model) with a word-level tokenizer, saved
    to a local directory; no hub access."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"})
    image_processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 16},
                                                         crop_size={"height": 16, "width": 16})
    processor = transformers.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                            vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                            chat_template=TEMPLATE)  # 16x16 / 8x8 patches + CLS - CLS = 4 tokens
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=16, patch_size=8)
    text = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                                      image_seq_length=4, vision_feature_layer=-1)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.suppress_tokens = list(range(len(specials)))  # words only: one per new token, no EOS
    out = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


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
