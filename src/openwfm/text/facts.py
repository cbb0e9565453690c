"""The facts of a prompt, from a small lexicon rather than a parser (the prompt upsampler's rules, Cosmos
paper sec. 7): facts(text) finds noun phrases (a determiner, number, preposition or sentence start,
attribute words, then a noun) with their colors, sizes, materials, shapes and counts; a color after a
verb ("the ball is blue") belongs to the phrase before it. conflict and unfit say why a sentence
would contradict, or not fit, what is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[.,;:!?]")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def _forms(*bases: str) -> set[str]:
    """A verb's forms: push pushes pushed pushing; move moving moved; pan pans panned panning."""
    out = set()
    for b in bases:
        out |= {b, b + "s", b + "es", b + "ed", b + "d", b + "ing", b[:-1] + "ing", b + b[-1] + "ing",
                b + b[-1] + "ed"}
    return out


# ------------------------------------------------------------------------------------------------ lexicon
COLORS = {w: w for w in ("red green blue yellow orange purple cyan pink white black brown gray beige tan slate "
                         "violet magenta gold golden silver teal navy maroon turquoise crimson olive lime indigo "
                         "scarlet cream ivory khaki").split()} | {"grey": "gray", "golden": "gold"}
COLOR_MODIFIERS = {"dark", "light", "pale", "bright", "deep", "pastel"}
SIZES = {**dict.fromkeys(("small", "tiny", "little", "miniature", "mini"), "small"),
         **dict.fromkeys(("medium", "medium-sized", "mid-sized"), "medium"),
         **dict.fromkeys(("large", "big", "huge", "giant", "enormous", "massive"), "large")}
MATERIALS = {**dict.fromkeys(("wooden", "wood"), "wood"),
             **dict.fromkeys(("metal", "metallic", "steel", "iron"), "metal"),
             **{w: w for w in "plastic glass rubber stone marble concrete paper cardboard ceramic fabric".split()}}
SHAPES = {w: w for w in "round square rectangular cylindrical spherical cubic flat triangular oval".split()}
NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
ADJECTIVES = set("other another second third fourth fifth textured shiny matte striped checkered steady new old "
                 "empty full open closed single bright dark dim soft warm cold cool sunny cloudy rainy busy quiet "
                 "wet dry heavy smooth rough".split())
DETERMINERS = set("a an the this that these those some each every several many few no any his her its their my "
                  "your our".split())
PREPOSITIONS = set("on onto in into at of from to with across along over under above below behind beside near "
                   "past around through toward towards between by off against inside outside up down out".split())
PRONOUNS = set("it they he she this these those there its their them".split())
STOPWORDS = DETERMINERS | PREPOSITIONS | PRONOUNS | set(
    "and or but then while as is are was were be been being has have had do does did not than so very too also "
    "where when which who what that just still once twice again all both everything nothing something it's "
    "end rest place way time side front back top bottom middle left right straight clockwise counterclockwise "
    "anticlockwise away slowly quickly about around degrees times can will".split())
NOUNS = set("ball cube block box sphere cylinder capsule cone pyramid disk ring bottle cup mug bowl plate glass "
            "toy object objects table floor ground surface wall background sky room kitchen counter shelf desk "
            "robot arm gripper hand finger car truck bus bike bicycle vehicle road street lane highway "
            "intersection sidewalk tree building house person man woman child dog cat bird camera light lighting "
            "sun shadow scene water grass field park city drone obstacle obstacles door window chair".split())
SYNONYMS = {"sphere": "ball", "box": "block", "brick": "block", "automobile": "car", "bicycle": "bike",
            "lighting": "light", "tabletop": "table", "people": "person", "men": "man", "women": "woman",
            "children": "child", "leaves": "leaf", "shelves": "shelf", "boxes": "block", "glasses": "glass",
            "buses": "bus", "grey": "gray", "golden": "gold"}
SETTING = set("floor ground table surface wall background sky room light shadow camera scene road street lane "
              "grass field horizon ceiling carpet".split())
OUTDOOR = set("park street road highway field forest beach city garden sky outdoors outside mountain river lake "
              "sea ocean desert sidewalk intersection traffic bridge tunnel parking car truck bus".split())
