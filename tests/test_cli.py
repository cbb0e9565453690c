import json
import subprocess
import sys

from typer.testing import CliRunner

from openwfm.cli import app

runner = CliRunner()


def wfm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openwfm.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("sim", "video", "config", "demo"):
        assert cmd in r.output
    r = runner.invoke(app, ["sim", "--help"])
    assert r.exit_code == 0 and "--workers" in r.output and "--size" in r.output


def test_sim_writes_samples_with_overrides(tmp_path):
    r = wfm("--quiet", "sim", "falling", "--num", "2", "--out", str(tmp_path), "--preset", "tiny", "--frames", "5",
            "--size", "48x32", "--seed", "7", "falling.max_objects=2")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 falling samples" in r.stdout and "pybullet" not in r.stdout
    meta = json.loads((tmp_path / "falling_000008.json").read_text())
    assert (meta["num_frames"], meta["height"], meta["width"]) == (5, 32, 48)
    assert len(meta["objects"]) <= 2
    assert (tmp_path / "falling_000008.mp4").is_file() and (tmp_path / "falling_000008.masks.npz").is_file()


def test_errors_exit_nonzero_with_a_message_and_no_traceback(tmp_path):
    r = wfm("sim", "falling", "--out", str(tmp_path), "falling.max_objcts=2")
    assert r.returncode == 1 and "did you mean 'falling.max_objects'" in r.stderr and "Traceback" not in r.stderr
    r = wfm("sim", "juggling", "--out", str(tmp_path), "--num", "1")
    assert r.returncode == 1 and "unknown scenario 'juggling'" in r.stderr
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    r = wfm("video", "info", str(bad))
    assert r.returncode == 1 and str(bad) in r.stderr and "Traceback" not in r.stderr
    r = wfm("--debug", "video", "info", str(bad))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_config_show_and_video_info(tmp_path):
    r = runner.invoke(app, ["config", "sim", "--preset", "tiny", "num_frames=9"])
    assert r.exit_code == 0 and "num_frames: 9" in r.output and "height: 48" in r.output
    from conftest import moving_frames
    from openwfm.video import write_video

    path = write_video(tmp_path / "a.mp4", moving_frames(t=6), fps=6)
    r = runner.invoke(app, ["video", "info", "--json", str(path)])
    assert r.exit_code == 0 and json.loads(r.output)[0]["num_frames"] == 6
    r = runner.invoke(app, ["video", "convert", str(path), str(tmp_path / "b.gif"), "--size", "32x40"])
    assert r.exit_code == 0 and (tmp_path / "b.gif").is_file()


def test_resume_restores_the_saved_configuration(tmp_path):
    """`--resume train.steps=N` continues the run as it was configured (the README's line lost data.shards
    before); a change of what it trains is refused unless --allow-change; every change is printed."""
    run = tmp_path / "t1"
    r = wfm("--quiet", "train", "toy", "--preset", "tiny", "--out", str(run), "train.steps=2", "synthetic_samples=24",
            "model.model_channels=32", "train.checkpoint.every=2")
    assert r.returncode == 0, r.stderr
    r = wfm("--quiet", "train", "toy", "--preset", "tiny", "--out", str(run), "--resume", "train.steps=3")
    assert r.returncode == 0, r.stderr
    assert "resume: train.steps: 2 -> 3" in r.stderr and "--preset tiny not applied" in r.stderr
    saved = json.loads((run / "checkpoints/step-00000003/config.json").read_text())
    assert saved["synthetic_samples"] == 24 and saved["model"]["model_channels"] == 32  # kept, not reset
    r = wfm("train", "toy", "--out", str(run), "--resume", "train.steps=4", "synthetic_samples=48")
    assert r.returncode == 1 and "--allow-change" in r.stderr and "synthetic_samples: 24 -> 48" in r.stderr
    assert "Traceback" not in r.stderr and not (run / "checkpoints/step-00000004").exists()
    r = wfm("--quiet", "train", "toy", "--out", str(run), "--resume", "--allow-change", "train.steps=4",
            "synthetic_samples=48")
    assert r.returncode == 0 and "resume: synthetic_samples: 24 -> 48" in r.stderr, r.stderr


