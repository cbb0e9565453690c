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
            "--size", "32x48", "--seed", "7", "falling.max_objects=2")
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
