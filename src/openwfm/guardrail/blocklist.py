"""Pre-guard stage 1: a keyword blocklist that sees through obfuscation (Cosmos paper §7).

Cosmos blocks prompts that contain blocklisted words "after lemmatization", with fuzzy matching for
misspellings. Here a prompt goes through ``sequences()``:

1. per character: drop format characters (zero-width space/joiner, soft hyphen, BOM), NFKC + casefold,
   NFKD with combining marks dropped (diacritics), look-alike letters (Cyrillic, Greek, small capitals,
   regional-indicator emoji ...) mapped to Latin; every kept character remembers its original index;
2. words: split on whitespace and punctuation, leet symbols (``@ $ ! | +``) kept inside words; a second
   sequence joins each whitespace chunk that has punctuation inside (``k.i.l.l``, ``k-i_l*l``,
   ``b-lu-dg.eon t'o d*ea.th``); in both, runs of three or more single characters (``k i l l e r``)
   are joined into one word;
3. per word, ``variants()``: leetspeak decoded (ambiguous symbols both ways: ``1`` -> i or l,
   ``|`` -> l or i, ``!`` -> i or nothing; digit-only words only when short: ``70`` -> to) and
   stretched letters (``kiiiilll``) collapsed to two, one or three.

A variant hits a single-word entry when it, or its English lemma (simplemma: ``decapitated`` ->
``decapitate``), equals the entry; long words (``fuzzy_min_length``+ letters) that are not English words
also hit an entry (or an inflection of it) within ``fuzzy_ratio`` optimal-string-alignment similarity
(one typo or swap in 7-13 letters at the default 0.85). Phrases match word by word (lemmas and fuzzy
alike), skipping up to two filler words (``stab him to death`` hits ``stab to death``), and also as one
run-together word (``pipebomb``). ``normalize(text)`` gives the canonical string the classifier reads.
"""

from __future__ import annotations

import itertools
import os
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from openwfm.errors import OpenWFMError
from openwfm.guardrail.decision import Decision

BLOCKLIST = Path(__file__).resolve().parent.parent / "assets" / "guardrail" / "blocklist.txt"

# look-alike letters that NFKC/NFKD leave alone (lowercase: matching happens after casefold)
CONFUSABLES = {
    # Cyrillic
    "а": "a", "б": "b", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "з": "3", "и": "u", "й": "u",
    "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ъ": "b", "ы": "bi", "ь": "b", "э": "e", "я": "r",
    "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
    "ү": "y", "ҡ": "k", "ԍ": "g", "ѵ": "v",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i", "κ": "k",
    "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "s", "τ": "t",
    "υ": "u", "φ": "o", "χ": "x", "ψ": "w", "ω": "w", "ϲ": "c", "ϳ": "j", "ϱ": "p", "ϐ": "b", "ϑ": "o",
    # Latin letters without a decomposition, small capitals, IPA look-alikes
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƀ": "b", "ɨ": "i", "ʉ": "u", "æ": "ae",
    "œ": "oe", "ð": "d", "þ": "p", "ɑ": "a", "ɒ": "a", "ɛ": "e", "ɩ": "i", "ɪ": "i", "ʏ": "y", "ᴀ": "a",
    "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ʟ": "l",
    "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w",
    "ᴢ": "z", "ɾ": "r", "ʂ": "s", "ɓ": "b", "ɗ": "d", "ƒ": "f", "ɠ": "g", "ƙ": "k", "ɱ": "m", "ɲ": "n",
    "ƥ": "p", "ʠ": "q", "ƭ": "t", "ʋ": "v", "ȥ": "z", "×": "x", "∂": "d", "ℓ": "l", "€": "e", "£": "l",
}
CONFUSABLES.update({chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)})  # regional indicators 🇦..🇿

# leetspeak: every choice of an ambiguous symbol is tried; the first is the canonical one
LEET = {"0": ("o",), "1": ("i", "l"), "2": ("z",), "3": ("e",), "4": ("a",), "5": ("s",), "6": ("g",),
        "7": ("t",), "8": ("b",), "9": ("g",), "@": ("a",), "$": ("s",), "!": ("i", ""), "|": ("l", "i"),
        "+": ("t",)}