def test_help_lists_every_training_task_and_global_flags_go_anywhere(tmp_path):
    from openwfm.cli.training import TASKS_HELP
    from openwfm.tasks import task_names

    assert all(name in TASKS_HELP for name in task_names())
    r = runner.invoke(app, ["train", "--help"])
    assert r.exit_code == 0 and "posttrain-multiview" in r.output
    r = wfm("tokenizer", "roundtrip", "--help")
    assert r.returncode == 0 and "--side-by-side" in r.stdout and "<bool>" not in r.stdout  # flags read as flags
    r = wfm("sim", "falling", "--num", "1", "--out", str(tmp_path), "--preset", "tiny", "--quiet")
    assert r.returncode == 0 and "━" not in r.stderr and "pybullet" not in r.stderr + r.stdout, r.stderr


def test_sizes_are_width_by_height_and_must_be_positive(tmp_path):
    r = wfm("sim", "falling", "--num", "1", "--out", str(tmp_path), "--preset", "tiny", "--size", "0x64")
    assert r.returncode == 1 and "must be positive" in r.stderr and "Traceback" not in r.stderr
    r = wfm("sim", "falling", "--num", "1", "--out", str(tmp_path), "--preset", "tiny", "--size", "-5x64")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.mp4"))  # nothing was simulated for the refused commands
    r = wfm("sim", "falling", "--num", "1", "--out", str(tmp_path), "--preset", "tiny", "--size", "48x32")
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert r.returncode == 0 and (meta["width"], meta["height"]) == (48, 32)
    r = runner.invoke(app, ["video", "info", str(next(tmp_path.glob("*.mp4")))])
    assert "48x32" in r.output  # info prints the same order


def test_output_container_follows_the_extension_or_is_refused(tmp_path):
    from conftest import moving_frames
    from openwfm.video import write_video

    src = write_video(tmp_path / "a.mp4", moving_frames(t=6), fps=6)
    r = wfm("video", "convert", str(src), str(tmp_path / "b.avi"))
    assert r.returncode == 0, r.stderr
    r = runner.invoke(app, ["video", "info", "--json", str(tmp_path / "b.avi")])
    assert json.loads(r.output)[0]["container"].startswith("avi")
    r = wfm("video", "convert", str(src), str(tmp_path / "b.xyz"))
    assert r.returncode == 1 and "container follows the extension" in r.stderr and not (tmp_path / "b.xyz").exists()
    r = wfm("generate", "video2world", "-i", str(src), "-o", str(tmp_path / "c.webm"), "--no-guardrail")
    assert r.returncode == 1 and ".webm" in r.stderr and "Traceback" not in r.stderr
    r = wfm("generate", "video2world", "-i", str(src), "-o", str(tmp_path / "c.mp4"), "--no-guardrail",
            "--num-input-frames", "5", "--steps", "1")
    assert r.returncode == 1 and "trained on 1 or 9" in r.stderr and "Traceback" not in r.stderr


def test_shots_lists_writes_and_splits(tmp_path):
    import csv

    import numpy as np
    from openwfm.video import read_video, write_video

    a = np.zeros((30, 64, 96, 3), np.uint8)
    a[...] = (200, 40, 40)
    b = np.zeros((30, 64, 96, 3), np.uint8)
    b[...] = (20, 40, 200)
    for t in range(30):  # something moves in each shot
        a[t, 10:30, 5 + t:25 + t] = 255
        b[t, 30:50, 60 - t:80 - t] = 0
    src = write_video(tmp_path / "cut.mp4", np.concatenate([a, b]), 12.0)
    r = wfm("-q", "shots", str(src), "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json"),
            "--split", str(tmp_path / "split"))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [(int(x["start_frame"]), int(x["end_frame"])) for x in rows] == [(0, 30), (30, 60)]
    assert rows[0]["ends_with"] == "cut" and json.loads((tmp_path / "s.json").read_text())[1]["start_s"] == 2.5
    assert [len(read_video(tmp_path / "split" / f"cut-shot-00{i}.mp4").frames) for i in (1, 2)] == [30, 30]


def test_device_and_wrong_run_kind_are_one_line_errors(tmp_path):
    from conftest import moving_frames
    from openwfm.video import write_video

    src = write_video(tmp_path / "a.mp4", moving_frames(t=6), fps=6)
    import torch

    if not torch.cuda.is_available():
        r = wfm("generate", "video2world", "-i", str(src), "-o", str(tmp_path / "b.mp4"), "--device", "cuda")
        assert r.returncode == 1 and "--device cuda" in r.stderr and "Traceback" not in r.stderr
    r = wfm("generate", "video2world", "-i", str(src), "-o", str(tmp_path / "b.mp4"), "--device", "gpu")
    assert r.returncode == 1 and "use cpu or cuda" in r.stderr
    r = wfm("generate", "video2world", "-i", str(src), "-o", str(tmp_path / "b.mp4"), "-c", "cv4x8x8-s")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
