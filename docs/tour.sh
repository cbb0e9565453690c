#!/usr/bin/env bash
# The README's tour, top to bottom, at tiny sizes. It makes every input it needs (simulator footage, a
# converted clip, shards, tiny runs) in a scratch directory: `bash docs/tour.sh [DIR]` (`make tour`).
# tests/test_tour.py runs it. The README shows these same commands.
set -euo pipefail
WFM_BIN=${WFM_BIN:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin}
export PATH="$WFM_BIN:$PATH"
W=${1:-$(mktemp -d)}
mkdir -p "$W" && cd "$W"
echo "tour in $W"
set -x

wfm --help > /dev/null                                       # every command
wfm sim falling --num 4 --out data/falling --frames 17 --size 64x64      # NAME.mp4 + NAME.json + NAME.masks.npz
wfm sim push --num 4 --out data/push -j 2 --frames 17 --size 64x64 push.pick_prob=0.5   # sizes are WIDTHxHEIGHT
wfm sim orbit --num 2 --out data/orbit --frames 17 --size 64x64 --seed 1000
cp data/falling/falling_000000.mp4 clip.mp4                  # a clip to play with
wfm video convert clip.mp4 other.avi                         # the container follows the extension
wfm video info clip.mp4 other.avi                            # size (WxH), fps, frames, duration, codec
wfm video convert other.avi out.mp4 --size 96x64 --start 0.2 --end 1.2
wfm config sim --preset tiny num_frames=9 > /dev/null        # resolved config as YAML
wfm data pack data/falling --out shards/falling              # WebDataset shards + offset index
wfm data pack data/push --out shards/push
wfm train toy --preset tiny --out runs/t1 data.shards=shards/falling train.steps=4   # the trainer on a tiny model
wfm train toy --out runs/t1 --resume train.steps=6          # exact resume: the saved config, more steps
wfm plot runs/t1                                             # loss and lr curves -> runs/t1/curves.png
wfm curate data --out cur --preset sim                       # footage -> shots -> filters -> captions -> dedup -> shards
wfm shots clip.mp4 --csv shots.csv                           # shot detection alone
wfm tokenizer roundtrip clip.mp4 rt.mp4 -c cv4x8x8-real      # a shipped tokenizer; --max-memory 4GiB tiles to fit
wfm tokenizer train --preset tiny-CV4x8x8 --out runs/tok data.shards=cur/shards data.resolution=64 \
    data.num_frames=9 train.steps=2                          # train your own
wfm train diffusion --preset tiny --out runs/dit data.shards=cur/shards tokenizer=cv4x8x8-real \
    data.resolution=64 data.num_frames=9 train.steps=2
wfm generate text2world -p "a red cube falls onto a tan floor" -o cube.mp4 --steps 2   # the shipped default
wfm data latents cur/shards --tokenizer dv4x8x8-s --out shards/tokens --resolution 64 --num-frames 9
wfm train ar --preset tiny-medusa --out runs/ar data.shards=shards/tokens tokenizer=dv4x8x8-s train.steps=2
wfm generate ar-video2world -c runs/ar -i clip.mp4 -o ar.mp4 --medusa --no-diffusion-decoder --no-guardrail
wfm posttrain action --base default-v2w --data shards/push --out runs/act train.steps=2   # camera | action | multiview
wfm guard prompt "shoot a video of the ball"                 # exit 0 allowed, 3 blocked
wfm guard video cube.mp4 --out safe.mp4                      # unsafe content -> exit 3; faces pixelated
wfm data caption-index cur/shards --out capidx && wfm upsample "a red ball rolls" --index capidx
wfm eval physics --sim data/falling --steps 2 --out eval/physics   # the shipped default vs copy-last
wfm generate video2world -i clip.mp4 -o future.mp4 --steps 2  # no --checkpoint: the shipped default
wfm recipe default --out runs/default --set falling=1 --set orbit=1 --set push=2 --set resolution=32 \
    --set tokenizer_steps=2 --set v2w_steps=2 --set action_steps=2 --set decoder_steps=2 --set workers=1   # the shipped default's recipe, tiny
set +x
echo "tour done in $W"
