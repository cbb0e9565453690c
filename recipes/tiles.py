"""Cut real footage into square tile clips at the scale a tokenizer is evaluated at (used by
recipes/tokenizers.sh): each video's frames are scaled to a short side of 256 px (and, for one tile in three,
a random short side in 192-384 px) and ``--tiles`` random SIZE x SIZE crops of ``--frames`` consecutive
frames are written as near-lossless H.264 (CRF 8), from up to ``--segments`` evenly spaced segments.

    python recipes/tiles.py VIDEO... -o DIR [--size 128] [--frames 17] [--segments 10] [--tiles 3]
"""

import argparse
from pathlib import Path

import numpy as np

from openwfm.video import VideoError, probe, read_video, write_video
from openwfm.video.transforms import resize_short_side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for path in args.videos:
        info = probe(path)
        n = min(args.segments, info.num_frames // args.frames)
        if n == 0:
            print(f"{path}: {info.num_frames} frames, fewer than {args.frames}; skipped")
            continue
        starts, written = np.linspace(0, info.num_frames - args.frames, n).astype(int), 0
        for i, start in enumerate(starts):
            try:
                frames = read_video(path, int(start), int(start) + args.frames).frames
            except VideoError:  # a header that over-counts frames (tree.avi): stop at the real end
                break
            if len(frames) < args.frames:
                break
            for j in range(args.tiles):
                short = 256 if j % 3 < 2 else int(rng.integers(192, 385))
                f = resize_short_side(frames, max(short, args.size))
                y = int(rng.integers(0, f.shape[1] - args.size + 1))
                x = int(rng.integers(0, f.shape[2] - args.size + 1))
                tile = np.ascontiguousarray(f[:, y:y + args.size, x:x + args.size])
                write_video(args.out / f"{path.stem}-{i:02d}-{j}.mp4", tile, info.fps or 25.0, crf=8)
                written += 1
        print(f"{path}: {written} tiles")


if __name__ == "__main__":
    main()
