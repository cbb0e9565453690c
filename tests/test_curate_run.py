"""The curator end to end: every input and clip accounted for, corrupt and missing inputs quarantined,
near-duplicates removed, shards readable, resume after kill -9, and the Ray engine's manifest equal to
the local one."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from openwfm.curate.run import CurateError, curate
from openwfm.curate.shots import ClipRules
from openwfm.curate.stages import CurateConfig

CFG = CurateConfig(short_side=96, rules=ClipRules(min_seconds=1.0, trim_seconds=0.2))


@pytest.fixture(scope="module")
def inputs(real_video, tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    bikes = real_video("bikes.mp4")
    shutil.copy(bikes, d / "bikes.mp4")
    shutil.copy(bikes, d / "bikes_copy.mp4")  # a duplicate under another name
    shutil.copy(real_video("cup.mp4"), d / "cup.mp4")
    (d / "broken.mp4").write_bytes(os.urandom(5000))
    from test_video import _cut

    _cut(real_video("cup.mp4"), d / "cup_cut.mp4", 60)  # truncated: its decodable part is curated, as partial
    (d / "notes.txt").write_text("not a video")  # found but not curated: recorded as skipped
    (d / "gone.mp4").symlink_to(d / "nowhere.mp4")  # a dangling link
    return d


def _same(a, b) -> bool:
    """Equal, floats within 1e-5 relative: processes with other thread counts differ in the last bits (a
    comparison after rounding fails whenever a value sits on a rounding boundary)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-5,
                                                                                             abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same(a, b) -> None:
    if not _same(a, b):
        assert a == b  # pytest shows where they differ


def _final(out) -> dict:
    recs = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        recs[(r["type"], r["id"])] = r
    return recs


