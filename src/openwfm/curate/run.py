"""``wfm curate``: inputs -> clips -> dedup -> shards, with every input and clip accounted for.

Engines: ``local`` (this process) and ``ray`` (an actor pool; ray_engine.py). Both hand the same records to
the manifest, so they give the same manifest on the same input (up to order). The run can be resumed
after any crash: finished inputs (done or failed) are skipped, an input that was in progress is done
again (its clip files are replaced atomically), and the whole-run stages (dedup, shards, report) run
again from the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from openwfm.curate.manifest import Manifest
from openwfm.curate.stages import (CurateConfig, find_inputs, input_id, load_captioner, load_text_encoder,
                                   process_input, skipped_inputs)
from openwfm.errors import OpenWFMError

log = logging.getLogger(__name__)


class CurateError(OpenWFMError):
    """A curation run that cannot start (bad output directory, no inputs, missing engine)."""


def pending_inputs(inputs: list[Path], manifest: Manifest) -> list[Path]:
    """Inputs without a final (done / failed) record; duplicates (same file twice) once."""
    seen, out = set(), []
    for p in inputs:
        iid = input_id(p)
        rec = manifest.get("input", iid)
        if iid in seen or (rec and rec["status"] in ("done", "partial", "failed", "skipped")):
            continue
        seen.add(iid)
        out.append(p)
    return out


def write_records(manifest: Manifest, records: list[dict]) -> None:
    for rec in records:
        rec = dict(rec)
        manifest.record(rec.pop("type"), rec.pop("id"), rec.pop("status"), **rec)


def curate(inputs: list[str | os.PathLike], out_dir: str | os.PathLike, cfg: CurateConfig | None = None,
           engine: str = "local", ray_address: str | None = None, resume: bool = False, workers: int = 2,
           on_input: Callable[[str], None] | None = None, processes: int = 1) -> dict:
    """Run the curator; returns the manifest's counts and the shard directories. ``processes`` > 1: the
    local engine curates that many inputs at once, each in its own process (``workers``: Ray's actors)."""
    cfg = cfg or CurateConfig()
    out = Path(out_dir)
    files, skipped = find_inputs(inputs), skipped_inputs(inputs)
    if not files:
        more = f" ({len(skipped)} other files, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CurateError(f"no input videos in {', '.join(map(str, inputs))}{more}")
    if (out / "manifest.jsonl").is_file() and not resume:
        raise CurateError(f"{out} already holds a curation run (manifest.jsonl); pass --resume to continue it "
                          "or choose another --out")
    for stale in (out / "clips").glob(".*.mp4") if (out / "clips").is_dir() else []:
        stale.unlink()  # half-written clips of a crashed run (finished clips are renamed into place)
    with Manifest(out) as manifest:
        for p, why in skipped:  # every path found is accounted for
            if manifest.get("input", input_id(p)) is None:
                manifest.record("input", input_id(p), "skipped", path=str(p), reason=why)
        todo = pending_inputs(files, manifest)
        for p in todo:
            if not p.exists():  # named but missing: accounted for (once), not fatal
                manifest.record("input", input_id(p), "failed", path=str(p), error="no such file")
        todo = [p for p in todo if p.exists()]
        if engine == "local" and processes > 1 and len(todo) > 1:
            _local_processes(todo, cfg, out, manifest, processes, on_input)
        elif engine == "local":
            vlm, text_encoder = load_captioner(cfg), load_text_encoder(cfg)
            for p in todo:
                manifest.record("input", input_id(p), "started", path=str(p))
                write_records(manifest, process_input(p, cfg, out, vlm, text_encoder))
                if on_input:
                    on_input(str(p))
        elif engine == "ray":
            from openwfm.curate.ray_engine import run_ray

            run_ray(todo, cfg, out, manifest, ray_address, workers, on_input)  # its dedup runs on Ray too
        else:
            raise CurateError(f"unknown engine '{engine}': local or ray")
        if engine != "ray":
            run_dedup(manifest, out, cfg)
        shards = write_shards(manifest, out, cfg)
        counts = manifest.counts()
    from openwfm.curate.report import write_report

    write_report(out)
    return {"counts": counts, "shards": [str(s) for s in shards]}


_WORKER: dict = {}


def _start_worker(cfg: CurateConfig) -> None:
    import torch

    torch.set_num_threads(1)  # one core per process: the processes are the parallelism
    _WORKER.update(vlm=load_captioner(cfg), text=load_text_encoder(cfg))


def _work(path: str, cfg: CurateConfig, out: str) -> list[dict]:
    return process_input(path, cfg, out, _WORKER["vlm"], _WORKER["text"])


def _local_processes(todo: list[Path], cfg: CurateConfig, out: Path, manifest: Manifest, processes: int,
                     on_input: Callable[[str], None] | None) -> None:
    """The local engine on ``processes`` processes (spawned; each loads the captioner and text encoder
    once). Records are written here, in the parent, as inputs finish; a worker that dies fails its inputs."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(processes, len(todo)), mp_context=ctx, initializer=_start_worker,
                             initargs=(cfg,)) as pool:
        futures = {}
        for p in todo:
            manifest.record("input", input_id(p), "started", path=str(p))
            futures[pool.submit(_work, str(p), cfg, str(out))] = p
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                records = fut.result()
            except Exception as e:  # noqa: BLE001 - a crashed worker fails its input, not the run
                records = [{"type": "input", "id": input_id(p), "path": str(p), "status": "failed",
                            "error": f"worker failed: {type(e).__name__}: {e}"}]
            write_records(manifest, records)
            if on_input:
                on_input(str(p))


def run_dedup(manifest: Manifest, out: Path, cfg: CurateConfig, search=None, engine: str = "local") -> int:
    """Drop near-duplicate kept clips (the lower-quality copy), recording which clip each duplicates;
    ``search``: the engine's distributed range search (``dedup.near_pairs``)."""
    from openwfm.curate.dedup import dedup

    kept = sorted((r for r in manifest.records("clip") if r["status"] == "kept"), key=lambda r: r["id"])
    if len(kept) < 2:  # sorted: the result must not depend on the order the engine finished inputs in
        manifest.record("stage", "dedup", "done", removed=0)
        return 0
    emb = np.stack([np.load(out / "clips" / f"{r['id']}.emb.npy") for r in kept])
    quality = [r["scores"]["sharpness"] * r["scores"]["width"] * r["scores"]["height"] for r in kept]
    removed = dedup([r["id"] for r in kept], emb, quality, cfg.dedup_threshold, cfg.seed, search=search)
    by_id = {r["id"]: r for r in kept}
    for cid, twin in removed.items():
        rec = {k: v for k, v in by_id[cid].items() if k not in ("type", "id", "status")}
        manifest.record("clip", cid, "dropped", **{**rec, "reason": f"near-duplicate of {twin}"})
    manifest.record("stage", "dedup", "done", removed=len(removed), engine=engine)
    return len(removed)


def _group(rec: dict) -> str:
    """Shard group of a clip: aspect bucket and length class, e.g. ``16x9_5-10s``."""
    from openwfm.data.buckets import nearest_bucket

    s = rec["scores"]
    aspect = nearest_bucket(s["width"], s["height"]).replace(":", "x")
    d = s["duration"]
    length = "lt5s" if d < 5 else "5-10s" if d < 10 else "10-30s" if d < 30 else "30s+"
    return f"{aspect}_{length}"


def write_shards(manifest: Manifest, out: Path, cfg: CurateConfig) -> list[Path]:
    """Kept clips -> ``out/shards/<group>/`` WebDataset shards (mp4, json and the caption's token
    embeddings as ``text.safetensors``), rewritten from the manifest."""
    from openwfm.data import pack_samples
    from openwfm.data.shards import TEXT_EXT

    kept = [r for r in manifest.records("clip") if r["status"] == "kept"]
    groups: dict[str, list[dict]] = {}
    for r in kept:
        groups.setdefault(_group(r), []).append(r)
    root = out / "shards"
    tmp = out / ".shards.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    for name, recs in sorted(groups.items()):
        def samples(recs=recs):
            for r in recs:
                meta = {"caption": r["caption"], "caption_source": r["caption_source"], "fps": r["fps"],
                        "source": r["source"], "start": r["start"], "end": r["end"], "scores": r["scores"],
                        "clip": r["id"]}
                members = {"mp4": (out / r["file"]).read_bytes(), "json": json.dumps(meta).encode()}
                text = out / "clips" / f"{r['id']}.{TEXT_EXT}"
                if cfg.text_encoder and text.is_file():
                    members[TEXT_EXT] = text.read_bytes()
                yield r["id"].replace(".", "_"), members
        written.append(pack_samples(samples(), tmp / name, maxcount=cfg.shard_maxcount))
    shutil.rmtree(root, ignore_errors=True)
    if tmp.exists():
        tmp.rename(root)
    manifest.record("stage", "shard", "done", groups={n: len(v) for n, v in groups.items()})
    return [root / p.name for p in written]
