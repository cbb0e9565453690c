"""The caption index the prompt upsampler retrieves from (Cosmos paper sec. 7): every training caption and
its MiniLM sentence vector.

Captions are collected from what the project writes:
- WebDataset shard directories (or single ``.tar`` shards): the ``caption`` field of each sample's
  ``<key>.json`` member (``wfm data pack`` and the curator both write it there);
- curator output directories (``manifest.jsonl``): the captions of the kept clips; template captions
  (``caption_source == "template"``: measured statistics, not a description of the content) are left out;
- simulator rollout directories: the ``caption`` field of each ``NAME.json``;
- a saved caption index (``captions.json`` + ``index.json``), and plain text files (one caption a line,
  ``#`` comments), ``.json`` (a list of strings) or ``.jsonl`` (objects with ``caption``).
A directory that is none of these is searched below. Exact duplicates are kept once.

On disk: ``captions.json`` (list of strings), ``embeddings.safetensors`` (``embeddings``: (N, dim)
float32, L2-normalized) and ``index.json`` (format version, encoder name, dim, count, sources).
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from openwfm.errors import OpenWFMError
from openwfm.text.encoder import MiniLMEncoder, TextEncoder, TextError, sentence_embeddings

log = logging.getLogger(__name__)

CAPTIONS, EMBEDDINGS, INDEX = "captions.json", "embeddings.safetensors", "index.json"
VERSION = 1
DEFAULT_MAX_LENGTH = 128  # MiniLM tokens: the longest simulator captions (~95 words) fit
_MINILM = re.compile(r"^minilm-l6:(\d+)$")


class CaptionIndexError(TextError, OpenWFMError):
    """A caption index or caption source that cannot be used; the message names the file and the problem."""


def clean(text: str) -> str:
    """One line, single spaces."""
    return " ".join(str(text).split())


def _from_json_obj(doc) -> list[str]:
    if isinstance(doc, dict):
        return [doc["caption"]] if isinstance(doc.get("caption"), str) else []
    if isinstance(doc, list):
        return [c for d in doc for c in ([d] if isinstance(d, str) else _from_json_obj(d))]
    return []


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CaptionIndexError(f"{path}: unreadable JSON ({e})") from e


def _shard_captions(tar: Path) -> list[str]:
    """The ``caption`` of every ``<key>.json`` member of a WebDataset shard, read straight from the tar."""
    out = []
    try:
        with tarfile.open(tar, mode="r:") as tf:
            for info in tf:
                if info.isfile() and os.path.basename(info.name).partition(".")[2] == "json":
                    try:
                        out += _from_json_obj(json.loads(tf.extractfile(info).read()))
                    except (UnicodeDecodeError, ValueError):
                        log.warning("%s: member %s is not JSON; skipped", tar, info.name)
    except (tarfile.TarError, OSError) as e:
        raise CaptionIndexError(f"{tar}: unreadable shard ({e})") from e
    return out


def _curator_captions(out_dir: Path) -> list[str]:
    from openwfm.files import MANIFEST

    caps, templates = [], 0
    for i, line in enumerate((out_dir / MANIFEST).read_text(encoding="utf-8").splitlines()):
        try:
            rec = json.loads(line) if line.strip() else {}
        except ValueError:
            log.warning("%s: line %d is not JSON; skipped", out_dir / MANIFEST, i + 1)
            continue
        if rec.get("type") == "clip" and isinstance(rec.get("caption"), str):
            if rec.get("caption_source") == "template":
                templates += 1
            elif rec.get("status") == "kept":
                caps.append(rec["caption"])
    if templates:
        log.info("%s: left out %d template captions (statistics, not content)", out_dir, templates)
    return caps  # the latest record of a clip wins in the manifest; duplicates are dropped later


def _file_captions(path: Path) -> list[str]:
    if path.suffix == ".tar":
        return _shard_captions(path)
    if path.suffix == ".json":
        return _from_json_obj(_read_json(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CaptionIndexError(f"{path}: not a readable text file ({e})") from e
    if path.suffix == ".jsonl":
        out = []
        for i, line in enumerate(lines):
            try:
                out += _from_json_obj(json.loads(line)) if line.strip() else []
            except ValueError as e:
                raise CaptionIndexError(f"{path}: line {i + 1} is not JSON ({e})") from e
        return out
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _dir_captions(d: Path) -> list[str]:
    if (d / "manifest.jsonl").is_file():
        return _curator_captions(d)
    if (d / CAPTIONS).is_file() and (d / INDEX).is_file():
        return _from_json_obj(_read_json(d / CAPTIONS))
    tars = sorted(d.glob("*.tar"))
    out = [c for t in tars for c in _shard_captions(t)]
    for p in sorted(d.glob("*.json")):
        if not (tars and p.name == "index.json"):  # a shard directory's index.json is not a sample
            try:
                out += _from_json_obj(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, ValueError):
                log.warning("%s: unreadable JSON; skipped", p)
    for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += _dir_captions(sub)
    return out


def collect_captions(paths: list[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """(captions, sources): the captions of every path, cleaned, without exact duplicates, in order."""
    caps: dict[str, None] = {}
    sources = []
    for p in map(Path, paths):
        if not p.exists():
            raise CaptionIndexError(f"{p}: no such file or directory")
        found = _dir_captions(p) if p.is_dir() else _file_captions(p)
        found = [c for c in map(clean, found) if c]
        if not found:
            log.warning("%s: no captions found", p)
        caps.update(dict.fromkeys(found))
        sources.append(str(p.resolve()))
    return list(caps), sources


@dataclass
class CaptionIndex:
    """Captions and their sentence vectors; ``nearest`` finds the closest by cosine similarity."""

    captions: list[str]
    embeddings: torch.Tensor  # (N, dim) float32, L2-normalized
    encoder_name: str
    sources: list[str] = field(default_factory=list)
    encoder: TextEncoder | None = field(default=None, repr=False)  # made on first use when None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def median_words(self) -> int:
        """The typical caption length: the upsampler's target."""
        return int(statistics.median(len(c.split()) for c in self.captions)) if self.captions else 0

    def __len__(self) -> int:
        return len(self.captions)

    @classmethod
    def build(cls, captions: list[str], encoder: TextEncoder | None = None,
              sources: list[str] | None = None) -> "CaptionIndex":
        """Embed ``captions`` (cleaned, exact duplicates and empty ones dropped) with ``encoder``
        (default: MiniLM, 128 tokens)."""
        caps = [c for c in dict.fromkeys(map(clean, captions)) if c]
        if not caps:
            raise CaptionIndexError("no captions to index")
        encoder = encoder or MiniLMEncoder(max_length=DEFAULT_MAX_LENGTH)
        return cls(caps, sentence_embeddings(encoder, caps), encoder.name, list(sources or []), encoder)

    @classmethod
    def from_sources(cls, paths: list[str | os.PathLike], encoder: TextEncoder | None = None) -> "CaptionIndex":
        """An index of every caption found in ``paths`` (see the module docstring for what is read)."""
        caps, sources = collect_captions(paths)
        if not caps:
            raise CaptionIndexError(f"no captions found in {', '.join(map(str, paths))}")
        return cls.build(caps, encoder, sources)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``captions.json``, ``embeddings.safetensors`` and ``index.json`` (last) to ``out_dir``."""
        from openwfm.files import save_safetensors

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / CAPTIONS).write_text(json.dumps(self.captions, ensure_ascii=False, indent=0), encoding="utf-8")
        save_safetensors({"embeddings": self.embeddings.float().contiguous()}, str(out / EMBEDDINGS))
        doc = {"version": VERSION, "encoder": self.encoder_name, "dim": self.dim, "count": len(self),
               "sources": self.sources}
        (out / INDEX).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, index_dir: str | os.PathLike, encoder: TextEncoder | None = None) -> "CaptionIndex":
        """Read a saved index, checking that its three files agree (and with ``encoder`` when given)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(index_dir)
        for name in (INDEX, CAPTIONS, EMBEDDINGS):
            if not (d / name).is_file():
                raise CaptionIndexError(f"{d / name}: missing; is {d} a caption index (build one first)?")
        doc = _read_json(d / INDEX)
        if not isinstance(doc, dict) or not all(k in doc for k in ("encoder", "dim", "count")):
            raise CaptionIndexError(f"{d / INDEX}: not a caption index description (needs encoder, dim, count)")
        if doc.get("version") != VERSION:
            raise CaptionIndexError(f"{d / INDEX}: unknown format version {doc.get('version')!r}")
        caps = _read_json(d / CAPTIONS)
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise CaptionIndexError(f"{d / CAPTIONS}: must be a JSON list of strings")
        try:
            emb = load_file(str(d / EMBEDDINGS)).get("embeddings")
        except (SafetensorError, OSError, ValueError) as e:
            raise CaptionIndexError(f"{d / EMBEDDINGS}: unreadable ({e})") from e
        if emb is None or emb.ndim != 2:
            raise CaptionIndexError(f"{d / EMBEDDINGS}: needs one 2-D tensor 'embeddings'")
        if len(caps) != doc["count"] or emb.shape[0] != doc["count"]:
            raise CaptionIndexError(f"{d}: count mismatch: {INDEX} says {doc['count']}, {CAPTIONS} has {len(caps)}, "
                                    f"{EMBEDDINGS} has {emb.shape[0]} rows; build the index again")
        if emb.shape[1] != doc["dim"]:
            raise CaptionIndexError(f"{d / EMBEDDINGS}: vectors are {emb.shape[1]} wide, {INDEX} says {doc['dim']}")
        if encoder is not None and (encoder.name != doc["encoder"] or encoder.dim != doc["dim"]):
            raise CaptionIndexError(f"{d / INDEX}: built with encoder '{doc['encoder']}' ({doc['dim']} wide), "
                                    f"not '{encoder.name}' ({encoder.dim} wide)")
        if encoder is None and not _MINILM.match(doc["encoder"]):
            raise CaptionIndexError(f"{d / INDEX}: built with encoder '{doc['encoder']}'; pass that encoder to load()")
        return cls(caps, emb.float(), doc["encoder"], list(doc.get("sources", [])), encoder)

    def _encoder(self) -> TextEncoder:
        if self.encoder is None:
            m = _MINILM.match(self.encoder_name)
            if not m:
                raise CaptionIndexError(f"index built with encoder '{self.encoder_name}': give that encoder")
            self.encoder = MiniLMEncoder(max_length=int(m.group(1)))
        return self.encoder

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Sentence vectors (N, dim) of ``texts`` in the index's space."""
        return sentence_embeddings(self._encoder(), [clean(t) for t in texts])

    def nearest(self, query: str | torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` captions closest to ``query`` (a text or a vector), best first, with their cosines.
        Ties go to the caption indexed first (deterministic)."""
        v = self.embed([query])[0] if isinstance(query, str) else torch.as_tensor(query, dtype=torch.float32).flatten()
        if v.numel() != self.dim:
            raise CaptionIndexError(f"query vector is {v.numel()} wide, the index {self.dim}")
        sims = self.embeddings @ torch.nn.functional.normalize(v, dim=0)
        order = torch.sort(-sims, stable=True).indices[:max(0, k)].tolist()
        return [(self.captions[i], float(sims[i])) for i in order]
