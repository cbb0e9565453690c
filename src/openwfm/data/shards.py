"""WebDataset tar shards: packing, an offset index for random access, and media decoding.

A sample is a run of tar members sharing a key: ``<key>.mp4`` (or ``.jpg``/``.png``) + ``<key>.json``
(+ anything else, e.g. ``<key>.npz``). Next to the shards lives ``index.json``: for every sample its shard,
key, each member's byte offset and size inside the tar, and the probed media kind, size, length and rate.
Readers seek straight to a member's bytes instead of scanning the tar. The index stores each shard's
size and mtime; a shard that changed, appeared or vanished is re-scanned on the next ``load_index``.
"""

from __future__ import annotations

import glob
import io
import itertools
import json
import logging
import os
import re
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from openwfm.errors import OpenWFMError
from openwfm.files import as_umask

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_VERSION = 1
VIDEO_EXTS = ("mp4", "webm", "mkv", "mov", "avi")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
LATENT_EXT = "latent.safetensors"  # precomputed tokenizer latents (openwfm.diffusion.latents)
TEXT_EXT = "text.safetensors"  # a caption's token embeddings (the curator's text encoder), float16
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset's rule: the key ends at the first dot
_KEY = re.compile(r"^(?:.*/|)[^./]+$")
_AGAIN = "copy or pack the shard again"


class DataError(OpenWFMError):
    """A shard, index or sample that cannot be used; the message names the file (and key) and the cause."""

    def __init__(self, where: str | os.PathLike, cause: str):
        self.where, self.cause = str(where), cause
        super().__init__(f"{where}: {cause}")


@dataclass
class IndexEntry:
    """One sample: where its members lie in which shard, and what its media is."""

    path: str  # the shard file
    key: str
    members: dict[str, tuple[int, int]]  # extension -> (byte offset, size) inside the tar
    media: str  # extension of the media member
    kind: str  # "video", "image" or "latent" (precomputed; width/height/num_frames are the latent's)
    width: int
    height: int
    num_frames: int  # 1 for images
    fps: float  # 0.0 for images

    @property
    def where(self) -> str:
        return f"{self.path} [key {self.key}]"


@dataclass
class ShardIndex:
    """Samples in a deterministic order: sorted shard paths, then order inside each tar."""

    entries: list[IndexEntry] = field(default_factory=list)
    skipped: int = 0  # samples left out because their media could not be decoded

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> IndexEntry:
        return self.entries[i]

    def __iter__(self) -> Iterator[IndexEntry]:
        return iter(self.entries)


# ---------------------------------------------------------------------------------------------- packing

def pack_samples(samples: Iterable[tuple[str, dict[str, bytes]]], out_dir: str | os.PathLike,
                 maxcount: int = 1000, prefix: str = "shard", overwrite: bool = False) -> Path:
    """Write ``(key, {extension: bytes})`` samples into ``out_dir/<prefix>-000000.tar`` ... with
    ``webdataset.ShardWriter`` (at most ``maxcount`` samples a shard), then write the index. Keys must be
    unique, without dots (WebDataset splits member names at the first one). Existing ``<prefix>-*.tar``
    shards are an error unless ``overwrite``, which deletes them first."""
    import webdataset as wds  # only packing needs it; reading uses tarfile alone

    out = Path(out_dir)
    if maxcount < 1:
        raise ValueError(f"maxcount must be >= 1, got {maxcount}")
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob(f"{prefix}-*.tar"))
    if old and not overwrite:
        raise DataError(out, f"already holds {len(old)} '{prefix}-*.tar' shards; pass overwrite=True or "
                             "choose another directory or prefix")
    for p in old:
        p.unlink()
    (out / INDEX_NAME).unlink(missing_ok=True)
    it = iter(samples)
    first = next(it, None)
    if first is None:
        raise DataError(out, "no samples to pack")
    pattern = os.path.join(str(out).replace("%", "%%"), prefix.replace("%", "%%") + "-%06d.tar")
    seen: set[str] = set()
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0, encoder=False, mtime=0.0) as sink:
        for key, members in itertools.chain([first], it):
            sink.write(_check_sample(key, members, seen))
    log.info("packed %d samples into %s", len(seen), out)
    build_index(out)
    return out


