"""Training clips from indexed shards: configs, a map-style dataset, collation and the loader.

Each item is one sample's clip, fitted into its aspect-ratio bucket. Batches come from
``BucketBatchSampler``, so the samples of a batch share a bucket (one shape) and image and video batches
alternate. Clip starts are drawn from ``(seed, epoch, index)``, so an item does not depend on which
worker loads it, and a resumed run sees the same clips as an uninterrupted one.

The trainer resumes a loader with ``sampler.load_state_dict(state)`` (or ``make_loader(...,
position=...)``) before iterating it, and moves on with ``sampler.set_epoch(epoch)``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from openwfm.config import ConfigError
from openwfm.data.buckets import DEFAULT_BUCKETS, bucket_sizes, fit_to_bucket, nearest_bucket, parse_bucket
from openwfm.data.sampler import BucketBatchSampler
from openwfm.data.shards import (TEXT_EXT, DataError, IndexEntry, ShardIndex, decode_image, decode_video,
                                 load_index, parse_meta, read_sample)
from openwfm.video.transforms import to_tensor

log = logging.getLogger(__name__)


class DataConfigError(ConfigError, ValueError):
    """A data config value that cannot be used (a ``ValueError`` and a ``ConfigError``)."""


@dataclass
class DataConfig:
    shards: str = ""  # shard directory, one .tar, or a glob of .tar files
    resolution: int = 64  # buckets hold about resolution ** 2 pixels
    num_frames: int = 17  # frames of a video clip (images are one frame)
    frame_stride: int = 1  # take every n-th source frame
    batch_size: int = 4  # video clips per batch and rank
    image_batch_size: int = 0  # images per batch and rank; 0 = batch_size
    buckets: list[str] = field(default_factory=lambda: list(DEFAULT_BUCKETS))  # "W:H" aspect ratios
    multiple: int = 16  # bucket sides are multiples of this
    num_workers: int = 0  # DataLoader worker processes
    shuffle: bool = True
    seed: int = 0
    images: bool = True  # also train on the image samples of the shards (as one-frame clips)

    def validate(self) -> None:
        for name in ("resolution", "num_frames", "frame_stride", "batch_size", "multiple"):
            if getattr(self, name) < 1:
                raise DataConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("image_batch_size", "num_workers", "seed"):
            if getattr(self, name) < 0:
                raise DataConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if self.resolution < self.multiple:
            raise DataConfigError(f"data.resolution ({self.resolution}) must be >= data.multiple ({self.multiple})")
        if not self.buckets:
            raise DataConfigError("data.buckets is empty: give at least one aspect ratio, e.g. ['1:1']")
        for b in self.buckets:
            try:
                parse_bucket(b)
            except ValueError as e:
                raise DataConfigError(f"data.buckets: {e}") from None
        if len(set(self.buckets)) != len(self.buckets):
            raise DataConfigError(f"data.buckets has duplicates: {self.buckets}")

    @property
    def batch_sizes(self) -> dict[str, int]:
        return {"video": self.batch_size, "image": self.image_batch_size or self.batch_size}


@dataclass
class StageConfig:
    """A progressive-training stage: from ``start_step`` on, train at this size and length."""

    start_step: int
    resolution: int
    num_frames: int
    batch_size: int


def stage_at(step: int, stages: list[StageConfig], base: DataConfig) -> tuple[int, DataConfig]:
    """The data config in effect at ``step``: the last stage that has started (stages must be sorted by
    ``start_step``), or ``base`` itself with index -1 before the first."""
    starts = [s.start_step for s in stages]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise ValueError(f"stages must have strictly increasing start_step, got {starts}")
    current = -1
    for i, s in enumerate(stages):
        if s.start_step <= step:
            current = i
    if current < 0:
        return -1, base
    s = stages[current]
    cfg = dataclasses.replace(base, resolution=s.resolution, num_frames=s.num_frames, batch_size=s.batch_size)
    cfg.validate()
    return current, cfg


def read_caption_embedding(data: bytes | None, where: str = "") -> tuple[str, str, torch.Tensor] | None:
    """(encoder name, caption, token states (L, D) float32) of a ``text.safetensors`` member the curator
    wrote (its text encoder's states of the caption, padding cut off), or None (absent or unreadable)."""
    if not data:
        return None
    import json

    from safetensors.torch import load

    try:
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__", {})
        return meta["encoder"], meta.get("caption", ""), load(data)["embedding"].float()
    except (ValueError, KeyError, RuntimeError) as e:
        log.warning("%s: unreadable caption embedding (%s); the caption is encoded again", where, e)
        return None


class ClipDataset(Dataset):
    """Map-style dataset over an index: item ``i`` is a clip of entry ``i`` fitted into its bucket.

    Items: ``video`` float32 ``(3, T, H, W)`` in [-1, 1] (T = 1 for images), ``mask`` float32 ``(1, H, W)``
    (1 on real pixels, 0 on padding), ``caption``, ``key``, ``meta`` (the sample's JSON), ``bucket`` (the
    sampler key, e.g. ``"video/16:9"``), ``num_valid_frames`` (frames before last-frame repetition),
    ``fps`` of the clip and ``caption_embedding`` (``read_caption_embedding``: what the curator stored, or
    None).
    """

    def __init__(self, index: ShardIndex | list[IndexEntry], cfg: DataConfig, epoch: int = 0):
        self.cfg, self.epoch = cfg, epoch
        self.entries = [e for e in index if e.kind == "video" or (cfg.images and e.kind == "image")]
        self.sizes = bucket_sizes(cfg.resolution, cfg.buckets, cfg.multiple)
        self.keys = [f"{e.kind}/{nearest_bucket(e.width, e.height, cfg.buckets)}" for e in self.entries]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        cfg, e = self.cfg, self.entries[i]
        raw = read_sample(e, [e.media] + [m for m in ("json", TEXT_EXT) if m in e.members])
        meta = parse_meta(raw.get("json"), e.where)
        if e.kind == "video":
            frames, valid, start = self._clip(raw[e.media], e, i)
            fps = e.fps / cfg.frame_stride
        else:
            frames, valid, fps, start = decode_image(raw[e.media], e.where), 1, 0.0, 0
        bucket = self.keys[i]
        frames, mask = fit_to_bucket(frames, self.sizes[bucket.split("/", 1)[1]])
        return {"video": to_tensor(frames), "mask": torch.from_numpy(mask).float()[None],
                "caption": str(meta.get("caption", "")), "key": e.key, "meta": meta, "bucket": bucket,
                "num_valid_frames": valid, "fps": float(fps), "start_frame": start,
                "caption_embedding": read_caption_embedding(raw.get(TEXT_EXT), e.where)}

    def _clip(self, data: bytes, e: IndexEntry, i: int) -> tuple[np.ndarray, int, int]:
        """``num_frames`` frames at ``frame_stride`` from a random start (returned: the frames, how many are
        real, the start); a short clip repeats its last."""
        cfg = self.cfg
        span = (cfg.num_frames - 1) * cfg.frame_stride + 1
        rng = np.random.default_rng((cfg.seed, self.epoch, i))
        start = int(rng.integers(0, e.num_frames - span + 1)) if e.num_frames > span else 0
        frames = decode_video(data, start, cfg.num_frames, cfg.frame_stride, e.where)
        valid = len(frames)
        if valid < cfg.num_frames:
            frames = np.concatenate([frames, np.repeat(frames[-1:], cfg.num_frames - valid, axis=0)])
        return frames, valid, start


def collate(samples: list[dict]) -> dict:
    """Stack tensors (one bucket per batch, so shapes agree), make numbers tensors, keep the rest as lists."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    out = {}
    for name, first in samples[0].items():
        values = [s[name] for s in samples]
        if isinstance(first, torch.Tensor):
            out[name] = torch.stack(values)
        elif isinstance(first, bool) or not isinstance(first, (int, float)):
            out[name] = values
        else:
            out[name] = torch.tensor(values)
    return out


def make_loader(cfg: DataConfig, index: ShardIndex | None = None, rank: int = 0, world_size: int = 1,
                epoch: int = 0, position: int = 0) -> tuple[DataLoader, BucketBatchSampler]:
    """A DataLoader of bucketed batches for one rank, starting at batch ``position`` of ``epoch``.

    ``index`` defaults to ``load_index(cfg.shards)``. Bucket keys are ``kind/bucket`` of each entry.
    """
    cfg.validate()
    if index is None:
        index = load_index(cfg.shards)
    dataset = ClipDataset(index, cfg, epoch)
    if not len(dataset):
        raise DataError(cfg.shards or "index", f"no usable samples among {len(index)} indexed"
                                               + ("" if cfg.images else " (image samples are off: data.images)"))
    sampler = BucketBatchSampler(dataset.keys, cfg.batch_sizes, rank=rank, world_size=world_size, seed=cfg.seed,
                                 shuffle=cfg.shuffle, on_epoch=dataset.set_epoch)
    sampler.load_state_dict({"epoch": epoch, "position": position})
    # own generator: creating the loader's iterator must not draw from the global RNG, or a resumed run
    # (which creates one more iterator) would drift from the uninterrupted one
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate,
                        persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed),
                        multiprocessing_context=worker_context(cfg.num_workers))
    return loader, sampler


def worker_context(num_workers: int):
    """The multiprocessing context of DataLoader workers: forkserver (None without workers). A worker forked
    from the training process inherits whatever locks its threads (OpenMP, decoders, logging) held at that
    moment and can wait on one forever; the fork server is a clean single-threaded process."""
    import multiprocessing

    return multiprocessing.get_context("forkserver") if num_workers > 0 else None
