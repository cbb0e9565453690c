"""Prompt upsampler (Cosmos paper sec. 7): short user prompts rewritten in the style of the long, detailed
training captions, keeping every fact of the prompt and contradicting none.

- ``RetrievalUpsampler`` (offline default): the prompt, then sentences of the nearest training captions
  (``CaptionIndex``, MiniLM space) that pass the fact rules below;
- ``LLMUpsampler``: a causal LM (or a VLM, given frames) from a local directory, few-shot with the
  nearest captions, its output checked by the same rules (fallback: the retrieval result);
- ``upsample_video2world``: the prompt, then the input video's caption (``video_caption``), then
  retrieval details.

The facts of a text and the rules that compare them live in ``openwfm.text.facts``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openwfm.text.encoder import TextError
from openwfm.text.facts import (SETTING, VERB_BASE, Facts, conflict, facts, missing_facts, repeats, sentences,
                                tokens, unfit)

# --------------------------------------------------------------------------------------------- upsampling
@dataclass
class UpsampleResult:
    prompt: str
    upsampled: str
    skipped: bool  # True: left unchanged (empty or above the word limit)
    reason: str = ""  # why it was skipped, fell back, or got nothing added
    neighbours: list[tuple[str, float]] = field(default_factory=list)  # (caption, cosine), best first
    method: str = "retrieval"  # "retrieval" | "llm" | "prompt" (unchanged)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (sentence, why it was left out)


def normalize_prompt(prompt: str) -> str:
    """The prompt verbatim but for one capital letter at the start and a final period."""
    p = " ".join(str(prompt).split())
    if p and p[-1] not in ".!?":
        p += "."
    return p[:1].upper() + p[1:]


def _skip(prompt: str, word_limit: int) -> str:
    n = len(str(prompt).split())
    return "empty prompt" if n == 0 else f"{n} words, above the limit of {word_limit}" if n > word_limit else ""


class RetrievalUpsampler:
    """Cosmos sec. 7's upsampler without a model: the prompt, then sentences of the ``k`` nearest captions.

    Rules, in order (deterministic; ``result.dropped`` says why each sentence was left out):
    - empty prompts and prompts above ``word_limit`` words are returned unchanged (``skipped``);
    - the prompt comes first, verbatim but for the first capital and a final period;
    - a sentence opening with "A <prompt object>" and sharing a verb with the prompt says "The ..." instead;
    - candidates are the sentences of the nearest captions with cosine >= ``min_cosine``, those about the
      setting (floor, table, camera, light, ...) or about the prompt's objects first, nearest caption first;
      sentences about other objects only from captions with cosine >= ``other_cosine``;
    - a candidate is dropped when it contradicts the prompt or a sentence already taken (``conflict``:
      colors, sizes, materials, shapes, counts, exclusive directions/camera moves/actions, still/moving,
      indoor/outdoor), or reads badly after it (``unfit``: starts with a pronoun, says "the X" of an X
      not introduced, repeats the prompt, introduces a prompt object again with "a", or puts a prompt
      object (or the camera) together with an object the prompt does not mention, unless it tells the
      prompt's event in more detail: the "The ..." sentences above);
    - sentences are added until the text reaches ``target_words`` (default: the median length of the
      nearest captions), never past 1.25 times that (one sentence up to the target is always allowed);
      then ordered: about the prompt's objects, about other objects, setting last.
    """

    def __init__(self, index, word_limit: int = 30, k: int = 8, target_words: int | None = None,
                 min_cosine: float = 0.35, other_cosine: float = 0.5):
        self.index, self.word_limit, self.k, self.min_cosine = index, word_limit, k, min_cosine
        self.other_cosine = other_cosine
        self.target_words = target_words  # None: the median length of the nearest captions

    def __call__(self, prompt: str) -> str:
        return self.upsample(prompt).upsampled

    def upsample(self, prompt: str, first: list[str] | None = None) -> UpsampleResult:
        """``first``: sentences that go right after the prompt when they contradict nothing (Video2World:
        the input video's caption)."""
        if reason := _skip(prompt, self.word_limit):
            return UpsampleResult(prompt, prompt, True, reason, method="prompt")
        text = normalize_prompt(prompt)
        neighbours = self.index.nearest(text, self.k)
        pfacts = facts(text)
        head, dropped = _agreeing(first or [], text)
        known = facts(" ".join([text, *head]))
        words = sum(len(s.split()) for s in [text, *head])
        close = sorted(len(c.split()) for c, cos in neighbours if cos >= self.min_cosine)
        target = self.target_words or (close[len(close) // 2] if close else self.index.median_words)
        seen, cands = set(head), []
        for rank, (cap, cos) in enumerate(neighbours):
            for pos, s in enumerate(sentences(cap) if cos >= self.min_cosine else []):
                ref, kind = _refer_back(s, pfacts), _kind(s, pfacts)
                if ref not in seen and (kind != 1 or cos >= self.other_cosine):
                    seen.add(ref)
                    cands.append((kind, rank, pos, ref, ref != s))
        taken: list[tuple[int, str]] = []
        for kind, _, _, s, extends in sorted(cands, key=lambda c: (c[0] == 1, c[1], c[2])):
            if words >= target:
                break
            if words + len(s.split()) > 1.25 * target and (taken or len(s.split()) > target):
                dropped.append((s, "too long for the target length"))
            elif why := conflict(s, known) or unfit(s, known, pfacts, extends):
                dropped.append((s, why))
            else:
                taken.append((kind, s))
                words += len(s.split())
                known = facts(" ".join([text, *head, *(t for _, t in taken)]))
        body = [s for _, s in sorted(taken, key=lambda t: t[0])]  # stable: taken order within a kind
        out = " ".join([text, *head, *body])
        reason = "" if head or body else "no nearby caption adds detail without contradicting the prompt"
        return UpsampleResult(prompt, out, False, reason, neighbours, "retrieval", dropped)


def _refer_back(sentence: str, prompt: Facts, same_video: bool = False) -> str:
    """"A car drives ..." -> "The car drives ...": a sentence that opens with the prompt's single subject
    doing what the prompt says (a shared verb; any verb when ``same_video``: the input video's caption)
    refers back to it instead of introducing it again."""
    s, toks = facts(sentence), tokens(sentence)
    if not s.things or toks[0] not in ("a", "an") or s.things[0].noun not in prompt.nouns - SETTING:
        return sentence
    counts = {t.count for t in prompt.things if t.noun == s.things[0].noun}
    verbs = {VERB_BASE[t] for t in s.raw if t in VERB_BASE} & {VERB_BASE[t] for t in prompt.raw if t in VERB_BASE}
    return "The" + sentence[len(toks[0]):] if counts <= {1, None} and (verbs or same_video) else sentence


def _kind(sentence: str, prompt: Facts) -> int:
    """0: about the prompt's objects; 1: about other objects; 2: about the setting only."""
    nouns = {t.noun for t in facts(sentence).things}
    if nouns & (prompt.nouns - SETTING):
        return 0
    return 2 if nouns and nouns <= SETTING else 1


def check_upsampled(prompt: str, text: str) -> str | None:
    """Why ``text`` is no faithful upsampling of ``prompt`` (a model's output), or None: it must mention
    every noun and color of the prompt, and no sentence may contradict it (``conflict``)."""
    if not text.strip():
        return "is empty"
    if missing := missing_facts(prompt, text):
        return f"drops {', '.join(repr(m) for m in missing)}"
    p = facts(prompt)
    for s in sentences(text):
        if why := conflict(s, p):
            return f"contradicts the prompt ('{s}' {why})"
    return None


INSTRUCTION = ("Rewrite the user's prompt as one detailed video caption in the style of the example captions. "
               "Keep every object, color, count and action of the prompt and contradict none of them; add details "
               "of the setting, the surfaces, the lighting and the camera.")


class LLMUpsampler:
    """Cosmos sec. 7's upsampler with a model from a local directory (never a download): a causal LM, or a
    vision-language model (config with ``vision_config``) that also sees the middle input frame for
    Video2World. Greedy decoding, new tokens only, the nearest captions of ``index`` as few-shot examples.
    The output must pass ``check_upsampled``; otherwise the result is the retrieval upsampler's (with an
    index) or the prompt itself, and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", index=None, word_limit: int = 30, k: int = 3,
                 max_new_tokens: int = 160):
        from openwfm.text.encoder import _quiet_transformers

        path = Path(path)
        if not (path / "config.json").is_file():
            raise TextError(f"{path}: not a model directory (no config.json); give a local path")
        _quiet_transformers()
        import transformers as tf

        try:
            self.vlm = hasattr(tf.AutoConfig.from_pretrained(path, local_files_only=True), "vision_config")
            self.processor = tf.AutoProcessor.from_pretrained(path, local_files_only=True) if self.vlm else None
            self.tokenizer = self.processor.tokenizer if self.vlm else tf.AutoTokenizer.from_pretrained(
                path, local_files_only=True)
            auto = tf.AutoModelForImageTextToText if self.vlm else tf.AutoModelForCausalLM
            self.model = auto.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise TextError(f"{path}: cannot load the language model ({e})") from e
        self.index, self.word_limit, self.k, self.max_new_tokens = index, word_limit, k, max_new_tokens
        self.retrieval = RetrievalUpsampler(index, word_limit) if index is not None else None

    def __call__(self, prompt: str) -> str:
        return self.upsample(prompt).upsampled

    def build_input(self, prompt: str, examples: list[str], context: str | None = None, image: bool = False) -> str:
        """The model's input: the chat template around the instruction (a plain text without one)."""
        text = INSTRUCTION + "".join(f"\nExample caption: {c}" for c in examples)
        text += (f"\nThe input video shows: {context}" if context else "") + f"\nPrompt: {prompt}"
        holder = self.processor if self.vlm else self.tokenizer
        if getattr(holder, "chat_template", None):
            content = [{"type": "image"}, {"type": "text", "text": text}] if image else text
            if self.vlm and not image:
                content = [{"type": "text", "text": text}]
            return holder.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                              tokenize=False)
        token = getattr(self.processor, "image_token", None) if image else None
        return (f"{token}\n" if token else "") + text + "\nCaption:"

    def generate(self, text: str, frames: np.ndarray | None = None) -> str:
        import torch

        if frames is not None and self.vlm:
            from PIL import Image

            frames = np.asarray(frames)
            middle = Image.fromarray(frames[len(frames) // 2])
            inputs = self.processor(text=[text], images=[middle], return_tensors="pt")
        else:
            inputs = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return " ".join(new.split())

    def upsample(self, prompt: str, frames: np.ndarray | None = None, context: str | None = None) -> UpsampleResult:
        """``frames`` (uint8 (T, H, W, 3)): shown to a VLM; ``context``: the input video's caption."""
        if reason := _skip(prompt, self.word_limit):
            return UpsampleResult(prompt, prompt, True, reason, method="prompt")
        text = normalize_prompt(prompt)
        neighbours = self.index.nearest(text, self.k) if self.index is not None else []
        image = frames is not None and self.vlm
        query = self.build_input(text, [c for c, _ in neighbours], context, image)
        out = self.generate(query, frames if image else None)
        if why := check_upsampled(text, out):
            if self.retrieval is not None:
                fb = self.retrieval.upsample(prompt, first=sentences(context) if context else None)
            else:
                fb = UpsampleResult(prompt, " ".join([text, *_agreeing(sentences(context or ""), text)[0]]), False,
                                    method="prompt", neighbours=neighbours)
            fb.reason = f"the model's output {why}; used the {fb.method} result instead"
            fb.dropped.insert(0, (out, why))
            return fb
        return UpsampleResult(prompt, out, False, "", neighbours, "llm")


def _agreeing(candidates: list[str], prompt: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(taken, dropped with why): the sentences that neither contradict nor repeat the prompt and those before."""
    known, taken, dropped = facts(prompt), [], []
    for s in (_refer_back(c, known, same_video=True) for c in candidates):
        if why := conflict(s, known) or repeats(facts(s), known):
            dropped.append((s, why))
        else:
            taken.append(s)
            known = facts(" ".join([prompt, *taken]))
    return taken, dropped


def video_caption(frames: np.ndarray | None, captioner=None, fps: float = 24.0) -> str | None:
    """The input video's caption for Video2World: a VLM's (``captioner``: a local model directory, or a
    callable such as ``openwfm.text.caption.VLMCaptioner``), else the curator's template caption from the
    measured camera motion, motion and brightness (no content words); None without frames."""
    if frames is None or np.asarray(frames).ndim != 4 or len(frames) == 0:
        return None
    frames = np.asarray(frames)
    if captioner is not None:
        if isinstance(captioner, (str, os.PathLike)):
            from openwfm.text.caption import VLMCaptioner

            captioner = VLMCaptioner(captioner)
        return " ".join(str(captioner(frames)).split()) or None
    from openwfm.text.caption import template_caption
    from openwfm.video.motion import motion_scores

    info = {**motion_scores(frames, fps), "brightness": float(frames.mean() / 255), "duration": len(frames) / fps}
    return template_caption(info)


def upsample_video2world(prompt: str, caption: str | None, upsampler,
                         frames: np.ndarray | None = None) -> UpsampleResult:
    """Video2World (Cosmos sec. 7): the prompt, then the sentences of the input video's ``caption`` that do
    not contradict it, then retrieval details. An empty prompt: the caption stands in for it. With an
    ``LLMUpsampler`` the caption (and ``frames``, for a VLM) go to the model."""
    if isinstance(upsampler, LLMUpsampler):
        return upsampler.upsample(prompt, frames=frames, context=caption)
    if not caption:
        return upsampler.upsample(prompt)
    if not str(prompt).strip():
        r = upsampler.upsample(caption)
        r.prompt = prompt
        r.reason = "empty prompt: the video's caption stands in" + (f"; {r.reason}" if r.reason else "")
        return r
    return upsampler.upsample(prompt, first=sentences(caption))