SYMBOLS = frozenset("@$!|+")  # leet symbols count as word characters
FILLERS = frozenset("a an the his her him their them my your our its someone somebody".split())
MAX_VARIANTS = 32


class BlocklistError(OpenWFMError):
    """A blocklist file that cannot be read."""


@dataclass(frozen=True)
class Token:
    """A word of the prompt after character normalization (leet not yet decoded), with its span
    ``[start, end)`` in the original text."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Entry:
    text: str                # the entry as its words, space-separated ("pipe bomb")
    words: tuple[str, ...]
    category: str
    source: str              # the file it came from


@dataclass(frozen=True)
class Hit:
    """A blocklist entry found in a prompt: ``span`` is the original text it matched."""

    entry: str
    category: str
    span: str
    start: int
    end: int
    how: str                 # "exact" | "lemma" | "fuzzy"


def clean_chars(text: str) -> list[tuple[str, int]]:
    """Normalized characters of ``text``, each with the index of the original character it came from."""
    out = []
    for i, c in enumerate(text):
        cat = unicodedata.category(c)
        if cat == "Cf":                      # zero-width space/joiners, soft hyphen, BOM, bidi marks
            continue
        if cat == "Cc" or c.isspace():       # controls and every kind of space: a plain space
            out.append((" ", i))
            continue
        for d in unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", c).casefold()):
            if unicodedata.combining(d) or unicodedata.category(d) in ("Mn", "Me", "Cf"):
                continue                     # diacritics, variation selectors
            for e in CONFUSABLES.get(d, d):
                out.append((e, i))
    return out


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in SYMBOLS


def _split_at_wide_gaps(run: list[Token], text: str) -> list[list[Token]]:
    """A run of single characters cut between words. The gaps are the original text between the characters:
    when one gap pattern spaces most of them (the letters of words outnumber the words), every other
    pattern is a word boundary (``s t e p\\nb y``, ``k.i.l.l a``); otherwise the run is cut wherever a gap is
    wider than its narrowest (``s t a b   t h e`` -> ``stab``, ``the``): any whitespace pattern that spaces
    the letters of a word more tightly than the words themselves."""
    gaps = ["".join(c for c in text[a.end:b.start] if unicodedata.category(c) != "Cf") for a, b in zip(run, run[1:])]
    if not gaps or len(set(gaps)) == 1:
        return [run]
    common, count = Counter(gaps).most_common(1)[0]
    if 2 * count > len(gaps):
        cut = [g != common for g in gaps]
    else:
        cut = [len(g) > min(map(len, gaps)) for g in gaps]
    parts, part = [], [run[0]]
    for c, tok in zip(cut, run[1:]):
        if c:
            parts.append(part)
            part = []
        part.append(tok)
    return parts + [part]


def _join_runs(words: list[Token], extra: list[Token], text: str) -> list[Token]:
    """Runs of >= 3 single characters joined into one word (``k i l l e r`` -> ``killer``), or into one word
    per part where wider gaps separate words (``_split_at_wide_gaps``; the whole run then goes to
    ``extra``); the run without a leading/trailing 'a'/'i' (an article swallowed by the run) goes to
    ``extra``."""
    joined: list[Token] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and len(words[j].text) == 1:
            j += 1
        parts = _split_at_wide_gaps(words[i:j], text) if j - i >= 3 else []
        if len(parts) > 1:  # letter-spaced words with wider spaces between them: one word per part
            joined += [Token("".join(w.text for w in part), part[0].start, part[-1].end) for part in parts]
            extra.append(Token("".join(w.text for w in words[i:j]), words[i].start, words[j - 1].end))
            i = j
        elif j - i >= 3:
            run = "".join(w.text for w in words[i:j])
            joined.append(Token(run, words[i].start, words[j - 1].end))
            a, b = int(run[0] in "ai"), int(run[-1] in "ai")
            for s, e in {(a, 0), (0, b), (a, b)} - {(0, 0)}:
                if len(run) - s - e >= 3:
                    extra.append(Token(run[s:len(run) - e], words[i + s].start, words[j - 1 - e].end))
            i = j
        else:
            joined.append(words[i])
            i += 1
    return joined


def _chunks(text: str) -> list[list[Token]]:
    """The word pieces of each whitespace-separated chunk of the prompt (``man,stabs`` -> [man, stabs])."""
    out, chunk = [], []
    for c in clean_chars(text) + [(" ", len(text))]:
        if c[0] != " ":
            chunk.append(c)
            continue
        pieces, piece = [], []
        for ch in chunk + [(" ", -1)]:
            if _is_word_char(ch[0]):
                piece.append(ch)
            elif piece:
                pieces.append(Token("".join(p[0] for p in piece), piece[0][1], piece[-1][1] + 1))
                piece = []
        if pieces:
            out.append(pieces)
        chunk = []
    return out


def _glued(pieces: list[Token]) -> Token:
    return Token("".join(p.text for p in pieces), pieces[0].start, pieces[-1].end)


def sequences(text: str) -> tuple[list[list[Token]], list[Token]]:
    """(word sequences of the prompt, extra single-word candidates). The first sequence splits on
    whitespace and punctuation (``man,stabs`` -> man, stabs); the second, when it differs, joins each
    whitespace chunk (``b-lu-dg.eon t'o d*ea.th`` -> bludgeon, to, death)."""
    chunks, extra = _chunks(text), []
    split = [t for pieces in chunks for t in pieces]
    chunked = [_glued(pieces) for pieces in chunks]
    seqs = [_join_runs(split, extra, text)]
    if chunked != split:
        seqs.append(_join_runs(chunked, extra, text))
    return seqs, extra


def tokens(text: str) -> list[Token]:
    """The prompt's words in order (split on whitespace and punctuation, single-character runs joined)."""
    return sequences(text)[0][0]


def _stretch_options(s: str) -> list[str]:
    """``s`` with every run of 3+ equal letters as two, one or three letters (first: two)."""
    groups = [(ch, len(list(g))) for ch, g in itertools.groupby(s)]
    opts = [((ch * 2, ch, ch * 3) if n >= 3 and ch.isalpha() else (ch * n,)) for ch, n in groups]
    return ["".join(p) for p in itertools.islice(itertools.product(*opts), MAX_VARIANTS)]


def variants(word: str) -> list[str]:
    """Readings of one normalized word: leet decoded (ambiguous symbols both ways) and stretched letters
    collapsed; the first is the canonical reading, the raw word (stretches collapsed) comes last. A word
    of digits only (``2024``) is read as itself first, and as leet only when short (``70`` -> ``to``)."""
    has_letter = any(c.isalpha() for c in word)
    if not has_letter and len(word) > 4:
        return [word]
    opts = [LEET.get(c, (c,)) for c in word]
    out: dict[str, None] = {} if has_letter else {word: None}
    for p in itertools.islice(itertools.product(*opts), MAX_VARIANTS):
        for v in _stretch_options("".join(p)):
            if v:
                out[v] = None
    for v in _stretch_options(word):
        out[v] = None
    return list(out)[:2 * MAX_VARIANTS]


def canonical(word: str) -> str:
    """The one reading of a word that ``normalize`` shows: trailing ``!`` dropped; leet decoded when letters
    outnumber the digits and symbols (so ``3d``, ``4k``, ``1980s`` stay) or when a decoding of a longer word
    is an English word and the word is not (``50m30n3`` -> ``someone``); stretched letters cut to the English
    word among their readings (``paaaarking`` -> ``parking``), else to two."""
    word = word.rstrip("!") or word
    letters = sum(c.isalpha() for c in word)
    if letters and letters > len(word) - letters:
        word = "".join(LEET.get(c, (c,))[0] for c in word)
    elif letters and len(word) >= 4 and not is_english(word):
        word = next((v for v in variants(word)[:-1] if v.isalpha() and is_english(v)), word)
    options = _stretch_options(word)
    if len(options) > 1:
        return next((o for o in options if o.isalpha() and is_english(o)), options[0])
    return options[0]


def _reads_as_word(pieces: list[Token]) -> bool:
    """Whether a chunk cut by punctuation is one word broken up (``o-pe~ra'ti~ng``): glued, it is an English
    word, and its pieces are three or more fragments (mostly one or two letters) or include a non-word.
    A word and a short ending (``man's``, ``he'll``, ``x-ray``) stays two words."""
    if len(pieces) < 2:
        return False
    glued = canonical(_glued(pieces).text)
    if not (glued.isalpha() and is_english(glued)):
        return False
    words = [canonical(p.text) for p in pieces]
    fragments = len(words) >= 3 and sum(map(len, words)) <= 2.5 * len(words)
    return fragments or not all(is_english(w) for w in words if len(w) > 1)


def correct(word: str, min_length: int = 6) -> str:
    """A misspelled word (``min_length``+ ASCII letters, not English) read as the one English word a swap of
    two neighbouring letters away (``copmass`` -> ``compass``), else the one a letter dropped inside the
    word away (``explosves`` -> ``explosives``); unchanged when there is none or more than one. Extra and
    replaced letters, and edits at either end, are not undone: those readings turn names and new words
    into other words (``hitman`` -> ``pitman``, ``bokeh`` -> ``boke``)."""
    if len(word) < min_length or not word.isalpha() or not word.isascii() or is_english(word):
        return word
    swaps = {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)}
    missing = {word[:i] + c + word[i:] for i in range(1, len(word)) for c in string.ascii_lowercase}
    for level in (swaps, missing):
        found = {w for w in level if is_english(w)}
        if found:
            return found.pop() if len(found) == 1 else word
    return word