INDOOR = set("table floor room kitchen indoors inside shelf desk ceiling carpet counter".split())
_MOTION = ("roll", "fall", "drop", "bounce", "slide", "move", "drive", "push", "pick", "lift", "throw", "fly", "spin",
           "rotate", "run", "walk", "collide", "knock", "tumble", "swing", "carry", "pour", "jump", "chase", "turn",
           "travel", "float", "crash", "topple", "grasp", "hit", "kick", "toss", "wobble")
_OTHER = ("curve", "stand", "mount", "come", "leave", "reach", "look", "appear", "sit", "hold", "show", "film", "watch",
          "start", "stop", "begin", "lie", "hang", "follow", "pass", "head", "face", "land", "settle", "enter", "exit",
          "cross", "approach", "wait", "make", "take", "go", "miss", "pan", "tilt", "zoom", "orbit", "circle")
_IRREGULAR = {"thrown": "throw", "threw": "throw", "flies": "fly", "flew": "fly", "fell": "fall", "ran": "run",
              "drove": "drive", "seen": "see", "shown": "show", "taken": "take", "made": "make", "held": "hold",
              "stood": "stand", "sat": "sit", "lay": "lie", "lies": "lie", "went": "go", "gone": "go", "came": "come",
              "goes": "go"}
VERB_BASE = {**{f: b for b in _MOTION + _OTHER for f in _forms(b)}, **_IRREGULAR}  # "driving" -> "drive"
MOTION = {f for f, b in VERB_BASE.items() if b in _MOTION} | {"moving"}
VERBS = set(VERB_BASE) | {"left"}
STATIC = _forms("stay", "remain", "rest") | {"stationary", "motionless", "still", "static", "unmoving"}
# Words of one group exclude each other's class (a camera that pans does not also circle).
EXCLUSIVE = [
    {"left": "left", "leftward": "left", "right": "right", "rightward": "right", "straight": "straight"},
    {"clockwise": "cw", "counterclockwise": "ccw", "anticlockwise": "ccw", "counter-clockwise": "ccw"},
    {"toward": "toward", "towards": "toward", "away": "away"},
    {**dict.fromkeys(_forms("pan"), "pan"), **dict.fromkeys(_forms("tilt"), "tilt"),
     **dict.fromkeys(_forms("zoom"), "zoom"), **dict.fromkeys(_forms("orbit", "circle"), "orbit"),
     **dict.fromkeys(_forms("dolly", "track"), "dolly"), "static": "static", "handheld": "handheld"},
    {**dict.fromkeys(("slow", "slowly", "gently", "gentle"), "slow"),
     **dict.fromkeys(("fast", "quickly", "quick", "rapidly", "rapid", "swiftly"), "fast")},
    {**dict.fromkeys(_forms("pick", "lift", "grasp", "raise", "grab"), "pick"),
     **dict.fromkeys(_forms("push", "knock", "shove"), "push")},
    {"once": "1", "twice": "2", "thrice": "3"},
    {"rest": "rest", "moving": "moving"},  # how a clip ends: "comes to rest" / "is still moving"
]
ATTRIBUTES = {"colors": COLORS, "sizes": SIZES, "materials": MATERIALS, "shapes": SHAPES}


def lemma(word: str) -> str:
    """Singular, canonical form of a noun by a few rules (no dictionary is shipped)."""
    w = word.lower()
    if w in SYNONYMS:
        return SYNONYMS[w]
    if len(w) > 3 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith(("sses", "shes", "ches", "xes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")):
        w = w[:-1]
    return SYNONYMS.get(w, w)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(" ".join(text.split())) if s.strip()]


def content_words(text: str) -> list[str]:
    """The words that carry content: lemmas of every word but stopwords and punctuation."""
    return [lemma(t) for t in tokens(text) if t[0].isalnum() and t not in STOPWORDS]


@dataclass
class Thing:
    """One noun phrase: its head noun (lemma), the words before it, and its attributes."""

    noun: str
    modifiers: list[str] = field(default_factory=list)
    colors: set[str] = field(default_factory=set)
    sizes: set[str] = field(default_factory=set)
    materials: set[str] = field(default_factory=set)
    shapes: set[str] = field(default_factory=set)
    count: int | None = None  # a number word, a digit, or a/an (1)
    definite: bool = False  # "the ..."
    other: bool = False  # "other"/"another"/"second ...": not the one named before


