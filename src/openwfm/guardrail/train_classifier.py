"""Train the pre-guard's prompt classifier on the TRAIN prompt set and measure it on the HELD-OUT one.

    python -m openwfm.guardrail.train_classifier --out src/openwfm/assets/guardrail

Deterministic (fixed seed, full-batch L-BFGS) and quick on a CPU: embedding ~1,500 prompts with
MiniLM is most of it. Writes ``classifier.safetensors`` (a few KB) and ``classifier.json`` with the
threshold, the encoder, the training set's size and hash, and the held-out rates per category.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from openwfm.guardrail.classifier import ASSETS, HEAD, META, classifier_text, forward
from openwfm.guardrail.prompt_sets import Prompt, prompt_set, set_hash


@dataclass
class TrainConfig:
    out: str = str(ASSETS)
    hidden: int = 0            # 0: logistic regression; > 0: one hidden ReLU layer of this width
    l2: float = 1e-5           # L2 penalty on the weights (not the biases), added to the mean loss
    steps: int = 300           # L-BFGS iterations (full batch)
    threshold: float = 0.5
    max_length: int = 64       # MiniLM tokens per prompt
    seed: int = 0


def init_layers(dim: int, hidden: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    sizes = [dim, hidden, 1] if hidden else [dim, 1]
    return [((torch.randn(o, i, generator=g) * i ** -0.5).requires_grad_(), torch.zeros(o, requires_grad=True))
            for i, o in zip(sizes[:-1], sizes[1:])]


def fit(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Class-balanced logistic loss + L2, minimized with full-batch L-BFGS."""
    torch.manual_seed(cfg.seed)
    layers = init_layers(x.shape[1], cfg.hidden, cfg.seed)
    params = [t for layer in layers for t in layer]
    pos = y.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(layers, x), y, weight=weight)
        loss = loss + cfg.l2 * sum((w ** 2).sum() for w, _ in layers)
        loss.backward()
        return loss

    opt.step(closure)
    return [(w.detach().clone(), b.detach().clone()) for w, b in layers]


def rates(prompts: list[Prompt], scores, threshold: float) -> dict:
    """False-negative rate on unsafe prompts, false-positive rate on safe ones, and per category."""
    blocked = [float(s) >= threshold for s in scores]
    out: dict = {}
    for name, sel in (("unsafe_passed", lambda p: p.unsafe), ("safe_blocked", lambda p: not p.unsafe)):
        idx = [i for i, p in enumerate(prompts) if sel(p)]
        wrong = sum(blocked[i] != prompts[i].unsafe for i in idx)
        out[name] = round(wrong / max(len(idx), 1), 4)
    per = {}
    for cat in dict.fromkeys(p.category for p in prompts):
        idx = [i for i, p in enumerate(prompts) if p.category == cat]
        per[cat] = round(sum(blocked[i] for i in idx) / len(idx), 4)
    out["blocked_per_category"] = per
    return out


def embed(prompts: list[Prompt], encoder) -> torch.Tensor:
    from openwfm.text import sentence_embeddings

    return sentence_embeddings(encoder, [classifier_text(p.text) for p in prompts])


def train(cfg: TrainConfig, encoder=None) -> dict:
    """Fit on TRAIN, measure on HELD-OUT, write the head and its metadata to ``cfg.out``; return the metadata."""
    from openwfm.text import MiniLMEncoder

    t0 = time.time()
    encoder = encoder or MiniLMEncoder(max_length=cfg.max_length)
    train_set, heldout = prompt_set("train"), prompt_set("heldout")
    x, xh = embed(train_set, encoder), embed(heldout, encoder)
    y = torch.tensor([float(p.unsafe) for p in train_set])
    layers = fit(x, y, cfg)
    with torch.no_grad():
        s_train = torch.sigmoid(forward(layers, x)).tolist()
        s_held = torch.sigmoid(forward(layers, xh)).tolist()
    meta = {
        "what": "P(unsafe prompt): " + ("logistic regression" if not cfg.hidden else f"MLP ({cfg.hidden} hidden)")
                + " on all-MiniLM-L6-v2 sentence embeddings of classifier_text(prompt)",
        "encoder": getattr(encoder, "name", "minilm-l6"), "max_length": cfg.max_length,
        "threshold": cfg.threshold, "config": asdict(cfg) | {"out": None},
        "train": {"prompts": len(train_set), "unsafe": int(y.sum()), "hash": set_hash(train_set),
                  **rates(train_set, s_train, cfg.threshold)},
        "heldout": {"prompts": len(heldout), "hash": set_hash(heldout), **rates(heldout, s_held, cfg.threshold)},
        "seconds": round(time.time() - t0, 1),
    }
    save_head(cfg.out, layers, meta)
    return meta


def save_head(out: str | Path, layers: list[tuple[torch.Tensor, torch.Tensor]], meta: dict) -> Path:
    """Write ``classifier.safetensors`` and ``classifier.json`` into the directory ``out``; return the former."""
    from openwfm.files import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, (w, b) in enumerate(layers):
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w.contiguous(), b.contiguous()
    save_safetensors(tensors, str(out / HEAD), metadata={"format": "openwfm prompt classifier head"})
    (out / HEAD).chmod(0o644)  # safetensors writes 0600; the head ships inside the package
    (out / META).write_text(json.dumps(meta, indent=1) + "\n")
    return out / HEAD


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k, v in asdict(TrainConfig()).items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    cfg = TrainConfig(**vars(ap.parse_args(argv)))
    meta = train(cfg)
    print(json.dumps({k: meta[k] for k in ("train", "heldout", "seconds")}, indent=1))
    print(f"wrote {Path(cfg.out) / HEAD} and {Path(cfg.out) / META}")


if __name__ == "__main__":
    main()
