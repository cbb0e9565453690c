"""Prompt upsampler benchmark (Cosmos sec. 7): short user prompts through the retrieval upsampler.

    python benchmarks/upsampler.py /work/data/sim-train/falling /work/data/sim-train/push /work/data/sim-train/orbit

Builds a caption index from the given caption sources (simulator rollout dirs, shards, curator outputs, text
files) plus ``--drive`` simulated driving rollouts (captions only; nothing written); with no source at all it
simulates ``--simulate`` rollouts of every scenario. Prints, over ~40 prompts:
- the share of outputs that keep every noun and color of the prompt;
- the share with a conflicting color/count, by the upsampler's own rules (``check_upsampled``) and by an
  independent check: a color or number word within 3 words before a prompt noun that the prompt does not
  give that noun;
- mean words before -> after, mean cosine to the nearest index caption before -> after, ms per prompt.
"""

from __future__ import annotations

import argparse
import statistics
import time

PROMPTS = [
    # objects and colors (in the index's world)
    "a red ball rolls off a table", "a blue cube falls onto the floor", "two green cylinders fall onto a gray floor",
    "a yellow capsule bounces twice", "a small white ball is dropped onto a wooden table",
    "a large black cube and a pink ball fall", "three orange blocks fall onto a tan floor",
    "a purple cylinder rolls to the left", "a brown ball bounces on a slate floor", "a cyan capsule tumbles",
    "a red cube collides with a blue ball", "a ball bounces", "objects fall onto a table",
    # robot
    "a robot arm picks up a red cube", "a robot arm pushes a yellow block to the left",
    "a robot arm pushes a blue cylinder toward the camera", "a robot arm lifts a green cube from the table",
    "a robot arm misses the orange block", "a robot pushes a small pink cube", "a gripper grasps a cyan cylinder",
    # camera motion
    "the camera orbits around a green cylinder", "the camera circles counterclockwise around three objects",
    "the camera pans left across the table", "a slow camera orbit around a red ball and a blue cube",
    "the camera zooms in on a white capsule", "a static camera films a falling yellow ball",
    # driving
    "a car drives along a road", "a car drives down a curving road past other cars",
    "dashcam view of a car driving straight", "a red car turns left on a highway", "a truck passes two cars",
    "a car drives past obstacles at night",
    # absent from the index
    "a dog runs across a park", "a person pours water into a glass", "a drone flies over a city",
    "waves crash on a beach at sunset", "a cat jumps onto a kitchen counter", "a chef chops vegetables",
    # long: left unchanged
    "a medium-sized red ball is dropped onto a wooden table, bounces twice, rolls to the left and falls off the "
    "table onto a gray floor while a small blue cube stays where it is",
    "the camera circles clockwise about ninety degrees around a small yellow capsule, a red cylinder and a brown "
    "block resting on a textured slate floor at a steady height",
]


def simulated_captions(scenarios: list[str], num: int) -> list[str]:
    from openwfm.sim.config import SimConfig
    from openwfm.sim.dataset import simulate

    cfg = SimConfig(height=32, width=32)  # captions come from the physics, not the pixels
    return [simulate(s, cfg, seed).meta["caption"] for s in scenarios for seed in range(num)]


