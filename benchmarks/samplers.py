"""Sampler quality vs steps on a trained world model: how close each sampler gets to the ODE's solution.

    python benchmarks/samplers.py -c runs/dit [--prompts 4] [--reference-steps 200]

For each prompt and seed the same initial noise goes through every sampler; the reference is Heun with
``--reference-steps`` steps (the ODE solved to high accuracy). Quality is PSNR of the decoded video against
the decoded reference (higher = closer), averaged; guidance as in the released Cosmos code (g = 7).
Target (issue): 2AB at <= 15 steps within 0.5 dB of Euler at 35 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from openwfm.diffusion.guidance import sample_latents
from openwfm.evaluate.metrics import psnr
from openwfm.pipelines.world import GenerateConfig, WorldPipeline

PROMPTS = ["a red cube falls onto a table and bounces", "a robot arm pushes a blue box to the left",
           "the camera orbits around a green sphere", "two balls drop onto the floor"]
GRID = [("euler", 35), ("euler", 15), ("heun", 8), ("heun", 18), ("2ab", 10), ("2ab", 15), ("2ab", 35)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--checkpoint", required=True)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--reference-steps", type=int, default=200)
    ap.add_argument("--guidance", type=float, default=7.0)
    args = ap.parse_args()
    pipe = WorldPipeline.from_run(args.checkpoint)
    g = GenerateConfig()
    shape = pipe._shape(g, pipe.clip_frames(g))
    scores: dict[tuple[str, int], list[float]] = {k: [] for k in GRID}
    t0 = time.perf_counter()
    for i, prompt in enumerate(PROMPTS[: args.prompts]):
        _, text, uncond = pipe.encode_prompt(prompt, "")

        def run(sampler: str, steps: int) -> torch.Tensor:
            z = sample_latents(pipe.model, text, shape, uncond=uncond, guidance=args.guidance, sampler=sampler,
                               steps=steps, fps=g.fps, generator=torch.Generator().manual_seed(i))
            return pipe.codec.decode(z).clamp(-1, 1)

        ref = run("heun", args.reference_steps)
        for key in GRID:
            scores[key].append(float(psnr(ref, run(*key))[0]))
    print(f"{args.prompts} prompts, reference Heun x {args.reference_steps}, guidance {args.guidance} "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print("| sampler | steps | network calls | PSNR vs reference dB |\n|---|---|---|---|")
    for (name, steps), v in scores.items():
        calls = 2 * steps - 1 if name == "heun" else steps
        print(f"| {name} | {steps} | {calls} | {sum(v) / len(v):.2f} |")
    euler35 = sum(scores[("euler", 35)]) / args.prompts
    ab15 = sum(scores[("2ab", 15)]) / args.prompts
    print(f"\n2AB x 15 minus Euler x 35: {ab15 - euler35:+.2f} dB (target >= -0.5)")


if __name__ == "__main__":
    main()