def readable_tokens(text: str) -> list[Token]:
    """The prompt's words as a reader sees them: chunks broken up by punctuation glued back when they read
    as one word (``_reads_as_word``), else split there; runs of single characters joined (``_join_runs``)."""
    words = [t for pieces in _chunks(text) for t in ([_glued(pieces)] if _reads_as_word(pieces) else pieces)]
    return _join_runs(words, [], text)


def normalize(text: str) -> str:
    """The canonical form of a prompt: lowercase Latin words separated by single spaces, with the
    obfuscations above undone (``"D3C@PITÁTED!"`` -> ``"decapitated"``, ``"k.i.l.l"`` -> ``"kill"``,
    ``"o-pe~ra'ti~ng"`` -> ``"operating"``) and misspellings one edit from a single English word corrected."""
    return " ".join(correct(canonical(t.text)) for t in readable_tokens(text))


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    import simplemma

    return simplemma.lemmatize(word, lang="en").casefold()


@lru_cache(maxsize=65536)
def is_english(word: str) -> bool:
    import simplemma

    return simplemma.is_known(word, lang="en")


def inflections(word: str) -> set[str]:
    """A word and its regular English inflections (for fuzzy matching of misspelled inflected forms)."""
    stem = word[:-1] if word.endswith("e") else word
    return {word, word + "s", word + "es", stem + "ed", stem + "ing", stem + "er", stem + "ers", stem + "ion"}


