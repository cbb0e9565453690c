"""Train the learned "looks" score (the recipe of the shipped ``assets/aesthetic``; docs/curate.md):

    python -m openwfm.curate.train_aesthetic --train A.avi B.mp4 ... [--photos P.jpg ...] --val C.mp4 ... \
        [--check D.mp4 E.jpg ...] --out DIR

Clips of 8-16 frames from each video, and slow pans over still photos (more clean content than a few
videos hold), at a short side of at most 256 px (the curator's transcode size; strengths are set there).
Each clip gives 2 clean variants (flip, crop, mild JPEG / brightness) and degraded copies (``KINDS``) at
random strengths. Features: ``dedup.clip_embedding``; model: centring + one scale, L2-penalized logistic
regression, classes balanced. Leave-one-video-out logits over the training videos give a cross-validated
score and a Platt calibration (a * logit + b) folded into the shipped layer. Held-out videos (every kind
on every clip): AUC, accuracy and drop rates per kind. ``--check`` files are only scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from openwfm.curate.aesthetic import AestheticConfig, AestheticHead, save_head
from openwfm.curate.dedup import clip_embedding

KINDS = ("blur", "motion_blur", "noise", "jpeg", "pixelate", "low_contrast", "underexposed", "overexposed",
         "colour_cast", "combo")


def _jpeg(f: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _small(f: np.ndarray, short: float) -> np.ndarray:
    k = short / min(f.shape[:2])
    return cv2.resize(f, (round(f.shape[1] * k), round(f.shape[0] * k)), interpolation=cv2.INTER_AREA) if k < 1 else f


def degrade(frames: np.ndarray, kind: str, t: float, rng: np.random.Generator) -> np.ndarray:
    """One degradation of uint8 (T, H, W, 3) frames at strength ``t`` in [0, 1] (0: mildest, still visible)."""
    x, (h, w) = frames.astype(np.float32), frames.shape[1:3]
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(f, (0, 0), 1.5 + 3.5 * t) for f in frames])
    if kind == "motion_blur":  # a line kernel of 7-27 px at a random angle
        n, a = int(7 + 20 * t) | 1, rng.uniform(0, np.pi)
        k, c, d = np.zeros((n, n), np.float32), np.cos(a) * (n // 2), np.sin(a) * (n // 2)
        cv2.line(k, (round(n // 2 - c), round(n // 2 - d)), (round(n // 2 + c), round(n // 2 + d)), 1.0, 1)
        return np.stack([cv2.filter2D(f, -1, k / k.sum()) for f in frames])
    if kind == "jpeg":
        return np.stack([_jpeg(f, round(15 - 11 * t)) for f in frames])
    if kind == "pixelate":  # blocky or smeared
        mode, s = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR, 3 + 5 * t
        return np.stack([cv2.resize(_small(f, min(h, w) / s), (w, h), interpolation=mode) for f in frames])
    if kind == "combo":
        for k in rng.choice(len(KINDS) - 1, 2, replace=False):
            frames = degrade(frames, KINDS[k], 0.6 * rng.random(), rng)
        return frames
    if kind == "noise":  # colour or luminance grain
        x = x + rng.normal(0, 15 + 35 * t, x.shape if rng.random() < 0.5 else x.shape[:3] + (1,))
    elif kind == "low_contrast":  # flat, or hazy / washed out
        level = x.mean() if rng.random() < 0.5 else rng.uniform(170, 235)
        x = level + (0.5 - 0.3 * t) * (x - level)
    elif kind == "underexposed":
        x = x * (0.35 - 0.25 * t)
    elif kind == "overexposed":
        x = x * (2.0 + 2.0 * t)
    elif kind == "colour_cast":  # one channel up, another down
        gains, (up, down) = np.ones(3), rng.choice(3, 2, replace=False)
        gains[up], gains[down] = 1.4 + 0.4 * t, 0.7 - 0.3 * t
        x = x * gains
    return np.clip(x, 0, 255).round().astype(np.uint8)


def clean_variant(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmless changes: flip, crop to 80-100 %, mild JPEG (q 70-95) or brightness / contrast +-10 %."""
    h, w = frames.shape[1:3]
    s = rng.uniform(0.8, 1.0)
    ch, cw = round(h * s), round(w * s)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = np.ascontiguousarray(frames[:, y:y + ch, x:x + cw][:, :, ::rng.choice([-1, 1])])
    r = rng.random()
    if r < 0.35:
        out = np.stack([_jpeg(f, rng.integers(70, 96)) for f in out])
    elif r < 0.7:
        m = out.mean()
        out = np.clip(m + rng.uniform(0.9, 1.1) * (out * rng.uniform(0.9, 1.1) - m), 0, 255).astype(np.uint8)
    return out


