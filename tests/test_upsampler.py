"""The prompt upsampler (Cosmos sec. 7): the caption index, the fact rules, retrieval, a tiny random-init
Llama from a local directory (plumbing and the fallback), and Video2World."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from openwfm.errors import OpenWFMError
from openwfm.text import TextError
from openwfm.text.caption_index import CaptionIndex, CaptionIndexError, collect_captions
from openwfm.text.facts import conflict, content_words, facts, missing_facts, sentences
from openwfm.text.upsampler import (LLMUpsampler, RetrievalUpsampler, check_upsampled, normalize_prompt,
                                    upsample_video2world, video_caption)

CAPTIONS = [
    "A medium-sized blue ball is dropped onto a wooden table. The blue ball bounces twice. The blue ball falls off "
    "the table onto the floor. The table stands on a gray floor.",
    "A large blue ball is thrown to the left onto a wooden table. The blue ball rolls to the left. Everything comes "
    "to rest. The table stands on a slate floor.",
    "A small blue ball rolls across a wooden table and falls off its edge. It comes to rest. The table stands on a "
    "tan floor.",
    "A robot arm picks up the green cube from a wooden table and lifts it. A small orange block stays where it is. "
    "The table stands on a slate floor.",
    "A robot arm pushes the yellow cylinder to the right across a wooden table. A small pink cube stays where it is. "
    "The table stands on a gray floor.",
    "The camera circles clockwise about 80 degrees around a large cyan cylinder and a small white ball resting on a "
    "textured gray floor, at a steady height. Nothing in the scene moves.",
    "A car drives along a road that curves left, past 3 other cars and roadside obstacles, seen from six cameras "
    "mounted on it.",
]


@pytest.fixture(scope="module")
def encoder():
    from openwfm.text import MiniLMEncoder

    return MiniLMEncoder(max_length=128)


@pytest.fixture(scope="module")
def index(encoder):
    return CaptionIndex.build(CAPTIONS + [CAPTIONS[0]], encoder, sources=["test"])


# ------------------------------------------------------------------------------------------------ facts

def test_facts_find_objects_attributes_and_counts():
    f = facts("A robot arm picks up two red cubes from a wooden table. The ball is blue.")
    things = {t.noun: t for t in f.things}
    assert things["arm"].modifiers == ["robot"] and things["arm"].count == 1
    assert things["cube"].colors == {"red"} and things["cube"].count == 2
    assert things["table"].materials == {"wood"}
    assert things["ball"].colors == {"blue"} and things["ball"].definite  # a color after the verb
    assert f.nouns == {"robot", "arm", "cube", "table", "ball"} and f.colors == {"red", "blue"}
    assert facts("a medium-sized red and blue sphere on a dark blue floor").things[0].colors == {"red", "blue"}
    assert facts("a big ball").things[0].sizes == {"large"}
    assert content_words("The cubes are rolling slowly.") == ["cube", "rolling"]
    assert missing_facts("a red ball on a table", "A red ball rolls.") == ["table"]


@pytest.mark.parametrize("known, sentence, why", [
    ("a red ball rolls off a table", "A blue ball bounces twice.", "calls the ball blue"),
    ("a ball rolls", "The green ball bounces.", "has no color"),
    ("a small red ball", "The large red ball bounces.", "large"),
    ("a metal table", "The ball rolls across a wooden table.", "wood"),
    ("two red cubes fall", "Three red cubes bounce.", "counts 3"),
    ("a car drives past two trucks", "A car drives past 3 other cars.", None),  # "other": another car
    ("the camera pans left across a table", "The camera circles clockwise around the table.", "orbit"),
    ("a robot arm picks up a red cube", "A robot arm pushes the red cube.", "push"),
    ("a robot arm pushes a red cube to the left", "The robot arm moves the red cube to the right.", "right"),
    ("a robot arm pushes a red cube", "The red cube stays where it is.", "still"),
    ("a red ball rolls across the floor", "Nothing in the scene moves.", "nothing moves"),
    ("a dog runs across a park", "The table stands on a slate floor.", "outdoors"),
    ("a red ball rolls off a table", "The table stands on a gray floor.", None),
    ("a red ball rolls off a table", "A small orange block stays where it is.", None),
])
def test_conflict_rules(known, sentence, why):
    got = conflict(sentence, facts(normalize_prompt(known)))
    assert (got is None) if why is None else (got is not None and why in got), got


# ------------------------------------------------------------------------------------------------ index

def test_index_build_save_load_round_trip(index, encoder, tmp_path):
    assert len(index) == len(CAPTIONS) and index.dim == 384  # the exact duplicate is kept once
    index.save(tmp_path / "idx")
    doc = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert doc["encoder"] == encoder.name and doc["count"] == len(CAPTIONS) and doc["sources"] == ["test"]
    loaded = CaptionIndex.load(tmp_path / "idx", encoder)
    assert loaded.captions == index.captions
    assert np.allclose(loaded.embeddings.numpy(), index.embeddings.numpy())
    hits = loaded.nearest("a robot arm lifts a cube", 2)
    assert hits[0][0] == CAPTIONS[3] and hits[0][1] > hits[1][1]
    assert loaded.nearest(index.embeddings[5], 1)[0][0] == CAPTIONS[5]  # a vector query
    lazy = CaptionIndex.load(tmp_path / "idx")  # the default MiniLM is made on first use
    assert lazy.encoder is None and lazy.nearest("a car on a road", 1)[0][0] == CAPTIONS[6]


def test_index_load_errors_name_the_file(index, encoder, tmp_path):
    d = index.save(tmp_path / "idx")
    with pytest.raises(CaptionIndexError, match="no-index.*missing"):
        CaptionIndex.load(tmp_path / "no-index")
    doc = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**doc, "count": 3}))
    with pytest.raises(CaptionIndexError, match="count mismatch"):
        CaptionIndex.load(d, encoder)
    (d / "index.json").write_text(json.dumps({**doc, "dim": 512}))
    with pytest.raises(CaptionIndexError, match=r"embeddings\.safetensors.*384 wide.*512"):
        CaptionIndex.load(d, encoder)
    (d / "index.json").write_text(json.dumps({**doc, "encoder": "t5:512"}))
    with pytest.raises(CaptionIndexError, match=r"index\.json.*'t5:512'.*not 'minilm-l6:128'"):
        CaptionIndex.load(d, encoder)
    with pytest.raises(CaptionIndexError, match="pass that encoder"):
        CaptionIndex.load(d)
    (d / "index.json").write_text(json.dumps(doc))
    (d / "embeddings.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CaptionIndexError, match=r"embeddings\.safetensors: unreadable"):
        CaptionIndex.load(d, encoder)
    (d / "captions.json").write_text("{broken")
    with pytest.raises(OpenWFMError, match=r"captions\.json: unreadable JSON"):  # also an OpenWFMError
        CaptionIndex.load(d, encoder)
    (d / "embeddings.safetensors").unlink()
    with pytest.raises(TextError, match=r"embeddings\.safetensors: missing"):
        CaptionIndex.load(d, encoder)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_captions_from_every_source(tmp_path):
    from openwfm.data import pack_samples

    sim = tmp_path / "sim" / "falling"
    sim.mkdir(parents=True)
    (sim / "falling_000000.json").write_text(json.dumps({"caption": "A red ball falls.", "fps": 12}))
    (sim / "falling_000001.json").write_text(json.dumps({"caption": "A  red ball falls. "}))  # same, cleaned
    pack_samples([(f"s{i}", {"png": _png(), "json": json.dumps({"caption": c}).encode()})
                  for i, c in enumerate(["A blue cube slides.", "A car turns left."])], tmp_path / "shards")
    cur = tmp_path / "curated"
    cur.mkdir()
    recs = [{"type": "clip", "id": "a", "status": "kept", "caption": "A dog runs.", "caption_source": "vlm"},
            {"type": "clip", "id": "b", "status": "dropped", "caption": "A cat sits.", "caption_source": "vlm"},
            {"type": "clip", "id": "c", "status": "kept", "caption": "A static camera films a scene.",
             "caption_source": "template"}, {"type": "input", "id": "x", "status": "done"}]
    (cur / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    txt = tmp_path / "more.txt"
    txt.write_text("# my captions\nA green cylinder rolls.\n\nA red ball falls.\n")
    (tmp_path / "more.jsonl").write_text(json.dumps({"caption": "A drone hovers."}) + "\n")
    saved = tmp_path / "saved-index"  # a saved caption index is a source too
    saved.mkdir()
    (saved / "captions.json").write_text(json.dumps(["A cat sleeps."]))
    (saved / "index.json").write_text("{}")
    caps, sources = collect_captions([tmp_path / "sim", tmp_path / "shards", cur, txt, tmp_path / "more.jsonl", saved])
    assert caps == ["A red ball falls.", "A blue cube slides.", "A car turns left.", "A dog runs.",
                    "A green cylinder rolls.", "A drone hovers.", "A cat sleeps."]
    assert len(sources) == 6
    with pytest.raises(CaptionIndexError, match="nowhere.*no such file"):
        collect_captions([tmp_path / "nowhere"])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(CaptionIndexError, match="no captions found in .*empty.txt"):
        CaptionIndex.from_sources([tmp_path / "empty.txt"])


# ------------------------------------------------------------------------------------------- retrieval

PROMPTS = ["a red ball rolls off a table", "a robot arm picks up a red cube",
           "two purple cubes fall onto a wooden table",
           "the camera pans left around a black cylinder", "a small green ball bounces on a metal table",
           "a robot arm pushes a yellow block to the left"]


@pytest.fixture(scope="module")
def results(index):
    up = RetrievalUpsampler(index)
    return [up.upsample(p) for p in PROMPTS]


def test_upsampler_keeps_every_fact_and_adds_no_conflict(index, results):
    for prompt, r in zip(PROMPTS, results):
        assert not r.skipped and r.upsampled.startswith(normalize_prompt(prompt))
        assert len(r.upsampled.split()) > len(prompt.split()), r
        assert missing_facts(prompt, r.upsampled) == []
        assert check_upsampled(prompt, r.upsampled) is None, r.upsampled
    out = results[0].upsampled  # "a red ball rolls off a table"
    assert "blue" not in out  # the index is full of blue balls
    assert re.search(r"\b(slate|gray|tan) floor\b", out)  # a setting sentence was added
    assert any("calls the ball blue" in why for _, why in results[0].dropped)
    assert RetrievalUpsampler(index)(PROMPTS[0]) == out  # deterministic, and usable as a plain hook


def test_upsampled_is_closer_to_the_captions(index, results):
    vecs = index.embed(PROMPTS + [r.upsampled for r in results])
    best = (vecs @ index.embeddings.T).max(dim=1).values
    before, after = best[:len(PROMPTS)], best[len(PROMPTS):]
    assert (after > before).all(), (before, after)


def test_long_and_empty_prompts_are_left_unchanged(index):
    up = RetrievalUpsampler(index, word_limit=8)
    long = "a red ball rolls slowly off the edge of a wooden table"
    r = up.upsample(long)
    assert r.skipped and r.upsampled == long and "above the limit of 8" in r.reason
    r = up.upsample("  ")
    assert r.skipped and r.reason == "empty prompt"
    r = RetrievalUpsampler(index, min_cosine=0.99).upsample("a red ball")
    assert r.upsampled == "A red ball." and not r.skipped and "no nearby caption" in r.reason


def test_sentences_and_normalize():
    assert sentences("A ball. It rolls!  The end") == ["A ball.", "It rolls!", "The end"]
    assert normalize_prompt("  a red   ball rolls") == "A red ball rolls."
    assert normalize_prompt("Why?") == "Why?"


# ----------------------------------------------------------------------------------------------- LLM

WORDS = ("a the ball cube red blue green table floor rolls falls robot arm camera wooden caption prompt video user "
         "assistant : . , rewrite").split()
@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    """A tiny random-init Llama with a word-level tokenizer and a chat template, saved locally."""
    from conftest import save_tiny_llama

    out = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(out, WORDS)
    return out


def test_llm_plumbing_and_fallback(tiny_llm, index):
    llm = LLMUpsampler(tiny_llm, index=index, k=2, max_new_tokens=6)
    text = llm.build_input("A red ball rolls.", [CAPTIONS[0]])
    assert text.startswith("user : Rewrite") and CAPTIONS[0] in text and text.endswith("assistant : ")
    gen = llm.generate(text)
    assert len(gen.split()) == 6 and gen == llm.generate(text)  # greedy, new tokens only
    r = llm.upsample("a red ball rolls off a table")
    assert r.method == "retrieval" and "the model's output" in r.reason and r.dropped[0][0] == gen
    assert r.upsampled == RetrievalUpsampler(index)("a red ball rolls off a table")
    bare = LLMUpsampler(tiny_llm, max_new_tokens=4).upsample("a red ball")
    assert bare.method == "prompt" and bare.upsampled == "A red ball."
    assert LLMUpsampler(tiny_llm, word_limit=2).upsample("a red ball rolls").skipped


def test_llm_output_is_checked(tiny_llm, monkeypatch):
    llm = LLMUpsampler(tiny_llm)
    good = "A red ball rolls off a wooden table onto a gray floor."
    monkeypatch.setattr(llm, "generate", lambda text, frames=None: good)
    r = llm.upsample("a red ball rolls off a table")
    assert r.method == "llm" and r.upsampled.endswith("gray floor.") and r.reason == ""
    monkeypatch.setattr(llm, "generate", lambda text, frames=None: "A red ball and a blue ball roll off a table.")
    assert "contradicts" in llm.upsample("a red ball rolls off a table").reason
    monkeypatch.setattr(llm, "generate", lambda text, frames=None: "A ball rolls on the floor.")
    assert "drops 'red', 'table'" in llm.upsample("a red ball rolls off a table").reason


def test_llm_needs_a_local_model_directory(tmp_path):
    with pytest.raises(TextError, match=re.escape(str(tmp_path)) + ".*not a model directory"):
        LLMUpsampler(tmp_path)


# ------------------------------------------------------------------------------------------ Video2World

def test_video2world_uses_the_caption(index):
    up = RetrievalUpsampler(index)
    cap = ("The red ball rolls toward the camera and drops onto a gray floor. The blue ball bounces. "
           "A pink cube stays where it is.")
    r = upsample_video2world("a red ball rolls off the table", cap, up)
    assert r.upsampled.startswith("A red ball rolls off the table. The red ball rolls toward the camera and drops")
    assert "A pink cube stays where it is." in r.upsampled and "blue" not in r.upsampled
    assert ("The blue ball bounces.", "calls the ball blue; the prompt's ball has red") in r.dropped
    assert upsample_video2world("a red ball", None, up).upsampled == up("a red ball")
    empty = upsample_video2world("", "A green cube slides across a table.", up)
    assert empty.upsampled.startswith("A green cube slides across a table.") and "caption stands in" in empty.reason


def test_video_caption_sources():
    from conftest import moving_frames

    frames = moving_frames(t=12, h=48, w=64)
    assert video_caption(frames, lambda f: "  A red square  moves. ") == "A red square moves."
    text = video_caption(frames, fps=12.0)
    assert re.fullmatch(r"A .*camera films a .*scene with .* motion for 1\.0 seconds\.", text)
    assert video_caption(None) is None and video_caption(frames[:0]) is None


def test_vlm_sees_the_middle_frame_and_the_caption(tiny_vlm):
    vlm = LLMUpsampler(tiny_vlm, max_new_tokens=4)
    assert vlm.vlm
    text = vlm.build_input("A red ball.", [], "A ball moves.", image=True)
    assert text.startswith("user : <image> Rewrite") and "The input video shows: A ball moves." in text
    frames = np.random.default_rng(0).integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)
    assert len(vlm.generate(text, frames).split()) == 4
    r = upsample_video2world("a red ball", "A red ball moves fast. A blue cube rests.", vlm, frames=frames)
    assert r.method == "prompt" and r.upsampled == "A red ball. The red ball moves fast. A blue cube rests."