@dataclass
class Facts:
    things: list[Thing]
    nouns: set[str]  # head nouns and the nouns before them ("robot arm": robot, arm)
    colors: set[str]
    words: set[str]  # content words
    raw: set[str] = field(default_factory=set)  # every token
    moving: bool = False  # a motion verb (not the camera's)
    still: bool = False  # "stays", "remains", "in place", "nothing moves", ...


def _is_noun(t: str, open_: bool) -> bool:
    if t in NOUNS or t in SYNONYMS:
        return True
    return (open_ and t[0].isalpha() and t not in STOPWORDS and t not in VERBS and t not in STATIC
            and not t.endswith(("ly", "ing")) and not (t.endswith("ed") and len(t) > 4))


def facts(text: str) -> Facts:
    """Noun phrases with attributes, nouns, colors and content words of ``text`` (see the module doc)."""
    things: list[Thing] = []
    for sent in sentences(text) or [text]:
        toks = tokens(sent)
        attrs: dict[str, set[str]] = {k: set() for k in ATTRIBUTES}
        count, definite, other, open_, last, prev_noun = None, False, False, True, None, False
        for i, t in enumerate(toks + ["."]):
            nxt = toks[i + 1] if i + 1 < len(toks) else "."
            kind = next((k for k, lex in ATTRIBUTES.items() if t in lex), None)
            if t in ("glass", "stone", "paper", "metal", "wood") and not (nxt in NOUNS or nxt in SYNONYMS):
                kind = None  # "a glass", "made of wood": a noun here
            if kind:
                attrs[kind].add(ATTRIBUTES[kind][t])
                open_ = True
            elif t in COLOR_MODIFIERS and nxt in COLORS or t in ADJECTIVES or (t == "and" and nxt in COLORS):
                other |= t in ("other", "another", "second", "third", "fourth", "fifth")
                open_ = True
            elif t in NUMBERS or t.isdigit() or t in ("a", "an"):
                count, open_ = (NUMBERS.get(t, 1) if not t.isdigit() else int(t)), True
            elif _is_noun(t, open_ or any(attrs.values())):
                if last is not None and last is things[-1] and prev_noun and not any(attrs.values()):
                    last.modifiers.append(last.noun)  # "robot arm": a compound, its head is the last noun
                    last.noun = lemma(t)
                else:
                    last = Thing(lemma(t), [], *(attrs[k] for k in ATTRIBUTES), count, definite, other)
                    things.append(last)
                attrs = {k: set() for k in ATTRIBUTES}
                count, definite, other, open_ = None, False, False, False
                prev_noun = True
                continue
            else:  # a verb, a stopword or punctuation ends the phrase
                if any(attrs.values()) and things and last is not None:  # "the ball is blue"
                    for k in ATTRIBUTES:
                        getattr(last, k).update(attrs[k])
                attrs = {k: set() for k in ATTRIBUTES}
                count, other = None, False
                definite = t == "the"
                open_ = t in DETERMINERS or t in PREPOSITIONS or t in (",", "and", ";", ":")
            prev_noun = False
    nouns = {n for th in things for n in [th.noun, *map(lemma, th.modifiers)]}
    raw, low = set(tokens(text)), " ".join(tokens(text))
    still = bool(raw & STATIC - {"still"}) or any(p in low for p in (" in place", "where it is", "where they are",
                                                                      "still ,", "still .", "stand still"))
    return Facts(things, nouns, {COLORS[t] for t in raw if t in COLORS}, set(content_words(text)), raw,
                 bool(raw & MOTION), still)


def missing_facts(prompt: str, text: str) -> list[str]:
    """The nouns and colors of ``prompt`` that ``text`` does not mention (as lemmas)."""
    p, have = facts(prompt), set(content_words(text))
    return sorted((p.nouns | p.colors) - have)


def _attrs(things: list[Thing], kind: str) -> set[str]:
    return set().union(*(getattr(t, kind) for t in things))


