"""The pre-guard's labeled prompt sets: what the classifier is trained on and what it is measured on.

Every prompt is a video-generation prompt built from a fixed seed as frame x clause x slots. The clauses
live in ``assets/guardrail/prompt_clauses.txt`` (sections ``[SPLIT unsafe|safe NAME]``), the frames and
slots below:

- **unsafe** clauses in 8 categories (violence, gore, sexual, minors, self-harm, weapons, hate, drugs;
  19-22 train and 6-8 held-out clauses each), written mostly *without* blocklist terms so that they test
  the classifier, not the keyword list;
- **safe** clauses: the physical world (robotics, driving, nature, household physics, people at work and
  play, and short neutral prompts such as "a cat" or "restart the server"; 66 train / 16 held-out) and
  **tricky** benign clauses full of words a keyword list trips on ("kill the process", "shoot a video",
  "bleeding edge", "bath bomb", "a killer whale", "a lightning strike", "a comedian bombs" ...;
  74 train / 24 held-out);
- slots (who, setting, shot, style, camera move) and frames drawn from the same pools for safe and unsafe
  clauses, so that only the clause tells the classes apart.

TRAIN and HELDOUT share no clause, frame, shot, style, setting or actor: held-out prompts are written with
different templates and wordings (13 train frames such as ``"{shot}: {clause} {setting}."``, 5 held-out
ones such as ``"Generate a clip where {clause} {setting}."``), so held-out rates measure generalization,
not memorization. Sizes (``python -m openwfm.guardrail.prompt_sets`` prints them with hashes): train
1,080 = 480 unsafe (60 per category) + 400 physical + 200 tricky; held-out 430 = 200 unsafe (25 per
category) + 150 physical + 80 tricky. ``obfuscate()`` rewrites a prompt the way people try to get past a
keyword list (leetspeak, spacing, punctuation, look-alike letters, zero-width characters, case,
stretched letters, typos, accents).

The unsafe clauses are short and clinical on purpose: they name the harm without dwelling on it.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

CATEGORIES = ("violence", "gore", "sexual", "minors", "self-harm", "weapons", "hate", "drugs")
SIZES = {"train": {"unsafe": 60, "physical": 400, "tricky": 200},
         "heldout": {"unsafe": 25, "physical": 150, "tricky": 80}}


@dataclass(frozen=True)
class Prompt:
    text: str
    unsafe: bool
    category: str            # an unsafe category, or "physical" / "tricky"
    split: str               # "train" | "heldout"


CLAUSES = Path(__file__).resolve().parent.parent / "assets" / "guardrail" / "prompt_clauses.txt"
WHOLE = CLAUSES.with_name("prompts_train.txt")


def read_sections(path: str | os.PathLike, valid, form: str) -> dict[tuple[str, ...], list[str]]:
    """``{section words: [line, ...]}`` of a file of ``[section]`` headers, one entry a line, ``#`` comments;
    ``valid(words)`` says whether a header is allowed (``form`` describes one for the error)."""
    out: dict[tuple[str, ...], list[str]] = {}
    key = None
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            key = tuple(line.strip("[]").split())
            if not valid(key):
                raise ValueError(f"{path}:{n}: a section is {form}, got {line!r}")
            out.setdefault(key, [])
        elif key is None:
            raise ValueError(f"{path}:{n}: an entry before the first [section]")
        else:
            out[key].append(line)
    return out


def read_clauses(path: str | os.PathLike = CLAUSES) -> dict[tuple[str, str, str], list[str]]:
    """``{(split, "unsafe" | "safe", category or kind): [clause, ...]}`` from the clause file."""
    return read_sections(path, lambda k: len(k) == 3, "[SPLIT unsafe|safe NAME]")


SLOTS = {
    "train": {
        "who": ["a man", "a masked man", "a young man in a hoodie", "a soldier", "a tall woman", "a stranger",
                "an old farmer", "a teenager"],
        "setting": ["at night", "at dawn", "in the rain", "under harsh streetlights", "on a foggy morning",
                    "in bright daylight", "at sunset"],
        "shot": ["A close-up shot", "Handheld footage", "A cinematic video", "Security camera footage",
                 "Slow-motion video", "A wide shot"],
        "style": ["realistic, 4k", "cinematic lighting", "photorealistic", "shaky handheld camera", "film grain",
                  "high detail"],
        "frames": ["{shot}: {clause} {setting}.", "{clause} {setting}, {style}.", "{setting}, {clause}. {style}.",
                   "{shot} of the moment {clause}.",
                   "A scene where {clause} {setting}.", "Video prompt: {clause}. {style}.",
                   "{shot}, {setting}: {clause}.", "Show {clause}, {style}.",
                   "Footage: {clause}, {setting}.", "{style} video. {clause}.", "Animate this: {clause}.",
                   "Cinematic shot where {clause}.", "{clause}."],
    },
    "heldout": {
        "who": ["a woman in a red coat", "a bearded biker", "a security guard", "a bald man in a suit",
                "a college student", "an elderly neighbor", "a taxi driver"],
        "setting": ["late in the evening", "during a snowstorm", "under flickering neon light",
                    "in the early afternoon", "on a humid summer day"],
        "move": ["zooms in slowly", "pans across the scene", "tracks the action", "stays locked off",
                 "circles around"],
        "style": ["hyperreal 8k", "documentary style", "vhs aesthetic", "dramatic slow motion",
                  "anamorphic lens flare"],
        "frames": ["Generate a clip where {clause} {setting}.", "Make a short film scene in which {clause}. {style}.",
                   "{clause} {setting}; the camera {move}.", "I want a video showing how {clause}, {style}.",
                   "Render a realistic sequence: {clause}."],
    },
}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _compose(split: str, clauses: list[str], n: int, rng: random.Random) -> list[str]:
    """``n`` distinct prompts: each clause in turn (so all are used evenly) inside a random frame."""
    slots, out, tries = SLOTS[split], {}, 0
    while len(out) < n and tries < 50 * n:
        clause = clauses[tries % len(clauses)].format(who=rng.choice(slots["who"]))
        tries += 1
        fill = {k: rng.choice(v) for k, v in slots.items() if k not in ("who", "frames")}
        text = rng.choice(slots["frames"]).format(clause=clause, **fill)
        text = ". ".join(_cap(p) for p in text.split(". "))  # sentence starts
        out.setdefault(text, None)
    return list(out)


def prompt_set(split: str) -> list[Prompt]:
    """The ``"train"`` or ``"heldout"`` prompts, reproducibly (fixed seeds)."""
    if split not in SIZES:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    clauses, out = read_clauses(), []
    for label, names in (("unsafe", CATEGORIES), ("safe", ("physical", "tricky"))):
        for name in names:
            rng = random.Random(f"openwfm-guard:{split}:{name}")
            n = SIZES[split]["unsafe" if label == "unsafe" else name]
            texts = _compose(split, clauses[(split, label, name)], n, rng)
            out += [Prompt(t, label == "unsafe", name, split) for t in texts]
    return out


def whole_prompts(path: str | os.PathLike = WHOLE) -> list[Prompt]:
    """The whole training prompts written as people type them (``assets/guardrail/prompts_train.txt``):
    sections ``[unsafe CATEGORY]`` and ``[safe physical|tricky]``, one prompt a line."""
    sections = read_sections(path, lambda k: len(k) == 2 and (k[0] == "unsafe" and k[1] in CATEGORIES or k[0] == "safe"
                                                              and k[1] in ("physical", "tricky")),
                             "[unsafe CATEGORY] or [safe physical|tricky]")
    return [Prompt(line, key[0] == "unsafe", key[1], "train") for key, lines in sections.items() for line in lines]


def training_set() -> list[Prompt]:
    """What the shipped classifier learns from: the composed TRAIN prompts and the whole ones."""
    return prompt_set("train") + whole_prompts()


def set_hash(prompts: list[Prompt]) -> str:
    """A short fingerprint of a prompt set (texts and labels), stored beside the trained classifier."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(f"{int(p.unsafe)}\t{p.text}\n".encode())
    return h.hexdigest()[:16]


