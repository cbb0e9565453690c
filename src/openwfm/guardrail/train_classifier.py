"""Train the pre-guard's prompt classifier on the training prompts and measure it on the HELD-OUT ones.

    python -m openwfm.guardrail.train_classifier --out src/openwfm/assets/guardrail            # as shipped
    python -m openwfm.guardrail.train_classifier --out DIR --lora-rank 0 --max-length 64      # frozen MiniLM

Training prompts (``prompt_sets.training_set``): the composed TRAIN set and the whole prompts of
``assets/guardrail/prompts_train.txt``; a seeded ``--val-fraction`` of them is kept aside and reported.
First a logistic head is fitted on the frozen sentence embeddings (full-batch L-BFGS); with
``--lora-rank`` > 0 MiniLM then gets LoRA adapters on every linear layer of its encoder and trains them
with the head (class-balanced cross-entropy, AdamW, one-cycle schedule): "linear probe, then fine-tune"
(Kumar et al. 2022), which starts the fine-tuning from a sensible head. Deterministic for a given seed and
thread count; ~20 minutes on 2 CPU cores. The threshold is the equal-error point on the validation
prompts unless ``--threshold`` is given. Writes ``classifier.safetensors`` (about 2.6 MB with adapters)
and ``classifier.json`` (threshold, encoder, LoRA shape, set sizes and hashes, validation and held-out
rates per category).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from openwfm.guardrail.classifier import ASSETS, HEAD, META, adapt_encoder, classifier_text, forward
from openwfm.guardrail.prompt_sets import Prompt, prompt_set, set_hash, training_set

LORA_TARGETS = ("query", "key", "value", "dense")  # every linear layer of a BERT encoder layer


@dataclass
class TrainConfig:
    out: str = str(ASSETS)
    hidden: int = 0            # 0: logistic regression; > 0: one hidden ReLU layer of this width
    l2: float = 1e-5           # L2 penalty on the weights (not the biases), added to the mean loss
    steps: int = 300           # L-BFGS iterations (full batch)
    threshold: float = 0.0     # 0: the equal-error point on the validation prompts (equal_error_threshold)
    max_length: int = 128      # MiniLM tokens per prompt
    seed: int = 0
    lora_rank: int = 16        # 0: the head alone on the frozen encoder
    epochs: int = 6            # fine-tuning passes over the training prompts
    batch_size: int = 32
    lr: float = 3e-4           # adapters' peak learning rate (the head's is 2x)
    val_fraction: float = 0.1  # training prompts kept aside to report on


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


def equal_error_threshold(prompts: list[Prompt], scores) -> float:
    """The threshold on a 0.05 grid that makes the larger of (unsafe passed, safe blocked) smallest; of
    equal ones, the one passing fewer unsafe prompts."""
    best = None
    for t in [round(0.05 * k, 2) for k in range(1, 20)]:
        r = rates(prompts, scores, t)
        key = (max(r["unsafe_passed"], r["safe_blocked"]), r["unsafe_passed"])
        best = min(best, (key, t)) if best else (key, t)
    return best[1]


def embed(prompts: list[Prompt], encoder) -> torch.Tensor:
    from openwfm.text import sentence_embeddings

    return sentence_embeddings(encoder, [classifier_text(p.text) for p in prompts])


def pooled(encoder, texts: list[str]) -> torch.Tensor:
    """``sentence_embeddings`` with gradients, padded to the batch's longest prompt."""
    from openwfm.text import mean_pool

    batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt")
    states = encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return mean_pool(states, batch["attention_mask"])


