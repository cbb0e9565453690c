"""Physics alignment (Cosmos paper sec. 7.2): condition a world model on the first 1 or 9 frames of
scripted physics rollouts with known ground truth (``wfm sim``, held-out seeds) and compare what it
predicts for the rest with what the simulator rendered: PSNR, SSIM, perceptual distance and the IoU of
object masks (``evaluate/masks.py``: masks of predicted frames by colour) against the simulator's masks.

Every rollout is fitted to the model's square resolution (cover, then center-crop; frames by area
averaging, masks by nearest neighbour) and cut to its clip length. A predictor is any callable
``predict(frames_in uint8 (k, H, W, 3), n_out, meta) -> uint8 (n_out, H, W, 3)``. Two baselines share the
table: ``copy_last`` and ``linear_extrapolation``; ``truth`` (the true future frames) is the reference
row: PSNR 100, SSIM 1, and the mask IoU that the colour labelling reaches on true frames (its ceiling).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from openwfm.evaluate.masks import ColorMaskConfig, mask_iou, object_masks
from openwfm.evaluate.metrics import (EvalError, gradient_magnitude, masked_psnr, moving_region, perceptual_distance,
                                      psnr, ssim)

Predictor = Callable[[np.ndarray, int, dict], np.ndarray]
METRICS = ("psnr", "psnr_moving", "psnr_first", "ssim", "perceptual", "mask_iou", "mask_iou_moving", "grad_ratio")


@dataclass
class PhysicsConfig:
    num_input_frames: int = 1  # Cosmos: 1 or 9
    num_frames: int = 17  # clip length: conditioning + predicted frames
    resolution: int = 64  # square side the rollouts are fitted to
    include_truth: bool = True  # add the "truth" reference row
    moving_threshold: int = 10  # psnr_moving: pixels departing from the last input frame by more (of 255)
    masks: ColorMaskConfig = field(default_factory=ColorMaskConfig)

    def validate(self) -> None:
        if self.num_input_frames < 1:
            raise EvalError(f"num_input_frames must be >= 1, got {self.num_input_frames}")
        if self.num_frames - self.num_input_frames < 8:
            raise EvalError(f"{self.num_frames} frames with {self.num_input_frames} input frames leave fewer than "
                            "8 to predict: raise num_frames")
        if self.resolution < 16:
            raise EvalError(f"resolution must be >= 16, got {self.resolution}")
        self.masks.validate()


# ---------------------------------------------------------------------------------------------- rollouts
@dataclass
class Rollout:
    """One simulator rollout, fitted to the evaluation size and clip length."""

    path: Path  # its JSON
    frames: np.ndarray  # uint8 (T, S, S, 3)
    masks: np.ndarray | None  # uint8 (T, S, S)
    meta: dict

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.stem)

    @property
    def object_ids(self) -> list[int]:
        return [int(o["mask_id"]) for o in self.meta.get("objects", [])]


def find_rollouts(paths: Iterable[str | os.PathLike], max_per_source: int = 0) -> list[Path]:
    """Rollout JSON files (``wfm sim`` output) from files and directories; at most ``max_per_source`` from
    each directory (0: all)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.glob("*.json") if not f.name.startswith("."))
            files = [f for f in files if _is_rollout(f)]
            if not files:
                raise EvalError(f"{p}: no simulator rollouts (NAME.json + NAME.mp4 written by `wfm sim`)")
            found += files[:max_per_source] if max_per_source > 0 else files
        elif p.is_file():
            if not _is_rollout(p):
                raise EvalError(f"{p}: not a simulator rollout description (expected the JSON written by `wfm sim`)")
            found.append(p)
        else:
            raise EvalError(f"{p}: no such file or directory")
    return found