def test_every_input_and_clip_is_accounted_for(inputs, tmp_path):
    from openwfm.data import load_index

    res = curate([inputs, inputs / "missing.mp4"], tmp_path / "out", CFG)
    recs = _final(tmp_path / "out")
    ins = {r["path"].split("/")[-1]: r for (t, _), r in recs.items() if t == "input"}
    assert set(ins) == {"bikes.mp4", "bikes_copy.mp4", "cup.mp4", "broken.mp4", "missing.mp4", "notes.txt",
                        "gone.mp4", "cup_cut.mp4"}
    cut = ins["cup_cut.mp4"]
    assert cut["status"] == "partial" and cut["decoded"] < cut["declared"] == ins["cup.mp4"]["frames"]
    assert "decoded" in cut["error"]
    assert ins["notes.txt"]["status"] == "skipped" and "not a video file extension" in ins["notes.txt"]["reason"]
    assert ins["gone.mp4"]["status"] == "skipped" and "dangling symbolic link" in ins["gone.mp4"]["reason"]
    assert ins["broken.mp4"]["status"] == "failed" and "unreadable video" in ins["broken.mp4"]["error"]
    assert ins["missing.mp4"]["status"] == "failed" and ins["missing.mp4"]["error"] == "no such file"
    assert ins["bikes.mp4"]["transitions"] >= 4  # of its 5 hard cuts (30, 76, 137, 187, 242): ShotNet finds 4
    clips = [r for (t, _), r in recs.items() if t == "clip"]
    assert all(r["status"] in ("kept", "dropped", "failed") for r in clips)
    dups = [r for r in clips if r["status"] == "dropped" and r["reason"].startswith("near-duplicate of")]
    assert dups and all("bikes" in r["id"] or "cup" in r["id"] for r in dups)  # the copies' clips (cup_cut: a cut cup)
    assert not any("overlay text" in r.get("reason", "") for r in clips)  # no overlay text in this footage
    kept = [r for r in clips if r["status"] == "kept"]
    assert kept and all(r["caption_source"] == "template" and r["caption"] for r in kept)
    index = [e for s in res["shards"] for e in load_index(s)]
    assert sorted(e.key for e in index) == sorted(r["id"] for r in kept)
    from safetensors import safe_open

    from openwfm.data.shards import TEXT_EXT, read_sample

    text = read_sample(index[0], [TEXT_EXT])[TEXT_EXT]  # the caption's token embeddings ride along
    (tmp_path / "t.safetensors").write_bytes(text)
    with safe_open(str(tmp_path / "t.safetensors"), "pt") as f:
        emb, meta = f.get_tensor("embedding"), f.metadata()
    assert emb.dtype.is_floating_point and emb.shape[1] == 384 and 2 < emb.shape[0] <= 64
    assert meta["encoder"].startswith("minilm") and meta["caption"] == recs[("clip", index[0].key)]["caption"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("near-duplicate") >= 1 and "notes.txt" in report and "dangling" in report
    assert "cup_cut.mp4" in report
    with pytest.raises(CurateError, match="--resume"):
        curate([inputs], tmp_path / "out", CFG)


def test_resume_after_kill_9(inputs, tmp_path):
    whole = tmp_path / "whole"
    curate([inputs], whole, CFG)
    out = tmp_path / "crashed"
    code = ("import sys; from openwfm.curate.run import curate; from openwfm.curate.stages import CurateConfig; "
            "from openwfm.curate.shots import ClipRules; "
            f"curate([{str(inputs)!r}], {str(out)!r}, CurateConfig(short_side=96, rules=ClipRules(1.0, 60.0, 0.2)))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once the first input is done, mid-way through the run
        m = out / "manifest.jsonl"
        if m.is_file() and '"status": "done"' in m.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "shards").exists()
    curate([inputs], out, CFG, resume=True)

    def final_states(p):
        return {k: {x: y for x, y in r.items() if x not in ("path", "source", "file")}
                for k, r in _final(p).items() if k[0] != "stage"}

    _assert_same(final_states(out), final_states(whole))
    assert not list((out / "clips").glob(".*"))  # no half-written clip left behind


@pytest.mark.ray
def test_ray_engine_gives_the_same_manifest(inputs, tmp_path):
    pytest.importorskip("ray")
    curate([inputs], tmp_path / "local", CFG)
    curate([inputs], tmp_path / "ray", CFG, engine="ray", workers=2)
    _assert_same(_strip(_final(tmp_path / "ray")), _strip(_final(tmp_path / "local")))
    assert _final(tmp_path / "ray")[("stage", "dedup")]["engine"] == "ray"  # the dedup search ran as Ray tasks


def _strip(recs: dict) -> dict:
    """Records without what differs by engine or place: paths, the engine, the Ray engine's node counts."""
    return {k: {x: y for x, y in r.items() if x not in ("path", "source", "file", "engine")}
            for k, r in recs.items() if k != ("stage", "ray")}


@pytest.mark.ray
def test_ray_curation_spreads_over_a_two_node_cluster(inputs, tmp_path):
    """A local 2-node Ray cluster (ray.cluster_utils.Cluster, 2 CPUs a node): joined with --ray-address, the
    stages' actors (4 CPUs in all) land on both nodes, and the manifest is the local engine's."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    curate([inputs], tmp_path / "local", CFG)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    try:
        cluster.wait_for_nodes()
        curate([inputs], tmp_path / "two", CFG, engine="ray", workers=2, ray_address=cluster.address)
        counts = _final(tmp_path / "two")[("stage", "ray")]["nodes"]
        assert len({node for stage in counts.values() for node in stage}) == 2, counts
    finally:
        ray.shutdown()
        cluster.shutdown()
    _assert_same(_strip(_final(tmp_path / "two")), _strip(_final(tmp_path / "local")))


def test_cli_sim_preset_overrides_exit_codes_and_shards_found_below(tmp_path):
    """`wfm curate` on the project's own footage: the sim preset keeps simulator rollouts, key=value items
    are overrides (not inputs), the exit status says when inputs failed, and the curator's shard folder
    feeds training as it is."""
    import subprocess
    import sys

    def wfm(*args):
        return subprocess.run([sys.executable, "-m", "openwfm.cli", *args], capture_output=True, text=True, timeout=600)

    sim = tmp_path / "sim"
    r = wfm("--quiet", "sim", "falling", "--num", "2", "--out", str(sim), "--frames", "17", "--size", "64x64")
    assert r.returncode == 0, r.stderr
    r = wfm("curate", str(sim), "--out", str(tmp_path / "c1"), "--preset", "sim", "short_side=64", "-q")
    assert r.returncode == 0, r.stderr
    assert "record" in r.stdout and "kept" in r.stdout  # a table, not a dict
    records = [json.loads(line) for line in (tmp_path / "c1/manifest.jsonl").read_text().splitlines()]
    assert not any("short_side" in str(rec.get("path", "")) for rec in records)
    assert {rec["status"] for rec in records if rec["type"] == "clip"} >= {"kept"}
    from openwfm.data import load_index

    assert len(load_index(tmp_path / "c1/shards").entries) >= 1  # the shard groups below are found
    # training reads the caption states the curator stored, when they come from its own text encoder
    import torch

    from openwfm.data import DataConfig
    from openwfm.data.dataset import ClipDataset, collate
    from openwfm.tasks.diffusion import DiffusionRunConfig, DiffusionTask

    ds = ClipDataset(load_index(tmp_path / "c1/shards"), DataConfig(resolution=64, num_frames=9, batch_size=2))
    batch = collate([ds[0], ds[1]])
    assert all(s is not None and s[0] == "minilm-l6:64" for s in batch["caption_embedding"])
    task = DiffusionTask(DiffusionRunConfig())
    encoded, mask = task.text().encode(list(batch["caption"]))
    calls = task.text().misses
    stored, stored_mask = task.caption_states(batch)
    assert task.text().misses == calls  # nothing encoded again
    assert torch.equal(stored_mask, mask) and torch.allclose(stored, encoded, atol=2e-3)  # float16 in the shard
    batch["caption"][0] += " (edited)"  # a caption that no longer matches its stored states is encoded
    assert not torch.equal(task.caption_states(batch)[0][0], stored[0])
    from browser import check_page

    assert check_page(tmp_path / "c1/report.html") >= 3  # histograms and thumbnails load in a browser
    r = wfm("curate", str(tmp_path / "nope"), "--out", str(tmp_path / "c2"), "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    bad = sim / "broken.mp4"
    bad.write_text("not a video")
    r = wfm("curate", str(sim), "--out", str(tmp_path / "c3"), "--preset", "sim", "-q")
    assert r.returncode == 4 and "1 input(s) failed" in r.stderr, r.stdout + r.stderr


def test_local_engine_on_processes_gives_the_same_manifest(inputs, tmp_path):
    """Issue 23: the local engine curates inputs in parallel processes (`wfm curate -j N`), with the same
    records as one process."""
    import math

    curate([inputs], tmp_path / "one", CFG)
    curate([inputs], tmp_path / "two", CFG, processes=2)

    def close(a, b) -> bool:  # one thread per worker: float32 scores differ in the last bits
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        return a == b

    one, two = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert one.keys() == two.keys()
    skip = ("path", "source", "file")
    for k in one:
        assert close({x: y for x, y in one[k].items() if x not in skip},
                     {x: y for x, y in two[k].items() if x not in skip}), k
