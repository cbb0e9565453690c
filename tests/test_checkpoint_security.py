"""No code runs from any file of a checkpoint: pickle payloads planted where a loader might read them (DCP
metadata, DCP shards, ``*.pt``/``*.pkl`` files, JSON fields naming classes) run nothing, loaders refuse
them with one line, and ``verify`` names every such file."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from typer.testing import CliRunner

from openwfm import safe_dcp
from openwfm.cli.app import app
from openwfm.config import make_config
from openwfm.errors import OpenWFMError
from openwfm.safe_dcp import SafeReader, UnsafeFileError, read_metadata, read_part
from openwfm.tasks.toy import ToyRunConfig, ToyTask
from openwfm.train import checkpoint as ckpt
from openwfm.train.loop import Trainer


class Payload:
    """Pickles to a call of ``exec`` that writes ``marker``: proof of code execution when it appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def _train(run: Path, sharded: str) -> Path:
    cfg = make_config(ToyRunConfig, "tiny", overrides=["train.steps=2", "train.checkpoint.every=2",
                                                       f"train.checkpoint.sharded='{sharded}'"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        Trainer(ToyTask(cfg), run, progress=False).fit()
    return ckpt.latest_checkpoint(run / "checkpoints")


def _reindex(step_dir: Path) -> None:
    """An attacker ships a consistent directory: the index matches the planted files."""
    ckpt.write_index(step_dir, int(step_dir.name[5:]))


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("sharded") / "run", "yes")


@pytest.fixture
def run(tmp_path, sharded_run) -> tuple[Path, Path]:
    """A private copy of the sharded run and its newest checkpoint."""
    dst = tmp_path / "run"
    shutil.copytree(sharded_run.parent.parent, dst)
    return dst, dst / "checkpoints" / sharded_run.name


def test_the_sharded_checkpoint_loads_through_the_safe_reader(run):
    root, step = run
    assert (step / "dcp" / ".metadata").is_file() and ckpt.verify(step) == []
    meta = read_metadata(step / "dcp" / ".metadata")
    assert any(k.startswith("model.") for k in meta.state_dict_metadata)
    config, weights = ckpt.load_weights(root, ema=False)
    assert config["task"] == "toy" and weights and all(isinstance(v, torch.Tensor) for v in weights.values())
    assert read_part(step / "dcp", "nope") is None


def test_a_crafted_dcp_metadata_runs_nothing(run, tmp_path):
    root, step = run
    marker = tmp_path / "pwned"
    (step / "dcp" / ".metadata").write_bytes(_payload(marker))
    _reindex(step)
    assert any("builtins.exec" in p for p in ckpt.verify(step))  # verify no longer says "ok"
    with pytest.raises(OpenWFMError, match=r"\.metadata: refers to builtins\.exec"):
        ckpt.load_weights(step)
    with pytest.raises(UnsafeFileError, match=r"\.metadata: refers to builtins\.exec"):
        ckpt.read_dcp_part(step, "model")  # past verify, the reader itself refuses
    with pytest.raises(UnsafeFileError):
        ckpt.consolidate(step, tmp_path / "out")
    cfg = make_config(ToyRunConfig, "tiny", overrides=["train.steps=4", "train.checkpoint.sharded='yes'"])
    with pytest.raises(OpenWFMError):  # --resume: the newest checkpoint does not verify, and no other does
        Trainer(ToyTask(cfg), root, resume=True, progress=False).fit()
    with pytest.raises(UnsafeFileError):
        SafeReader(step / "dcp").read_metadata()
    assert not marker.exists()


def test_garbage_metadata_is_one_clear_error(run, tmp_path):
    _, step = run
    (step / "dcp" / ".metadata").write_bytes(b"\x80\x05not a pickle")
    with pytest.raises(UnsafeFileError, match="not readable DCP metadata"):
        read_metadata(step / "dcp" / ".metadata")
    (step / "dcp" / ".metadata").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UnsafeFileError, match="not DCP metadata"):
        read_metadata(step / "dcp" / ".metadata")


def test_a_payload_inside_a_dcp_shard_runs_nothing(tmp_path):
    """A non-tensor item in a .distcp shard is a pickle DCP's default planner loads with
    weights_only=False: the payload is live there, and the safe planner refuses it."""
    marker = tmp_path / "pwned"
    dcp.save({"w": torch.ones(2), "extra": Payload(marker)}, checkpoint_id=str(tmp_path / "dcp"))
    assert not marker.exists()
    with pytest.raises(UnsafeFileError, match="DCP item extra: not plain tensor data"):
        safe_dcp.load({"w": torch.zeros(2), "extra": None}, tmp_path / "dcp")
    assert not marker.exists()
    assert read_part(tmp_path / "dcp", "w") is not None  # tensors alone still read
    assert not marker.exists()
    with warnings.catch_warnings():  # the payload is live: DCP's own planner runs it
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({"w": torch.zeros(2), "extra": None}, checkpoint_id=str(tmp_path / "dcp"))
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("name", ["optimizer.pt", "model.pt", "state.pkl", "dcp/extra.pt", "model.bin"])
def test_planted_pickle_files_are_never_read_and_verify_names_them(tmp_path, name):
    run = tmp_path / "run"
    step = _train(run, "no")
    marker = tmp_path / "pwned"
    (step / name).parent.mkdir(exist_ok=True)
    (step / name).write_bytes(_payload(marker))
    problems = ckpt.verify(step)
    assert any(name.split("/")[-1] in p and "not in index.json" in p or "not an allowed kind" in p
               for p in problems), problems
    _reindex(step)  # even when the index lists it, the kind is refused
    assert any("not an allowed kind" in p for p in ckpt.verify(step))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_weights(step)
    assert not marker.exists()


def test_json_fields_naming_classes_run_nothing(tmp_path):
    run = tmp_path / "run"
    step = _train(run, "no")
    marker = tmp_path / "pwned"
    config = json.loads((step / "config.json").read_text())
    config["_target_"] = "builtins.exec"
    config["model"]["__class__"] = "os.system"
    config["task"] = "builtins.exec"
    (step / "config.json").write_text(json.dumps(config))
    (step / "trainer.json").write_text(json.dumps({"step": 2, "sharded": {"__reduce__": "os.system"}}))
    _reindex(step)
    from openwfm.hub import load_world_model

    with pytest.raises(OpenWFMError):
        load_world_model(str(step))
    assert not marker.exists()


def test_ckpt_verify_cli_fails_on_a_planted_file(tmp_path):
    run = tmp_path / "run"
    step = _train(run, "no")
    (step / "optimizer.pt").write_bytes(_payload(tmp_path / "pwned"))
    res = CliRunner().invoke(app, ["ckpt", "verify", str(step)])
    assert res.exit_code != 0 and "optimizer.pt" in res.output
    assert not (tmp_path / "pwned").exists()