def clips_of(path: str, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` clips as the 4 frames ``clip_embedding`` samples, short side <= 256: of a video, clips of
    8-16 frames spread evenly; of a photo, slow pans of a window of 80 % of it."""
    if Path(path).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
        im = _small(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), 256 / 0.8)
        (h, w), out = im.shape[:2], []
        ch, cw = round(h * 0.8), round(w * 0.8)
        for _ in range(count):
            ys = np.linspace(*rng.integers(0, h - ch + 1, 2), 4).round().astype(int)
            xs = np.linspace(*rng.integers(0, w - cw + 1, 2), 4).round().astype(int)
            out.append(np.stack([im[y:y + ch, x:x + cw] for y, x in zip(ys, xs)]))
        return out
    import av

    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    lengths = rng.integers(8, 17, count)
    starts = np.linspace(0, max(0, n - lengths.max()), count).round().astype(int)
    picks = [s + np.linspace(0, min(L, n) - 1, 4).round().astype(int) for s, L in zip(starts, lengths)]
    want = set(np.concatenate(picks).tolist())
    with av.open(str(path)) as c:
        got = {i: _small(fr.to_ndarray(format="rgb24"), 256) for i, fr in enumerate(c.decode(video=0)) if i in want}
    return [np.stack([got[i] for i in p]) for p in picks]


def examples(clips: list[np.ndarray], per_clip: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and kinds ("clean" or a degradation): 2 clean variants and ``per_clip`` degraded copies
    of each clip, the kinds taken in turn."""
    xs, kinds = [], []
    for i, clip in enumerate(clips):
        for kind in ["clean"] * 2 + [KINDS[(i * per_clip + j) % len(KINDS)] for j in range(per_clip)]:
            v = clean_variant(clip, rng)
            xs.append(clip_embedding(v if kind == "clean" else degrade(v, kind, rng.random(), rng)))
            kinds.append(kind)
    return np.stack(xs), np.array(kinds)


def logistic(x: torch.Tensor, kinds: np.ndarray, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias minimizing the class-balanced logistic loss (clean = 1) + l2 / 2 |w|^2 (L-BFGS)."""
    y = torch.from_numpy((kinds == "clean").astype(np.float32))
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y, pos_weight=(1 - y).sum() / y.sum())
        loss = loss + 0.5 * l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit(x: np.ndarray, kinds: np.ndarray, l2: float) -> AestheticHead:
    """The head: per-feature centring, one scale (the mean per-feature std), logistic regression."""
    head = AestheticHead(x.shape[1])
    head.mean.copy_(torch.from_numpy(x.mean(0)))
    head.scale.fill_(float(x.std(0).mean()))
    w, b = logistic((torch.from_numpy(x) - head.mean) / head.scale, kinds, l2)
    head.linear.weight.data.copy_(w[None])
    head.linear.bias.data.fill_(float(b))
    return head


def logits(head: AestheticHead, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x)).numpy()


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def report(p: np.ndarray, kinds: np.ndarray, threshold: float) -> dict:
    """AUC, accuracy at 0.5, clean kept and degraded dropped at ``threshold``, overall and per kind."""
    c, d = p[kinds == "clean"], p[kinds != "clean"]
    return {"clips": int(len(p)), "auc": auc(c, d), "accuracy": float(((p >= 0.5) == (kinds == "clean")).mean()),
            "clean_kept": float((c >= threshold).mean()), "degraded_dropped": float((d < threshold).mean()),
            "per_kind": {k: {"auc": round(auc(c, p[kinds == k]), 3),
                             "dropped": round(float((p[kinds == k] < threshold).mean()), 3)} for k in KINDS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", nargs="+", required=True, help="clean videos (one cross-validation fold each)")
    ap.add_argument("--photos", nargs="*", default=[], help="clean still photos (always in training)")
    ap.add_argument("--val", nargs="+", required=True, help="held-out clean videos")
    ap.add_argument("--check", nargs="*", default=[], help="videos or photos only scored")
    ap.add_argument("--clips", type=int, default=24, help="clips per training video")
    ap.add_argument("--photo-clips", type=int, default=3)
    ap.add_argument("--val-clips", type=int, default=20)
    ap.add_argument("--kinds-per-clip", type=int, default=5, help="degraded copies per training clip")
    ap.add_argument("--l2", type=float, default=3.0, help="weight penalty (chosen by leave-one-video-out AUC)")
    ap.add_argument("--threshold", type=float, default=AestheticConfig.min_aesthetic, help="for the drop rates")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, vrng = np.random.default_rng(args.seed), np.random.default_rng(args.seed + 1000)
    folds = [examples(clips_of(p, args.clips, rng), args.kinds_per_clip, rng) for p in args.train]
    photos = [examples(clips_of(p, args.photo_clips, rng), args.kinds_per_clip, rng) for p in args.photos]
    val = [examples(clips_of(p, args.val_clips, vrng), len(KINDS), vrng) for p in args.val]
    xv, kv = map(np.concatenate, zip(*val))
    oof = np.concatenate([logits(fit(*map(np.concatenate, zip(*(folds[:i] + folds[i + 1:] + photos))), args.l2), xf)
                          for i, (xf, _) in enumerate(folds)])  # leave-one-video-out logits
    koof = np.concatenate([kf for _, kf in folds])
    wa, wb = logistic(torch.from_numpy(oof)[:, None], koof, 0.0)  # Platt calibration
    a, b = float(wa[0]), float(wb)
    x, k = map(np.concatenate, zip(*(folds + photos)))
    head = fit(x, k, args.l2)
    with torch.no_grad():  # fold the calibration in; evaluate what ships (float16 vectors)
        head.linear.weight.copy_((a * head.linear.weight).half().float())
        head.linear.bias.copy_(a * head.linear.bias + b)
        head.mean.copy_(head.mean.half().float())
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    cv, held = report(sig(a * oof + b), koof, args.threshold), report(sig(logits(head, xv)), kv, args.threshold)
    checks = {}
    for p in args.check:
        e = np.stack([clip_embedding(c) for c in clips_of(p, 8, vrng)])
        checks[Path(p).name] = round(float(sig(logits(head, e)).mean()), 3)
    info = {"what": "P(clean footage): logistic regression on dedup.clip_embedding (EfficientNet-Lite0, 4 frames), "
                    "clean clips against degraded copies; a degradation detector, not a human-preference model",
            "standardization": "(x - mean) / scale: per-feature mean, one scale (the mean per-feature std)",
            "calibration": {"a": a, "b": b, "how": "Platt on leave-one-video-out logits, folded into linear"},
            "kinds": list(KINDS), "train_videos": [Path(p).name for p in args.train],
            "photos": [Path(p).name for p in args.photos], "val_videos": [Path(p).name for p in args.val],
            "train_clips": int(len(k)), "l2": args.l2, "seed": args.seed, "threshold": args.threshold,
            "cross_validation": cv, "validation": held, "checks_mean_score": checks}
    save_head(head, args.out, info)
    for name, r in (("leave-one-video-out", cv), ("held-out videos", held)):
        print(f"{name}: {r['clips']} clips, AUC {r['auc']:.3f}, accuracy {r['accuracy']:.3f}, at {args.threshold:g}: "
              f"clean kept {r['clean_kept']:.3f}, degraded dropped {r['degraded_dropped']:.3f}")
        for kind, v in r["per_kind"].items():
            print(f"  {kind:13s} AUC {v['auc']:.3f}  dropped {v['dropped']:.3f}")
    print("checks (mean score):", checks)


if __name__ == "__main__":
    main()