def independent_conflict(prompt: str, out: str) -> bool:
    """A color or number word within 3 words before a prompt noun, which the prompt does not give it."""
    from openwfm.text.facts import COLORS, NUMBERS, facts, lemma, tokens

    given: dict[str, tuple[set, set]] = {}
    for th in facts(prompt).things:
        cols, nums = given.setdefault(th.noun, (set(), set()))
        cols |= th.colors
        nums |= {th.count} if th.count is not None else set()
    toks = tokens(out)
    for i, t in enumerate(toks):
        noun = lemma(t)
        if noun not in given:
            continue
        before = []
        for w in reversed(toks[max(0, i - 3):i]):
            if w in ".,;:!?":
                break
            before.append(w)
        if "other" in before or "another" in before:
            continue
        if {COLORS[w] for w in before if w in COLORS} - given[noun][0]:
            return True
        num = {NUMBERS.get(w, int(w) if w.isdigit() else None) for w in before if w in NUMBERS or w.isdigit()}
        if given[noun][1] and num - given[noun][1]:
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", help="caption sources: rollout dirs, shard dirs, curator outputs, text files")
    ap.add_argument("--drive", type=int, default=20, help="simulated driving rollouts to add (captions only)")
    ap.add_argument("--simulate", type=int, default=20, help="rollouts per scenario when no source is given")
    ap.add_argument("--word-limit", type=int, default=30)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--examples", type=int, default=10, help="prompts to print with their output")
    args = ap.parse_args()

    from openwfm.text.caption_index import CaptionIndex, collect_captions
    from openwfm.text.facts import missing_facts
    from openwfm.text.upsampler import RetrievalUpsampler, check_upsampled, normalize_prompt

    t0 = time.perf_counter()
    caps, _ = collect_captions(args.sources) if args.sources else ([], [])
    extra = simulated_captions(["drive"], args.drive) if args.drive else []
    if not args.sources:
        extra += simulated_captions(["falling", "push", "orbit"], args.simulate)
    index = CaptionIndex.build(caps + extra)
    print(f"index: {len(index)} captions ({len(caps)} from {len(args.sources)} sources, {len(extra)} simulated), "
          f"median {index.median_words} words, built in {time.perf_counter() - t0:.1f} s")

    up = RetrievalUpsampler(index, word_limit=args.word_limit, k=args.k)
    embed = index.embed
    up("warm-up")
    results, ms = [], []
    for p in PROMPTS:
        t = time.perf_counter()
        results.append(up.upsample(p))
        ms.append(1000 * (time.perf_counter() - t))
    vecs = {normalize_prompt(p): embed([normalize_prompt(p)]) for p in PROMPTS}
    index.embed = lambda texts: vecs[texts[0]] if len(texts) == 1 and texts[0] in vecs else embed(texts)
    rules_ms = []
    for p in PROMPTS:  # again with the query vectors cached: the rules' own cost
        t = time.perf_counter()
        up.upsample(p)
        rules_ms.append(1000 * (time.perf_counter() - t))
    del index.embed  # the method again
    outs = [r.upsampled for r in results]
    vecs = index.embed(PROMPTS + outs)
    best = (vecs @ index.embeddings.T).max(dim=1).values.tolist()
    before, after = best[:len(PROMPTS)], best[len(PROMPTS):]
    n = len(PROMPTS)
    keep = sum(not missing_facts(p, o) for p, o in zip(PROMPTS, outs))
    own = sum(bool((why := check_upsampled(p, o)) and "contradicts" in why) for p, o in zip(PROMPTS, outs))
    indep = sum(independent_conflict(p, o) for p, o in zip(PROMPTS, outs))
    skipped = sum(r.skipped for r in results)
    grown = [r for r in results if not r.skipped and len(r.upsampled.split()) > len(r.prompt.split())]
    print(f"prompts: {n} ({skipped} skipped above {args.word_limit} words, {n - skipped - len(grown)} got nothing "
          f"added, {len(grown)} upsampled)")
    print(f"keep all nouns and colors: {keep}/{n} = {keep / n:.0%}")
    print(f"conflicting color/count:   {own}/{n} by the upsampler's rules, {indep}/{n} by the independent check")
    words_in = statistics.mean(len(p.split()) for p in PROMPTS)
    words_out = statistics.mean(len(o.split()) for o in outs)
    print(f"words:  {words_in:.1f} -> {words_out:.1f}"
          f"  (upsampled only: {statistics.mean(len(r.prompt.split()) for r in grown):.1f} -> "
          f"{statistics.mean(len(r.upsampled.split()) for r in grown):.1f})")
    print(f"cosine to the nearest index caption: {statistics.mean(before):.3f} -> {statistics.mean(after):.3f}"
          f"  (upsampled only: {statistics.mean(b for b, r in zip(before, results) if r in grown):.3f} -> "
          f"{statistics.mean(a for a, r in zip(after, results) if r in grown):.3f})")
    print(f"time: {statistics.mean(ms):.0f} ms per prompt (median {statistics.median(ms):.0f} ms); the rules alone "
          f"(query vector cached): {statistics.mean(rules_ms):.1f} ms")
    for r in results[:: max(1, n // args.examples)][: args.examples]:
        print(f"\n  {r.prompt}\n  -> {r.upsampled}" + (f"\n     ({r.reason})" if r.reason else ""))


if __name__ == "__main__":
    main()
