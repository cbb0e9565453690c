"""The README's tour runs as written: `docs/tour.sh` top to bottom at tiny sizes, on its own inputs, and
the README shows the same commands."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(text: str) -> list[str]:
    """The `wfm ...` command lines of a text (continuations joined, comments and redirections dropped)."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        for part in line.split("&&"):
            part = re.sub(r"\s*>\s*/dev/null", "", part).strip()
            if part.startswith("wfm "):
                out.append(" ".join(part.split()))
    return out


def test_readme_shows_the_tour_script_commands():
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A short tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert _commands(tour) == _commands((ROOT / "docs" / "tour.sh").read_text())


def test_tour_runs_top_to_bottom(tmp_path):
    env = {**os.environ, "WFM_BIN": str(Path(sys.executable).parent)}
    r = subprocess.run(["bash", str(ROOT / "docs" / "tour.sh"), str(tmp_path / "tour")], capture_output=True,
                       text=True, timeout=900, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "tour done" in r.stdout
    for made in ("clip.mp4", "other.avi", "out.mp4", "rt.mp4", "cube.mp4", "ar.mp4", "future.mp4", "shots.csv",
                 "cur/manifest.jsonl", "eval/physics/report.html", "runs/default/export/world/default-v2w/index.json"):
        assert (tmp_path / "tour" / made).exists(), made