def read_blocklist(path: str | os.PathLike, default_category: str = "custom") -> list[Entry]:
    """Entries of a blocklist file (format: see ``assets/guardrail/blocklist.txt``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BlocklistError(f"{path}: cannot read the blocklist ({e.__class__.__name__}: {e})") from e
    entries, category = [], default_category
    for line in lines:
        line = line.strip()
        if line.startswith("#"):
            head = line.lstrip("#").strip()
            if head.lower().startswith("category:"):
                category = head.split(":", 1)[1].strip() or default_category
            continue
        words = tuple(t.text for t in tokens(line))
        if words:
            entries.append(Entry(" ".join(words), words, category, str(path)))
    return entries


class Blocklist:
    """The shipped blocklist (unless ``shipped=False``) plus ``extra`` files; ``find(text)`` returns every
    hit, ``check(text)`` a ``Decision`` naming the first."""

    def __init__(self, extra: str | os.PathLike | list | tuple = (), shipped: bool = True,
                 fuzzy_min_length: int = 7, fuzzy_ratio: float = 0.85):
        paths = [extra] if isinstance(extra, (str, os.PathLike)) else list(extra)
        self.entries = read_blocklist(BLOCKLIST, "default") if shipped else []
        for p in paths:
            if str(p):
                self.entries += read_blocklist(p)
        self.fuzzy_min_length, self.fuzzy_ratio = fuzzy_min_length, fuzzy_ratio
        self.single: dict[str, Entry] = {}       # one word (or a phrase run together) -> entry
        self.phrases: list[Entry] = []
        for e in self.entries:
            self.single.setdefault("".join(e.words), e)
            if len(e.words) > 1:
                self.phrases.append(e)
        self.fuzzy_pool: dict[str, Entry] = {}   # long one-word entries and their inflections (not run-together
        for e in self.entries:                   # phrases: "whitepowder" must not hit "white power")
            if len(e.words) == 1 and e.text.isalpha() and len(e.text) >= fuzzy_min_length:
                for form in inflections(e.text):
                    self.fuzzy_pool.setdefault(form, e)

    def __len__(self) -> int:
        return len(self.entries)

    def _keys(self, token: Token) -> dict[str, str]:
        """Every reading of a token that can hit: variant or lemma -> how ("exact" | "lemma")."""
        keys: dict[str, str] = {}
        for v in variants(token.text):
            keys.setdefault(v, "exact")
            if v.isalpha():
                keys.setdefault(lemma(v), "lemma")
        return keys

    def _fuzzy(self, keys: dict[str, str]) -> tuple[str, Entry] | None:
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        best = None
        for k in keys:
            if len(k) < self.fuzzy_min_length or not k.isalpha() or is_english(k):
                continue                          # real English words are never "typos"
            m = process.extractOne(k, list(self.fuzzy_pool), scorer=OSA.normalized_similarity,
                                   score_cutoff=self.fuzzy_ratio)
            if m and (best is None or m[1] > best[1]):
                best = (m[0], m[1])
        return (best[0], self.fuzzy_pool[best[0]]) if best else None

    def _word_matches(self, keys: dict[str, str], word: str) -> str | None:
        if word in keys:
            return keys[word]
        if len(word) >= self.fuzzy_min_length:
            from rapidfuzz.distance import OSA

            for k in keys:
                if (len(k) >= self.fuzzy_min_length and k.isalpha() and not is_english(k)
                        and OSA.normalized_similarity(k, word) >= self.fuzzy_ratio):
                    return "fuzzy"
        return None

    def _match_phrase(self, e: Entry, words: list[Token], keys: list[dict[str, str]], add) -> None:
        """Every place where the phrase ``e`` starts in ``words`` (up to two filler words skipped inside)."""
        for i in range(len(words)):
            hows, j, skipped = [], i, 0
            for w in e.words:
                how = None
                while j < len(words):
                    how = self._word_matches(keys[j], w)
                    if how or not (hows and skipped < 2 and words[j].text in FILLERS):
                        break
                    j, skipped = j + 1, skipped + 1
                if j >= len(words) or not how:
                    break
                hows.append(how)
                j += 1
            if len(hows) == len(e.words):
                how = "fuzzy" if "fuzzy" in hows else "lemma" if "lemma" in hows else "exact"
                add(e, words[i].start, words[j - 1].end, how)

    def find(self, text: str) -> list[Hit]:
        """All hits in ``text``, in order of position (one per entry and place)."""
        seqs, extra = sequences(text)
        keys = {t: self._keys(t) for t in dict.fromkeys([t for seq in seqs for t in seq] + extra)}
        hits: dict[tuple, Hit] = {}

        def add(e: Entry, start: int, end: int, how: str) -> None:
            hits.setdefault((e.text, start, end), Hit(e.text, e.category, text[start:end], start, end, how))

        for t, k in keys.items():
            found = next(((self.single[x], how) for x, how in k.items() if x in self.single), None)
            if found is None and (f := self._fuzzy(k)):
                found = (f[1], "fuzzy")
            if found:
                add(found[0], t.start, t.end, found[1])
        for words in seqs:
            for e in self.phrases:
                self._match_phrase(e, words, [keys[t] for t in words], add)
        rank = {"exact": 0, "lemma": 1, "fuzzy": 2}
        kept: list[Hit] = []                      # one hit per entry and place: the surest, then the shortest
        for h in sorted(hits.values(), key=lambda h: (rank[h.how], h.end - h.start, h.start)):
            if not any(k.entry == h.entry and k.start < h.end and h.start < k.end for k in kept):
                kept.append(h)
        return sorted(kept, key=lambda h: (h.start, -h.end))

    def check(self, text: str) -> Decision:
        """Blocked on the first hit, with the entry, its category and the original text it matched."""
        hits = self.find(text)
        if not hits:
            return Decision(True, "blocklist", "no blocked term")
        h = hits[0]
        return Decision(False, "blocklist", f"blocked term '{h.entry}' (category {h.category}) matched '{h.span}'",
                        details={"hits": [vars(x) for x in hits]})