def _is_rollout(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "video" in meta and "scenario" in meta


def fit_square(frames: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize (T, H, W[, 3]) to cover ``size`` x ``size`` keeping the aspect ratio, then center-crop;
    area averaging when shrinking (bicubic when growing), nearest neighbour for masks."""
    h, w = frames.shape[1:3]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])
    top, left = (nh - size) // 2, (nw - size) // 2
    return frames[:, top:top + size, left:left + size]


def load_rollout(json_path: str | os.PathLike, resolution: int = 0, num_frames: int = 0,
                 need_masks: bool = True) -> Rollout:
    """A rollout fitted to ``resolution`` (0: native) and cut to ``num_frames`` (0: all)."""
    from openwfm.video.io import read_video

    path = Path(json_path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EvalError(f"{path}: not a readable rollout description ({e})") from e
    video = path.parent / meta.get("video", f"{path.stem}.mp4")
    if not video.is_file():
        raise EvalError(f"{path}: its video {video} is missing")
    frames = read_video(video, 0, num_frames or None).frames
    if num_frames and len(frames) < num_frames:
        raise EvalError(f"{video}: {len(frames)} frames, the evaluation needs {num_frames}")
    masks = None
    if need_masks:
        mpath = path.parent / meta.get("masks", f"{path.stem}.masks.npz")
        try:
            with np.load(mpath) as z:
                masks = z["masks"][:len(frames)]
        except (OSError, KeyError, ValueError) as e:
            raise EvalError(f"{path}: cannot read its masks {mpath} ({e}); physics evaluation needs the "
                            "simulator's NAME.masks.npz") from e
        if masks.shape != frames.shape[:3]:
            raise EvalError(f"{mpath}: masks {masks.shape} do not match the video {frames.shape[:3]}")
        if not meta.get("objects"):
            raise EvalError(f"{path}: no objects listed (meta.objects with mask_id)")
    if resolution:
        frames = fit_square(frames, resolution)
        masks = fit_square(masks, resolution, nearest=True) if masks is not None else None
    return Rollout(path, frames, masks, meta)


# ---------------------------------------------------------------------------------------------- predictors
def copy_last(frames_in: np.ndarray, n_out: int, meta: dict) -> np.ndarray:
    """Baseline: nothing moves — the last conditioning frame, repeated."""
    return np.repeat(frames_in[-1:], n_out, axis=0)


def linear_extrapolation(frames_in: np.ndarray, n_out: int, meta: dict) -> np.ndarray:
    """Baseline: every pixel continues its last change, x_{k-1} + t (x_{k-1} - x_{k-2}), clipped to 0..255;
    with one input frame it is :func:`copy_last`."""
    if len(frames_in) < 2:
        return copy_last(frames_in, n_out, meta)
    last, prev = frames_in[-1].astype(np.float32), frames_in[-2].astype(np.float32)
    t = np.arange(1, n_out + 1, dtype=np.float32)[:, None, None, None]
    return np.clip(np.rint(last + t * (last - prev)), 0, 255).astype(np.uint8)


BASELINES: dict[str, Predictor] = {"copy_last": copy_last, "linear_extrap": linear_extrapolation}


@dataclass
class WorldModelPredictor:
    """A Video2World model as a predictor (``WorldPipeline.video2world``). ``prompt``: "caption" uses the
    rollout's caption; anything else is the text itself ("" for none). Post-trained models get their
    extra input from the rollout: camera rays from ``meta.camera``, robot actions from ``meta.actions``
    (an action model's blind control variant gets zeros when a rollout has no actions)."""

    pipe: object  # openwfm.pipelines.world.WorldPipeline
    generate: object  # openwfm.pipelines.world.GenerateConfig
    prompt: str = "caption"
    name: str = "world_model"

    @classmethod
    def from_run(cls, run: str | os.PathLike, device: str = "cpu", prompt: str = "caption", **generate):
        """Load a run or checkpoint; ``generate``: GenerateConfig fields (steps, guidance, seed, ...)."""
        from openwfm.pipelines.world import WorldPipeline

        try:
            pipe = WorldPipeline.from_run(run, device=device)
        except ValueError as e:
            raise EvalError(f"{run}: cannot load a world model ({e})") from e
        return cls.of(pipe, str(run), prompt, **generate)

    @classmethod
    def of(cls, pipe, source: str = "world_model", prompt: str = "caption", **generate):
        """Wrap a loaded pipeline after checking that it is a single-camera Video2World model."""
        from openwfm.pipelines.world import GenerateConfig
        from openwfm.posttrain.config import MultiviewRunConfig

        if not pipe.model.net.cfg.condition_mask:
            raise EvalError(f"{source}: not a Video2World model (trained without v2w.enabled): the evaluation "
                            "conditions on input frames")
        if isinstance(pipe.cfg, MultiviewRunConfig):
            raise EvalError(f"{source}: a multi-view model; the evaluation takes single-camera rollouts")
        return cls(pipe, GenerateConfig(**generate), prompt, Path(source).name)

    def net_inputs(self, meta: dict, size: tuple[int, int]) -> dict:
        """Camera rays / actions of one clip for a post-trained model (empty for a plain Video2World one)."""
        try:
            return self.pipe.conditions(meta, self.generate, size)
        except ValueError as e:
            raise EvalError(str(e)) from e

    def __call__(self, frames_in: np.ndarray, n_out: int, meta: dict) -> np.ndarray:
        from dataclasses import replace

        prompt = meta.get("caption", "") if self.prompt == "caption" else self.prompt
        g = replace(self.generate, num_input_frames=len(frames_in))
        kw = self.net_inputs(meta, frames_in.shape[1:3])
        total = 0 if kw else len(frames_in) + n_out  # chained clips cannot take per-clip conditions
        video = self.pipe.video2world(frames_in, prompt, g, total_frames=total, net_kw=kw or None)
        if len(video) < len(frames_in) + n_out:
            raise EvalError(f"the model returned {len(video) - len(frames_in)} frames, {n_out} are evaluated: "
                            "use its clip length (num_frames)")
        return video[len(frames_in):len(frames_in) + n_out]


# ---------------------------------------------------------------------------------------------- evaluation
def clip_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    """PSNR (dB), SSIM and perceptual distance of predicted vs true uint8 frames (T, H, W, 3)."""
    return {"psnr": float(psnr(pred, true)[0]), "ssim": float(ssim(pred, true)[0]),
            "perceptual": float(perceptual_distance(pred, true)[0])}


def run_predictor(predict: Predictor, r: Rollout, k: int, n_out: int, name: str) -> np.ndarray:
    """``predict`` on the first ``k`` frames of a rollout; its errors name the rollout's file."""
    try:
        return predict(r.frames[:k].copy(), n_out, r.meta)
    except (EvalError, ValueError) as e:
        raise EvalError(f"{r.path}: predictor {name} failed: {e}") from e


def _check(pred: np.ndarray, shape: tuple, who: str) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.dtype != np.uint8 or pred.shape != shape:
        raise EvalError(f"predictor {who} returned {pred.dtype} {pred.shape}, expected uint8 {shape}")
    return pred


def evaluate_physics(rollouts: Iterable[str | os.PathLike], predictors: dict[str, Predictor] | Predictor,
                     cfg: PhysicsConfig | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Per (predictor, rollout) metrics on the predicted frames and their means per predictor and scenario.
    ``rollouts``: rollout JSON files or directories of them; ``predictors``: name -> predictor (a single
    callable is named "model")."""
    cfg = cfg or PhysicsConfig()
    cfg.validate()
    preds = dict(predictors) if isinstance(predictors, dict) else {"model": predictors}
    k, n_out = cfg.num_input_frames, cfg.num_frames - cfg.num_input_frames
    rows = []
    for path in find_rollouts(rollouts):
        r = load_rollout(path, cfg.resolution, cfg.num_frames)
        true_out = r.frames[k:]
        named = ({"truth": None} if cfg.include_truth else {}) | preds
        for name, predict in named.items():
            t0 = time.perf_counter()
            pred = true_out if predict is None else _check(run_predictor(predict, r, k, n_out, name),
                                                           true_out.shape, name)
            dt = time.perf_counter() - t0
            labels = object_masks(r.frames, r.masks, k, pred, r.object_ids, cfg.masks)
            moving = moving_region(true_out, r.frames[k - 1], cfg.moving_threshold)
            rows.append({"predictor": name, "rollout": r.name, "scenario": r.meta.get("scenario", "?"),
                         **clip_metrics(pred, true_out), "psnr_moving": masked_psnr(pred, true_out, moving),
                         "psnr_first": float(psnr(pred[:1], true_out[:1])[0]),
                         "moving_fraction": float(moving.mean()),
                         "grad_ratio": gradient_magnitude(pred) / max(gradient_magnitude(true_out), 1e-9),
                         "mask_iou": mask_iou(labels, r.masks[k:], r.object_ids),
                         "mask_iou_moving": mask_iou(labels, r.masks[k:], r.object_ids, moved_from=r.masks[k - 1]),
                         "seconds": dt})
        if progress is not None:
            progress(r.name)
    return {"title": "Physics alignment (Cosmos sec. 7.2)", "config": asdict(cfg),
            "summary": summarize(rows, METRICS), "rows": rows,
            "notes": [f"{k} input frame(s), {n_out} predicted, {cfg.resolution}x{cfg.resolution}; metrics on the "
                      "predicted frames only",
                      f"psnr_moving: PSNR over the pixels whose true value departs from the last input frame "
                      f"by more than {cfg.moving_threshold}/255 (NaN where nothing moves; copy-last is wrong "
                      "exactly there); grad_ratio: mean gradient magnitude vs the truth's (<1 blurred, >1 noisy); "
                      "psnr_first: the first predicted frame alone (a jump from the input shows here)",
                      "mask_iou: colour-model masks of the predicted frames vs the simulator's masks (the truth "
                      "row is the method's ceiling); mask_iou_moving: objects that moved since the last input frame"]}


def summarize(rows: list[dict], keys: tuple[str, ...], by: tuple[str, str] = ("predictor", "scenario")) -> list[dict]:
    """Means of ``keys`` per (predictor, scenario), and per predictor over "all" scenarios when there are
    several; NaNs are skipped. Predictors keep their order of appearance."""
    first, second = by
    order = list(dict.fromkeys(r[first] for r in rows))
    subs = list(dict.fromkeys(r[second] for r in rows))
    out = []
    for a in order:
        for b in subs + (["all"] if len(subs) > 1 else []):
            group = [r for r in rows if r[first] == a and (b == "all" or r[second] == b)]
            if not group:
                continue
            means = {}
            for m in keys:
                vals = np.array([g[m] for g in group], dtype=float)
                means[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            out.append({first: a, second: b, "n": len(group), **means})
    return out
