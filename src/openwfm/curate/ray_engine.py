"""The Ray engine: the per-input work on a pool of Ray actors, the manifest written by the driver.

``ray.init`` starts a local Ray (``workers`` CPUs) unless ``address`` names a running cluster. Each actor
holds its own models (e.g. the captioner) and asks Ray for one CPU (``gpus`` > 0: that many GPUs as
well); ``ActorPool.map_unordered`` keeps at most one input in flight per actor (backpressure), and each
result's records reach the manifest as soon as it arrives, so a crash loses at most the inputs in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from openwfm.curate.manifest import Manifest
from openwfm.curate.stages import CurateConfig, input_id, process_input


class _Worker:
    def __init__(self, cfg: CurateConfig, out: str):
        from openwfm.curate.run import _vlm

        self.cfg, self.out, self.vlm = cfg, out, _vlm(cfg)

    def run(self, path: str) -> list[dict]:
        return process_input(path, self.cfg, self.out, self.vlm)


def run_ray(todo: list[Path], cfg: CurateConfig, out: Path, manifest: Manifest, address: str | None = None,
            workers: int = 2, on_input: Callable[[str], None] | None = None, gpus: float = 0.0) -> None:
    from openwfm.curate.run import CurateError, write_records

    try:
        import ray
        from ray.util import ActorPool
    except ImportError as e:
        raise CurateError("the ray engine needs Ray: pip install 'ray>=2.9' (or use --engine local)") from e
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
    try:
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        pool = ActorPool([actor.remote(cfg, str(out)) for _ in range(max(1, workers))])
        for p in todo:
            manifest.record("input", input_id(p), "started", path=str(p))
        for records in pool.map_unordered(lambda a, p: a.run.remote(str(p)), todo):
            write_records(manifest, records)
            if on_input:
                on_input(next(r["path"] for r in records if r["type"] == "input"))
    finally:
        if started:
            ray.shutdown()
