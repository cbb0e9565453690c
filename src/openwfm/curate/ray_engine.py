"""The Ray engine: one actor pool per stage (split, filter, annotate), the manifest written by the driver.

``ray.init`` starts a local Ray unless ``address`` names a running cluster. Each stage's actors ask Ray for
the CPUs and GPUs its ``RayStage`` names (``--set ray.annotate.num_gpus=1`` puts captioning on GPUs) and
hold their models for the whole run. The driver keeps at most one task in flight per actor and splits new
inputs only while the filter stage's queue is short (``ray.backlog`` jobs per filter actor): that is the
backpressure. An input's records reach the manifest as soon as its last clip is annotated, so a crash
loses at most the inputs in flight, which ``--resume`` does again. An actor that dies (e.g. a decoder
crash) fails its item with the error and is replaced. The manifest's ``stage ray`` record counts the items
each stage finished on each node, so a cluster run shows where its work went.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Callable

from openwfm.curate.manifest import Manifest
from openwfm.curate.stages import (CurateConfig, RayStage, annotate_clip, filter_clip, finish_input, input_id,
                                   load_captioner, load_text_encoder, split_input)


def _node() -> str:
    """The Ray node this actor runs on (the manifest's ``stage ray`` record counts work per node)."""
    import ray

    return ray.get_runtime_context().get_node_id()


class _Split:
    def __init__(self, cfg: CurateConfig, out: str):
        self.cfg = cfg

    def run(self, path: str):
        return _node(), split_input(path, self.cfg)


class _Filter:
    def __init__(self, cfg: CurateConfig, out: str):
        self.cfg, self.out = cfg, out

    def run(self, job: dict):
        return _node(), filter_clip(job, self.cfg, self.out)


class _Annotate:
    def __init__(self, cfg: CurateConfig, out: str):
        self.out, self.vlm, self.text = out, load_captioner(cfg), load_text_encoder(cfg)

    def run(self, rec: dict):
        return _node(), annotate_clip(rec, self.out, self.vlm, self.text)


class _Pool:
    """A stage's actors, its queue of waiting items and its tasks in flight (future -> (actor, item))."""

    def __init__(self, ray, cls, stage: RayStage, workers: int, args: tuple):
        self.ray, self.args, self.size = ray, args, workers
        self.remote = ray.remote(num_cpus=stage.num_cpus, num_gpus=stage.num_gpus)(cls)
        self.idle = [self.remote.remote(*args) for _ in range(workers)]
        self.queue: deque = deque()
        self.busy: dict = {}
        self.nodes: dict[str, int] = {}  # node id -> items this stage finished there

    def pump(self) -> None:
        while self.idle and self.queue:
            actor, item = self.idle.pop(), self.queue.popleft()
            self.busy[actor.run.remote(item)] = (actor, item)

    def result(self, fut) -> tuple[object, object, BaseException | None]:
        """(item, result, error) of a finished task; its actor goes back to idle (or is replaced)."""
        actor, item = self.busy.pop(fut)
        try:
            (node, out), err = self.ray.get(fut), None
            self.nodes[node] = self.nodes.get(node, 0) + 1
        except self.ray.exceptions.RayActorError as e:
            out, err, actor = None, e, self.remote.remote(*self.args)
        except self.ray.exceptions.RayTaskError as e:
            out, err = None, e
        self.idle.append(actor)
        return item, out, err

    def close(self) -> None:
        """End the stage's actors, giving their CPUs and GPUs back (the dedup tasks need them)."""
        for actor in self.idle + [a for a, _ in self.busy.values()]:
            self.ray.kill(actor)
        self.idle, self.busy = [], {}


def _workers(stage: RayStage, default: int) -> int:
    return max(1, stage.workers or default)


def run_ray(todo: list[Path], cfg: CurateConfig, out: Path, manifest: Manifest, address: str | None = None,
            workers: int = 2, on_input: Callable[[str], None] | None = None) -> None:
    from openwfm.curate.run import CurateError, run_dedup, write_records

    try:
        import ray
    except ImportError as e:
        raise CurateError("the ray engine needs Ray: pip install 'ray>=2.9' (or use --engine local)") from e
    rc = cfg.ray
    stages = [(rc.split, _workers(rc.split, 1)), (rc.filter, _workers(rc.filter, workers)),
              (rc.annotate, _workers(rc.annotate, 1))]
    started = not ray.is_initialized()
    if started:  # a local Ray with room for every actor
        kw = {"address": address} if address else {"num_cpus": math.ceil(sum(s.num_cpus * n for s, n in stages))}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
    try:
        args = (cfg, str(out))
        split, filt, annotate = (_Pool(ray, cls, s, n, args) for cls, (s, n) in zip((_Split, _Filter, _Annotate), stages))
        waiting = deque(todo)
        inputs: dict[str, dict] = {}  # input id -> {"rec", "dropped", "clips", "left"}

        def finish(iid: str) -> None:
            st = inputs.pop(iid)
            records = finish_input(st["rec"], st["dropped"], sorted(st["clips"], key=lambda r: r["id"]))
            write_records(manifest, records)
            if on_input:
                on_input(st["rec"]["path"])

        def clip_done(rec: dict) -> None:
            st = inputs[rec["input"]]
            st["clips"].append(rec)
            st["left"] -= 1
            if st["left"] == 0:
                finish(rec["input"])

        while waiting or inputs or split.busy:
            while waiting and len(split.queue) + len(split.busy) < split.size and \
                    len(filt.queue) < rc.backlog * filt.size:
                p = waiting.popleft()
                manifest.record("input", input_id(p), "started", path=str(p))
                split.queue.append(str(p))
            for pool in (split, filt, annotate):
                pool.pump()
            futures = [*split.busy, *filt.busy, *annotate.busy]
            if not futures:
                continue
            (fut,), _ = ray.wait(futures, num_returns=1)
            if fut in split.busy:
                path, res, err = split.result(fut)
                if err is not None:
                    res = ({"type": "input", "id": input_id(path), "path": path, "status": "failed",
                            "error": f"worker failed: {type(err).__name__}: {err}"}, [], [])
                rec, dropped, jobs = res
                inputs[rec["id"]] = {"rec": rec, "dropped": dropped, "clips": [], "left": len(jobs)}
                filt.queue.extend(jobs)
                if not jobs:
                    finish(rec["id"])
            else:
                pool = filt if fut in filt.busy else annotate
                item, rec, err = pool.result(fut)
                if err is not None:
                    base = item["rec"] if pool is filt else item
                    rec = {**base, "status": "failed", "error": f"worker failed: {type(err).__name__}: {err}"}
                if pool is filt and rec["status"] == "kept":
                    annotate.queue.append(rec)
                else:
                    clip_done(rec)
        for pool in (split, filt, annotate):
            pool.close()
        manifest.record("stage", "ray", "done", nodes={name: pool.nodes for name, pool in
                                                         (("split", split), ("filter", filt), ("annotate", annotate))})
        run_dedup(manifest, out, cfg, search=ray_search(ray, workers), engine="ray")
    finally:
        if started:
            ray.shutdown()


def ray_search(ray, parts: int):
    """A ``dedup.near_pairs`` range search spread over Ray tasks: the index goes to the object store once,
    each task searches one slice of the queries; results come back in order."""
    from openwfm.curate.dedup import BLOCK, search_block

    @ray.remote
    def part(index_bytes, queries, threshold):
        import faiss

        return search_block(faiss.deserialize_index(index_bytes), queries, threshold)

    def search(index, x, threshold: float) -> list:
        import faiss

        ref = ray.put(faiss.serialize_index(index))
        step = max(1, min(BLOCK, -(-len(x) // max(1, parts))))
        futures = [part.remote(ref, x[a:a + step], threshold) for a in range(0, len(x), step)]
        return [nb for chunk in ray.get(futures) for nb in chunk]

    return search
