"""Precomputed latents: tokenize a shard set once, train the world model many times.

``precompute`` cuts fixed clips from each video sample (up to ``clips`` clips of ``num_frames``, starting
every ``clip_step`` frames: consecutive by default, overlapping when smaller; images as one frame), fits
them into their aspect-ratio bucket at ``resolution`` and stores the tokenizer's raw latent as
``<key>.latent.safetensors`` (tensor ``latent``, (C, T', H', W'); a discrete tokenizer's FSQ indices as
tensor ``indices``, (T', H', W') int32) next to ``<key>.json`` (caption, fps, source, start frame,
tokenizer, and the source sample's metadata as ``meta``: post-training reads its actions and cameras).
With ``priors`` (input frame counts k) each video clip also stores ``prior<k>``: the latents of the clip's
first k frames with the k-th held to the end (``hold_last_frame``), the "hold" residual prior of a
Video2World model conditioned on k frames (``v2w.residual_prior``).
Normalization happens at training time, with the statistics of the tokenizer named in the run, which must
be the one that made the latents.

    wfm data latents SHARDS --tokenizer cv4x8x8-real --out LATENTS --resolution 64 --num-frames 17 --clips 2 \
        [--priors 1,9]
    wfm train diffusion --preset tiny data.shards=LATENTS tokenizer=cv4x8x8-real
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load, save

from openwfm.data import DataConfig, DataError, IndexEntry, load_index, pack_samples
from openwfm.data.buckets import bucket_sizes, fit_to_bucket, nearest_bucket
from openwfm.data.shards import LATENT_EXT, decode_image, decode_video, parse_meta, read_sample

def fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a tokenizer's weights: latents are only usable with the tokenizer that made them."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items())[:8]:
        h.update(name.encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def precompute(shards: str | os.PathLike, tokenizer: str, out: str | os.PathLike, resolution: int = 64,
               num_frames: int = 17, clips: int = 1, maxcount: int = 1000, overwrite: bool = False,
               progress=None, clip_step: int = 0, priors: tuple[int, ...] = ()) -> Path:
    """Write latent shards for every sample of ``shards`` (see the module docstring)."""
    from openwfm.diffusion.model import hold_last_frame
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.video.transforms import to_tensor

    model = load_tokenizer(tokenizer)
    cfg = model.cfg
    if (num_frames - 1) % cfg.temporal_compression:
        raise DataError(tokenizer, f"num_frames={num_frames}: the {cfg.kind} tokenizer takes 1 + k*"
                                   f"{cfg.temporal_compression} frames")
    bad = [k for k in priors if not 1 <= k < num_frames]
    if bad or (priors and cfg.discrete):
        raise DataError(tokenizer, f"priors={list(priors)}: held-input priors are for a continuous tokenizer and "
                                   f"input frame counts 1 .. {num_frames - 1}")
    step = clip_step or num_frames
    if step < 1:
        raise DataError(shards, f"clip_step={clip_step}: clips start at least one frame apart")
    multiple = max(16, cfg.spatial_compression * 2)
    sizes = bucket_sizes(resolution, multiple=multiple)
    index = load_index(shards)

    def samples() -> Iterator[tuple[str, dict[str, bytes]]]:
        for e in index:
            raw = read_sample(e, [e.media] + (["json"] if "json" in e.members else []))
            meta = parse_meta(raw.get("json"), e.where)
            size = sizes[nearest_bucket(e.width, e.height)]
            if e.kind == "video":
                n = max(1, min(clips, (e.num_frames - num_frames) // step + 1))
                pieces = [(k * step, decode_video(raw[e.media], k * step, num_frames, 1, e.where)) for k in range(n)]
                pieces = [(s, f) for s, f in pieces if len(f) == num_frames]
            else:
                pieces = [(0, decode_image(raw[e.media], e.where))]
            for k, (start, frames) in enumerate(pieces):
                x = to_tensor(fit_to_bucket(frames, size)[0])[None]
                with torch.no_grad():
                    z = model.encode_latent(x)
                    tensors = {"indices": model.quantize(z)[1][0].int().contiguous()} if cfg.discrete else \
                        {"latent": z[0].contiguous()}
                    if len(frames) > 1:
                        tensors |= {f"prior{k}": model.encode_latent(hold_last_frame(x, k))[0].contiguous()
                                    for k in priors}
                doc = {"caption": str(meta.get("caption", "")), "fps": e.fps, "source": e.key, "start_frame": start,
                       "frames": len(frames), "tokenizer": str(tokenizer), "tokenizer_kind": cfg.kind,
                       "tokenizer_fingerprint": fingerprint(model), "meta": meta}
                yield f"{e.key}_{k}", {LATENT_EXT: save(tensors), "json": json.dumps(doc).encode()}
            if progress is not None:
                progress(e.key)

    return pack_samples(samples(), out, maxcount=maxcount, overwrite=overwrite)


class LatentDataset(torch.utils.data.Dataset):
    """Items ``{"latent": (C, T', H', W') | "tokens": (T', H', W'), "caption", "fps", "key", "meta",
    "start_frame", "num_frames"}`` of latent shards (``tokens``: a discrete tokenizer's FSQ indices;
    ``meta``: the source sample's metadata, ``start_frame`` / ``num_frames``: the clip's place in it), plus
    ``prior<k>`` (C, T', H', W') where precomputed."""

    def __init__(self, entries: list[IndexEntry]):
        self.entries = entries
        self.keys = [f"latent{e.num_frames}/{nearest_bucket(e.width, e.height)}" for e in entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        raw = read_sample(e, [LATENT_EXT, "json"])
        meta = parse_meta(raw["json"], e.where)
        try:
            t = load(raw[LATENT_EXT])
            item = {"tokens": t["indices"].long()} if "indices" in t else {"latent": t["latent"].float()}
            item |= {k: v.float() for k, v in t.items() if k.startswith("prior")}
        except Exception as err:  # noqa: BLE001 - safetensors raises several types
            raise DataError(e.where, f"unreadable latent ({err})") from None
        return {**item, "caption": str(meta.get("caption", "")), "fps": float(meta.get("fps") or 0.0),
                "key": e.key, "tokenizer": meta.get("tokenizer_fingerprint", ""), "meta": meta.get("meta") or {},
                "start_frame": int(meta.get("start_frame", 0)), "num_frames": int(meta.get("frames", 1))}


def latent_loader(data_cfg: DataConfig, index, rank: int, world: int, epoch: int, position: int):
    """Bucketed batches of latent samples (one shape per batch), resumable like ``make_loader``."""
    from openwfm.data import BucketBatchSampler, collate, worker_context

    entries = [e for e in index if e.kind == "latent"]
    if not entries:
        raise DataError(data_cfg.shards, "no latent samples (wfm data latents makes them)")
    ds = LatentDataset(entries)
    sizes = {k: data_cfg.batch_size if not k.startswith("latent1/") else data_cfg.batch_sizes["image"]
             for k in ds.keys}
    sampler = BucketBatchSampler(ds.keys, sizes, rank=rank, world_size=world, seed=data_cfg.seed,
                                 shuffle=data_cfg.shuffle)
    sampler.load_state_dict({"epoch": epoch, "position": position})
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=data_cfg.num_workers, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(data_cfg.seed),
                                       multiprocessing_context=worker_context(data_cfg.num_workers))


def precomputed_loader(task, data_cfg: DataConfig, env, epoch: int, position: int):
    """``latent_loader`` when ``data.shards`` hold precomputed latents or tokens, else None (the task then
    reads videos); the shard index is loaded once per task and shard set."""
    if not data_cfg.shards:
        return None
    if getattr(task, "_index_for", None) != data_cfg.shards:
        task._index, task._index_for = load_index(data_cfg.shards), data_cfg.shards
    if any(e.kind == "latent" for e in task._index):
        return latent_loader(data_cfg, task._index, env.dp_rank, env.dp_size, epoch, position)
    return None