TRICKS = ("leet", "spaced", "dotted", "punct", "confusable", "zero-width", "case", "stretch", "typo", "accents")
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_LOOKALIKE = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ"}
_ACCENT = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "n": "ñ", "c": "ç"}


def obfuscate_word(word: str, trick: str, rng: random.Random) -> str:
    """One word rewritten with one trick (see ``TRICKS``)."""
    if trick == "leet":
        return "".join(_LEET.get(c, c) if rng.random() < 0.7 else c for c in word)
    if trick == "spaced":
        return " ".join(word)
    if trick == "dotted":
        return ".".join(word)
    if trick == "punct":
        return "".join(c + (rng.choice("-_*.'~") if i % 2 == 0 and i < len(word) - 1 else "")
                       for i, c in enumerate(word))
    if trick == "confusable":
        return "".join(_LOOKALIKE.get(c, c) for c in word)
    if trick == "zero-width":
        return "\u200b".join(word[i:i + 2] for i in range(0, len(word), 2))
    if trick == "case":
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)
    if trick == "stretch":
        i = rng.randrange(len(word))
        return word[:i] + word[i] * 4 + word[i + 1:]
    if trick == "typo":
        if len(word) < 7:
            return word
        i = rng.randrange(1, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 else word[:i] + word[i + 1:]
    if trick == "accents":
        return "".join(_ACCENT.get(c, c) for c in word)
    raise ValueError(f"unknown obfuscation {trick!r}: one of {', '.join(TRICKS)}")


def obfuscate(text: str, rng: random.Random, trick: str | None = None, targets: list[str] | None = None) -> str:
    """``text`` with its ``targets`` (default: its two longest words) rewritten by one trick (default:
    drawn from ``TRICKS``)."""
    trick = trick or rng.choice(TRICKS)
    words = text.split(" ")
    if targets is None:
        bare = sorted({w.strip(".,:;").lower() for w in words}, key=lambda w: (-len(w), w))
        targets = bare[:2]
    out = []
    for w in words:
        core = w.strip(".,:;")
        out.append(w.replace(core, obfuscate_word(core, trick, rng)) if core and core.lower() in targets else w)
    return " ".join(out)


if __name__ == "__main__":
    for split in SIZES:
        ps = prompt_set(split)
        by = {}
        for p in ps:
            by[p.category] = by.get(p.category, 0) + 1
        print(split, len(ps), set_hash(ps), by)
        for p in random.Random(0).sample(ps, 6):
            print("  ", "UNSAFE" if p.unsafe else "safe  ", p.text)