def conflict(sentence: str, known: Facts) -> str | None:
    """Why ``sentence`` contradicts ``known`` (the prompt's facts, plus sentences already taken), or None.

    1. it gives a known object (same head noun) a color not named for it (any color, if it had none);
    2. ... a different size, material or shape word than the known one;
    3. ... a different count (a number word, a digit or a/an), unless it says "other";
    4. it shares an object with ``known`` and picks another word of an exclusive group: left/right/straight,
       clockwise/counterclockwise, toward/away, pan/tilt/zoom/orbit/dolly, slow/fast, pick up/push,
       once/twice, comes to rest/still moving ("everything"/"nothing" share every object);
    5. it keeps a known moving object still ("stays", "in place"), or moves a known still one, or says
       nothing moves while something does;
    6. it puts an outdoor prompt indoors (table, floor, room, ...) or an indoor one outdoors (road, sky, ...).
    """
    s = facts(sentence)
    for th in s.things:
        ref = [k for k in known.things if k.noun == th.noun]
        if not ref:
            continue
        if extra := th.colors - _attrs(ref, "colors"):
            had = "/".join(sorted(_attrs(ref, "colors"))) or "no color"
            return f"calls the {th.noun} {'/'.join(sorted(extra))}; the prompt's {th.noun} has {had}"
        for kind in ("sizes", "materials", "shapes"):
            if _attrs(ref, kind) and (extra := getattr(th, kind) - _attrs(ref, kind)):
                return f"calls the {th.noun} {'/'.join(sorted(extra))}, not {'/'.join(sorted(_attrs(ref, kind)))}"
        counts = {k.count for k in ref if k.count is not None}
        if th.count is not None and not th.other and counts and th.count not in counts:
            return f"counts {th.count} {th.noun}(s); the prompt has {'/'.join(map(str, sorted(counts)))}"
    shared = s.nouns & known.nouns
    if shared or s.raw & {"everything", "nothing"}:  # "everything comes to rest": about every object
        for group in EXCLUSIVE:
            mine, theirs = {group[t] for t in s.raw if t in group}, {group[t] for t in known.raw if t in group}
            if mine and theirs and mine - theirs:
                return f"says {'/'.join(sorted(mine - theirs))} where the prompt says {'/'.join(sorted(theirs))}"
    actors = shared - SETTING
    if actors and s.still and known.moving and not known.still:
        return f"keeps the moving {'/'.join(sorted(actors))} still"
    if actors and s.moving and known.still and not known.moving:
        return f"moves the still {'/'.join(sorted(actors))}"
    if "nothing" in s.raw and s.raw & MOTION and known.moving:
        return "says nothing moves; the prompt has motion"
    for here, there, where in ((OUTDOOR, INDOOR, "outdoors"), (INDOOR, OUTDOOR, "indoors")):
        if known.nouns & here and not known.nouns & there and (bad := s.nouns & there):
            return f"puts the {where} scene at a {'/'.join(sorted(bad))}"
    return None


def repeats(s: Facts, known: Facts) -> str | None:
    """Why a sentence's facts add (almost) nothing to what is known, or None."""
    new = s.words - known.words
    return "repeats what the prompt says" if not new or len(new) < len(s.words) / 3 else None


def unfit(sentence: str, known: Facts, prompt: Facts, extends: bool = False) -> str | None:
    """Why a retrieved sentence would read badly after the prompt, though it contradicts nothing.
    ``extends``: the sentence tells the prompt's event in more detail (see ``_refer_back``), so it may name
    objects the prompt does not."""
    s, toks = facts(sentence), tokens(sentence)
    if toks and toks[0] in PRONOUNS - {"there"}:
        return f"starts with '{toks[0]}', which points to a sentence not taken"
    for th in s.things:
        if th.definite and th.noun not in known.nouns and th.noun not in SETTING:
            return f"refers to 'the {th.noun}', which the prompt does not introduce"
    if why := repeats(s, known):
        return why
    for th in s.things:
        if th.count == 1 and not th.other and th.noun in known.nouns - SETTING:
            return f"introduces the prompt's {th.noun} a second time"
    ours = [t.noun for t in s.things if t.noun in prompt.nouns and (t.noun not in SETTING or t.noun == "camera")]
    new = [t.noun for t in s.things if t.noun not in known.nouns and t.noun not in SETTING]
    if ours and new and not extends:
        return f"puts the prompt's {ours[0]} together with a {new[0]} it does not mention"
    return None
