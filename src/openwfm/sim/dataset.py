"""Writing, reading and generating simulated samples: ``NAME.mp4`` + ``NAME.json`` + ``NAME.masks.npz``.

Each file is written to a temporary name and renamed; the JSON goes last and marks a sample complete,
so an interrupted run loses at most the samples in flight, and a re-run skips complete ones.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from openwfm.version import __version__
from openwfm.sim.config import SimConfig
from openwfm.sim.rollout import Rollout
from openwfm.sim.world import SimError
from openwfm.video.io import read_video, write_video

SCENARIOS = ("falling", "push", "orbit", "drive")


def simulate(scenario: str, cfg: SimConfig, seed: int) -> Rollout:
    """Run one scenario with one seed: the same seed and config always give the same rollout."""
    if scenario == "falling":
        from openwfm.sim.falling import simulate as run
    elif scenario == "push":
        from openwfm.sim.push import simulate as run
    elif scenario == "orbit":
        from openwfm.sim.orbit import simulate as run
    elif scenario == "drive":
        from openwfm.sim.drive import simulate as run
    else:
        raise SimError(f"unknown scenario '{scenario}': choose one of {', '.join(SCENARIOS)}")
    return run(cfg, seed)


def sample_name(scenario: str, seed: int) -> str:
    return f"{scenario}_{seed:06d}"


def is_complete(out: Path, name: str) -> bool:
    return all((out / f"{name}{ext}").is_file() for ext in (".mp4", ".masks.npz", ".json"))


def write_sample(out: str | os.PathLike, name: str, rollout: Rollout, cfg: SimConfig) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_video(out / f"{name}.mp4", rollout.frames, fps=cfg.fps, crf=cfg.crf)
    tmp = out / f".{name}.masks.tmp.npz"
    labels = rollout.meta["mask_labels"]
    np.savez_compressed(tmp, masks=rollout.masks, ids=np.array([int(k) for k in labels]),
                        names=np.array(list(labels.values())))
    os.replace(tmp, out / f"{name}.masks.npz")
    meta = {**rollout.meta, "name": name, "video": f"{name}.mp4", "masks": f"{name}.masks.npz",
            "config": asdict(cfg), "openwfm_version": __version__}
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / f"{name}.json")
    return out / f"{name}.json"


def load_sample(json_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames ``uint8 (T, H, W, 3)``, masks ``uint8 (T, H, W)`` and metadata of one sample."""
    json_path = Path(json_path)
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SimError(f"{json_path}: not a readable sample description ({e})") from e
    frames = read_video(json_path.parent / meta["video"]).frames
    mask_path = json_path.parent / meta["masks"]
    try:
        with np.load(mask_path) as z:
            masks = z["masks"]
    except (OSError, KeyError, ValueError) as e:
        raise SimError(f"{mask_path}: cannot read masks ({e})") from e
    return frames, masks, meta


def _job(scenario: str, cfg: SimConfig, seed: int, out: str) -> tuple[str, str]:
    name = sample_name(scenario, seed)
    rollout = simulate(scenario, cfg, seed)
    write_sample(out, name, rollout, cfg)
    return name, rollout.meta["caption"]


def generate(scenario: str, cfg: SimConfig, num: int, out: str | os.PathLike, seed: int = 0, workers: int = 1,
             overwrite: bool = False, on_done: Callable[[str, str], None] | None = None) -> list[str]:
    """Simulate samples with seeds ``seed .. seed + num - 1`` into ``out``; complete ones are skipped
    unless ``overwrite``. Returns the names written. ``workers > 1`` uses separate processes."""
    if scenario not in SCENARIOS:
        raise SimError(f"unknown scenario '{scenario}': choose one of {', '.join(SCENARIOS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [s for s in range(seed, seed + num) if overwrite or not is_complete(out, sample_name(scenario, s))]
    done: list[str] = []
    for name, caption in _run(scenario, cfg, seeds, str(out), workers):
        done.append(name)
        if on_done:
            on_done(name, caption)
    return done


def _run(scenario, cfg, seeds, out, workers) -> Iterator[tuple[str, str]]:
    if workers <= 1 or len(seeds) <= 1:
        for s in seeds:
            yield _job(scenario, cfg, s, out)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_job, scenario, cfg, s, out) for s in seeds]
        for f in as_completed(futures):
            yield f.result()