def _check_sample(key: str, members: dict[str, bytes], seen: set[str]) -> dict:
    if not isinstance(key, str) or not _KEY.match(key):
        raise DataError(repr(key), "a sample key must be a non-empty string without dots")
    if key in seen or not members:
        raise DataError(key, "duplicate sample key" if key in seen else "sample has no members")
    seen.add(key)
    out = {"__key__": key}
    for ext, value in members.items():
        if not ext or ext.startswith((".", "_")) or "/" in ext:
            raise DataError(key, f"bad member extension '{ext}' (no leading dot or underscore, no slash)")
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise DataError(key, f"member '{ext}' must be bytes, got {type(value).__name__}")
        out[ext] = bytes(value)
    return out


def sim_dir_samples(sim_dir: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of a directory written by ``openwfm.sim.dataset`` (``NAME.mp4``, ``NAME.json``,
    ``NAME.masks.npz``) as ``(NAME, {"mp4", "json"[, "npz"]})``. Samples without their JSON are incomplete
    (the simulator writes it last) and other JSON files (no ``NAME.mp4`` beside them) are not samples:
    both are skipped. An error names the directory when there is no sample at all."""
    sim = Path(sim_dir)
    if not sim.is_dir():
        raise DataError(sim, "no such directory")
    names = []
    for p in sorted(sim.glob("*.json")):
        name = p.name[:-len(".json")]
        if not p.name.startswith(".") and (sim / f"{name}.mp4").is_file():
            names.append(name)
        else:
            log.warning("%s: no %s.mp4 beside it; not a simulated sample, skipped", p, name)
    if not names:
        raise DataError(sim, "no simulated samples (NAME.json + NAME.mp4) found")
    for name in names:
        members = {"json": (sim / f"{name}.json").read_bytes(), "mp4": (sim / f"{name}.mp4").read_bytes()}
        masks = sim / f"{name}.masks.npz"
        if masks.is_file():
            members["npz"] = masks.read_bytes()
        yield name, members


def pack_sim_dir(sim_dir: str | os.PathLike, out_dir: str | os.PathLike, maxcount: int = 1000,
                 prefix: str = "shard", overwrite: bool = False) -> Path:
    """Pack a simulator output directory into shards with members ``mp4``, ``json`` and ``npz``
    (see ``sim_dir_samples``)."""
    samples = sim_dir_samples(sim_dir)
    first = next(samples)  # fail on a bad directory before touching out_dir
    return pack_samples(itertools.chain([first], samples), out_dir, maxcount=maxcount, prefix=prefix,
                        overwrite=overwrite)


# --------------------------------------------------------------------------------------------- indexing

def scan_shard(path: str | os.PathLike) -> tuple[list[IndexEntry], int]:
    """Read one tar's headers and probe each sample's media. Returns the entries and the number of samples
    skipped (with a warning) for missing or undecodable media; a truncated or unreadable tar raises."""
    path = Path(path)
    groups = _tar_members(path)
    entries, skipped = [], 0
    with open(path, "rb") as f:
        for key, members in groups:
            media = next((e for e in members if e.lower() in VIDEO_EXTS), None) or \
                next((e for e in members if e.lower() in IMAGE_EXTS), None)
            where = f"{path} [key {key}]"
            if media is None and LATENT_EXT in members:
                off, size = members[LATENT_EXT]
                f.seek(off)
                try:
                    _, t, h, w = latent_shape(f.read(min(size, 1 << 16)), where)
                except DataError as e:
                    log.warning("%s; skipped", e)
                    skipped += 1
                    continue
                entries.append(IndexEntry(str(path), key, members, LATENT_EXT, "latent", w, h, t, 0.0))
                continue
            if media is None:
                log.warning("%s: no video or image member (has %s); skipped", where, ", ".join(members))
                skipped += 1
                continue
            off, size = members[media]
            f.seek(off)
            data = f.read(size)
            try:
                if media.lower() in VIDEO_EXTS:
                    kind, (w, h, n, fps) = "video", probe_video(data, where)
                else:
                    kind, n, fps = "image", 1, 0.0
                    _, h, w, _ = decode_image(data, where).shape
                if "json" in members:
                    f.seek(members["json"][0])
                    parse_meta(f.read(members["json"][1]), where)
            except DataError as e:
                log.warning("%s; skipped", e)
                skipped += 1
                continue
            entries.append(IndexEntry(str(path), key, members, media, kind, w, h, n, fps))
    return entries, skipped


def _tar_members(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """Group consecutive tar members by key, as WebDataset does; check that the archive is complete."""
    try:
        size = path.stat().st_size
        groups: list[tuple[str, dict[str, tuple[int, int]]]] = []
        with tarfile.open(path, mode="r:") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    raise DataError(path, f"truncated: member {info.name} ends past the end of the file; {_AGAIN}")
                m = _MEMBER.match(info.name)
                if m is None or os.path.basename(info.name).startswith("__"):
                    log.debug("%s: member %s has no key.extension name; ignored", path, info.name)
                    continue
                key, ext = m.group(1), m.group(2)
                if not groups or groups[-1][0] != key or ext in groups[-1][1]:
                    groups.append((key, {}))
                groups[-1][1][ext] = (info.offset_data, info.size)
            end = tf.offset
        with open(path, "rb") as f:  # after the last member only the zero end-of-archive blocks may follow
            f.seek(end)
            while chunk := f.read(1 << 20):
                if chunk.count(0) != len(chunk):
                    raise DataError(path, f"truncated or corrupt tar: unreadable data after byte {end}; {_AGAIN}")
        if size - end < tarfile.BLOCKSIZE:
            raise DataError(path, f"truncated tar: no end-of-archive marker after byte {end}; {_AGAIN}")
    except tarfile.TarError as e:
        raise DataError(path, f"truncated or corrupt tar ({e}); {_AGAIN}") from e
    except OSError as e:
        raise DataError(path, f"cannot read shard ({e})") from e
    return groups


def build_index(shard_dir: str | os.PathLike, reuse: bool = False) -> ShardIndex:
    """Index every ``*.tar`` in ``shard_dir`` and write ``index.json`` there (atomically; a read-only
    directory only logs a warning). With ``reuse``, shards whose size and mtime match the existing
    index are not scanned again."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise DataError(shard_dir, "no such shard directory")
    old = _read_index_file(shard_dir) if reuse else None
    by_shard: dict[str, list[dict]] = {}
    for s in (old or {}).get("samples", []):
        by_shard.setdefault(s["shard"], []).append(s)
    stamps, samples, entries, skipped = {}, [], [], 0
    for p in sorted(shard_dir.glob("*.tar")):
        stamp = _stamp(p)
        prev = (old or {}).get("shards", {}).get(p.name)
        if prev is not None and {k: prev.get(k) for k in stamp} == stamp:
            found = [_entry(shard_dir, s) for s in by_shard.get(p.name, [])]
            bad = prev.get("skipped", 0)
        else:
            log.info("indexing %s", p)
            found, bad = scan_shard(p)
        stamps[p.name] = {**stamp, "skipped": bad}
        entries += found
        skipped += bad
        samples += [{"shard": p.name, **{k: v for k, v in asdict(e).items() if k != "path"}} for e in found]
    if skipped:
        log.warning("%s: %d undecodable samples left out of the index", shard_dir, skipped)
    doc = {"version": INDEX_VERSION, "shards": stamps, "samples": samples}
    if old is None or old.get("shards") != stamps:
        _write_json(shard_dir / INDEX_NAME, doc)
    return ShardIndex(entries, skipped)


def load_index(shards: str | os.PathLike) -> ShardIndex:
    """The index of a shard directory (or, when it holds no shards itself, of the shard directories below
    it), one ``.tar`` file, or a glob of ``.tar`` files (several directories allowed). A missing or stale ``index.json`` is rebuilt for the shards that changed."""
    spec = str(shards)
    if not spec:
        raise DataError("shards", "no shard directory or glob given")
    p = Path(spec)
    if p.is_dir():  # its own shards, else those in its subdirectories (the curator's shards/<group>/)
        tars = sorted(p.glob("*.tar")) or sorted(p.rglob("*.tar"))
    elif p.is_file():
        tars = [p]
    else:
        tars = sorted(Path(t) for t in glob.glob(spec) if t.endswith(".tar"))
    if not tars:
        raise DataError(spec, "no .tar shards found")
    wanted = {str(t.resolve()) for t in tars}
    index = ShardIndex()
    for d in sorted({t.resolve().parent for t in tars}):
        part = build_index(d, reuse=True)
        index.entries += [e for e in part.entries if e.path in wanted]
        index.skipped += part.skipped
    return index


def _stamp(p: Path) -> dict:
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _entry(shard_dir: Path, s: dict) -> IndexEntry:
    members = {k: (int(v[0]), int(v[1])) for k, v in s["members"].items()}
    return IndexEntry(str(shard_dir / s["shard"]), s["key"], members, s["media"], s["kind"], int(s["width"]),
                      int(s["height"]), int(s["num_frames"]), float(s["fps"]))


def _read_index_file(shard_dir: Path) -> dict | None:
    path = shard_dir / INDEX_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != INDEX_VERSION or not isinstance(doc.get("shards"), dict):
            raise ValueError(f"unknown index version {doc.get('version')}")
        for s in doc["samples"]:
            _entry(shard_dir, s)
        return doc
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        log.warning("%s: unusable index (%s); rebuilding it", path, e)
        return None


def _write_json(path: Path, doc: dict) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        as_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except OSError as e:
        log.warning("%s: cannot write the index (%s); using it in memory only", path, e)


# -------------------------------------------------------------------------------------- reading samples

def read_sample(entry: IndexEntry, exts: Iterable[str] | None = None) -> dict[str, bytes]:
    """The bytes of a sample's members (all, or only ``exts``), read by offset: one seek per member."""
    names = list(entry.members) if exts is None else list(exts)
    out = {}
    try:
        with open(entry.path, "rb") as f:
            for ext in names:
                if ext not in entry.members:
                    raise DataError(entry.where, f"no '{ext}' member (it has {', '.join(entry.members)})")
                off, size = entry.members[ext]
                f.seek(off)
                data = f.read(size)
                if len(data) != size:
                    raise DataError(entry.where, f"member '{ext}' is cut short ({len(data)} of {size} bytes); "
                                                 "the shard changed after indexing: rebuild the index")
                out[ext] = data
    except OSError as e:
        raise DataError(entry.where, f"cannot read the shard ({e})") from e
    return out


def parse_meta(data: bytes | None, where: str = "sample") -> dict:
    """A sample's JSON member as a dict (``{}`` when it has none)."""
    if data is None:
        return {}
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(where, f"unreadable json member ({e})") from e
    if not isinstance(meta, dict):
        raise DataError(where, "the json member is not an object")
    return meta


def latent_shape(data: bytes, where: str = "latent") -> tuple[int, int, int, int]:
    """(C, T', H', W') of the tensor ``latent`` — or (1, T', H', W') of the discrete tokenizer's
    ``indices`` — from the header of a safetensors file (its first bytes)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        shape = header["latent"]["shape"] if "latent" in header else [1, *header["indices"]["shape"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(where, f"not a latent file ({type(e).__name__}: {e})") from None
    if len(shape) != 4:
        raise DataError(where, f"a latent must be (C, T', H', W') or indices (T', H', W'), got shape {shape}")
    return tuple(shape)  # type: ignore[return-value]


def probe_video(data: bytes, where: str = "video") -> tuple[int, int, int, float]:
    """``(width, height, num_frames, fps)`` of an encoded video; decodes the first frame to prove it can."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise DataError(where, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            num = stream.frames
            frame = next(container.decode(stream), None)
            if frame is None:
                raise DataError(where, "video has no decodable frames")
            w, h = frame.width, frame.height
        if num <= 0:  # the container does not say: count the packets
            with av.open(io.BytesIO(data), mode="r") as container:
                num = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(where, f"undecodable video ({e})") from e
    return w, h, int(num), float(rate) if rate else 0.0


def decode_video(data: bytes, start: int = 0, num: int | None = None, stride: int = 1,
                 where: str = "video") -> np.ndarray:
    """Frames ``start, start + stride, ...`` (``num`` of them, or to the end) as ``uint8 (T, H, W, 3)``;
    fewer when the video ends first. Decodes from the first frame and stops after the last one needed."""
    if start < 0 or stride < 1 or (num is not None and num < 1):
        raise ValueError(f"bad frame selection start={start} num={num} stride={stride}")
    stop = None if num is None else start + (num - 1) * stride + 1
    frames = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise DataError(where, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if stop is not None and i >= stop:
                    break
                if i >= start and (i - start) % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(where, f"undecodable video ({e})") from e
    if not frames:
        raise DataError(where, f"no frames at or after frame {start}")
    return np.stack(frames)


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode an image (EXIF rotation applied) as ``uint8 (1, H, W, 3)`` RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)[None].copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(where, f"undecodable image ({e})") from e