def finetune(prompts: list[Prompt], layers: list[tuple[torch.Tensor, torch.Tensor]], encoder, cfg: TrainConfig,
             log=print) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Train LoRA adapters (added to ``encoder`` in place) and the head ``layers`` together; returns the head."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    adapt_encoder(encoder, {"rank": cfg.lora_rank, "alpha": 2.0 * cfg.lora_rank, "targets": LORA_TARGETS})
    head = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in layers]
    adapters = [p for p in encoder.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": adapters, "lr": cfg.lr},
                             {"params": [t for layer in head for t in layer], "lr": 2 * cfg.lr}], weight_decay=0.0)
    per_epoch = len(prompts) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, 2 * cfg.lr], total_steps=cfg.epochs * per_epoch,
                                                pct_start=0.1)
    texts = [classifier_text(p.text) for p in prompts]
    y = torch.tensor([float(p.unsafe) for p in prompts])
    pos = y.mean().clamp(1e-3, 1 - 1e-3)
    encoder.model.train()  # dropout on
    for epoch in range(cfg.epochs):
        order, total = torch.randperm(len(prompts), generator=g), 0.0
        for i in range(per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            yb = y[idx]
            logits = forward(head, pooled(encoder, [texts[j] for j in idx]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, yb, weight=torch.where(yb > 0.5, 0.5 / pos, 0.5 / (1 - pos)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{cfg.epochs}: mean loss {total / max(per_epoch, 1):.4f}")
    encoder.model.eval()
    return [(w.detach().clone(), b.detach().clone()) for w, b in head]


def train(cfg: TrainConfig, encoder=None) -> dict:
    """Fit on TRAIN, measure on HELD-OUT, write the head and its metadata to ``cfg.out``; return the metadata."""
    from openwfm.text import MiniLMEncoder

    t0 = time.time()
    if cfg.lora_rank and encoder is not None:
        raise ValueError("fine-tuning adapts the encoder in place: let train() load its own")
    encoder = encoder or MiniLMEncoder(max_length=cfg.max_length)
    prompts = training_set()
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    n_val = int(round(cfg.val_fraction * len(prompts)))
    val, train_set = [prompts[i] for i in order[:n_val]], [prompts[i] for i in order[n_val:]]
    heldout = prompt_set("heldout")
    y = torch.tensor([float(p.unsafe) for p in train_set])
    layers = fit(embed(train_set, encoder), y, cfg)
    if cfg.lora_rank:
        layers = finetune(train_set, layers, encoder, cfg)

    def scores(ps: list[Prompt]) -> list[float]:
        with torch.no_grad():
            return torch.sigmoid(forward(layers, embed(ps, encoder))).tolist() if ps else []

    s_val = scores(val)
    if not cfg.threshold and not val:
        raise ValueError("threshold 0 (chosen on the validation prompts) needs val_fraction > 0")
    threshold = cfg.threshold or equal_error_threshold(val, s_val)
    what = "logistic regression" if not cfg.hidden else f"MLP ({cfg.hidden} hidden)"
    what += (f" and LoRA adapters (rank {cfg.lora_rank}) fine-tuned together on" if cfg.lora_rank else " on frozen")
    meta = {
        "what": f"P(unsafe prompt): {what} all-MiniLM-L6-v2 sentence embeddings of classifier_text(prompt)",
        "encoder": getattr(encoder, "name", "minilm-l6"), "max_length": cfg.max_length,
        "threshold": threshold, "config": asdict(cfg) | {"out": None},
        **({"lora": {"rank": cfg.lora_rank, "alpha": 2.0 * cfg.lora_rank, "targets": list(LORA_TARGETS)}}
           if cfg.lora_rank else {}),
        "train": {"prompts": len(prompts), "unsafe": sum(p.unsafe for p in prompts), "hash": set_hash(prompts),
                  "fitted": len(train_set), **rates(train_set, scores(train_set), threshold)},
        "validation": {"prompts": len(val), **rates(val, s_val, threshold)},
        "heldout": {"prompts": len(heldout), "hash": set_hash(heldout),
                    **rates(heldout, scores(heldout), threshold)},
        "seconds": round(time.time() - t0, 1),
    }
    adapters = {}
    if cfg.lora_rank:
        from openwfm.posttrain.lora import lora_state_dict

        adapters = {f"encoder.{k}": v for k, v in lora_state_dict(encoder.model.encoder).items()}
    save_head(cfg.out, layers, meta, adapters)
    return meta


def save_head(out: str | Path, layers: list[tuple[torch.Tensor, torch.Tensor]], meta: dict,
              adapters: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``classifier.safetensors`` (the head's layers, and ``encoder.*`` LoRA tensors when given) and
    ``classifier.json`` into the directory ``out``; return the former."""
    from openwfm.files import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in (adapters or {}).items()}
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
    print(json.dumps({k: meta[k] for k in ("train", "validation", "heldout", "seconds")}, indent=1))
    print(f"wrote {Path(cfg.out) / HEAD} and {Path(cfg.out) / META}")


if __name__ == "__main__":
    main()
