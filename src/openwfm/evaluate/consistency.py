"""3D consistency of videos (Cosmos paper sec. 7.1: Sampson error and camera-pose estimation success),
measured the same way on real simulator frames and on generated ones.

Frames are compared in pairs (i, i + gap). For each pair:

- **correspondences**: ``klt`` (default) — Shi-Tomasi corners of frame i tracked into frame i + gap by
  pyramidal Lucas-Kanade, kept when tracking back lands within 0.5 px; or ``sift`` — SIFT with Lowe's
  ratio test (``evaluate/geometry.py``). On the 64 px simulator frames SIFT finds about 8 matches a pair,
  KLT about 30, so KLT is the default;
- **Sampson error without poses**: a fundamental matrix fitted by RANSAC on a random half of the
  correspondences, the sqrt-Sampson distances (pixels) of the other half to it, and the reverse (held
  out: with a few dozen points a fit is near zero on its own points, wobbling videos included); plus the
  RANSAC inlier share of a fit on all of them;
- **Sampson error under the true cameras** (when intrinsics and cam2world are known, as in orbit
  rollouts): ``geometry.fundamental`` from the cameras, the median sqrt-Sampson distance of all
  correspondences. For a generated video this asks whether it follows the true camera path;
- **pose recovery**: with the intrinsics, ``cv2.findEssentialMat`` (RANSAC on normalized points) +
  ``cv2.recoverPose``. *Recovered*: at least ``min_inliers`` points pass the cheirality check and the
  points moved (median displacement >= ``min_motion_px``; a frozen video gives no pose). *Success* (true
  cameras known): recovered, rotation error <= ``rot_tol_deg`` + ``rot_tol_frac`` x the true rotation
  angle, and translation direction within ``trans_tol_deg`` of the true one (skipped for a true
  translation under 1e-6).

Per video: medians over pairs (Sampson distances pooled over all pairs' correspondences; rotation and
direction errors over the recovered pairs), the share of pairs recovered / successful. Pairs with too
few correspondences count as not recovered.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import cv2
import numpy as np

from openwfm.evaluate.geometry import fundamental, matches, sampson_distances
from openwfm.evaluate.metrics import EvalError


@dataclass
class ConsistencyConfig:
    gap: int = 2  # frames between the two frames of a pair
    matcher: str = "klt"  # klt | sift
    ransac_px: float = 0.5  # RANSAC threshold for F and E, pixels
    min_matches: int = 8  # fewer: the pair has no F and no pose
    min_inliers: int = 10  # pose recovered: at least this many points pass the cheirality check
    min_motion_px: float = 0.5  # pose recovered: median displacement of the points at least this
    rot_tol_deg: float = 1.0  # success: rotation error <= rot_tol_deg + rot_tol_frac * true rotation
    rot_tol_frac: float = 0.5
    trans_tol_deg: float = 30.0  # success: angle between recovered and true translation directions

    def validate(self) -> None:
        if self.gap < 1:
            raise EvalError(f"gap must be >= 1, got {self.gap}")
        if self.matcher not in ("klt", "sift"):
            raise EvalError(f"matcher must be klt or sift, got '{self.matcher}'")


def klt_matches(a: np.ndarray, b: np.ndarray, max_corners: int = 1000,
                max_back_px: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Shi-Tomasi corners of uint8 RGB frame ``a`` tracked into ``b`` (pyramidal Lucas-Kanade), kept when the
    backward track returns within ``max_back_px``: (N, 2) pixel positions in each."""
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    p = cv2.goodFeaturesToTrack(ga, max_corners, 0.001, 2)
    if p is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    lk = {"winSize": (9, 9), "maxLevel": 3}
    q, ok_f, _ = cv2.calcOpticalFlowPyrLK(ga, gb, p, None, **lk)
    r, ok_b, _ = cv2.calcOpticalFlowPyrLK(gb, ga, q, None, **lk)
    back = np.linalg.norm((r - p).reshape(-1, 2), axis=1)
    ok = (ok_f.ravel() == 1) & (ok_b.ravel() == 1) & (back < max_back_px)
    return p.reshape(-1, 2)[ok].astype(np.float64), q.reshape(-1, 2)[ok].astype(np.float64)


def heldout_sampson(xi: np.ndarray, xj: np.ndarray, ransac_px: float, min_matches: int = 8,
                    seed: int = 0) -> np.ndarray:
    """sqrt-Sampson distances (pixels) of correspondences to a fundamental matrix fitted (RANSAC) on the
    *other* half of them, both ways: a fit on its own points is near zero with a few dozen of them."""
    idx = np.random.default_rng(seed).permutation(len(xi))
    halves = (idx[:len(idx) // 2], idx[len(idx) // 2:])
    out = []
    for fit, test in (halves, halves[::-1]):
        if len(fit) < min_matches or not len(test):
            continue
        F, _ = cv2.findFundamentalMat(xi[fit], xj[fit], cv2.FM_RANSAC, ransac_px, 0.9999)
        if F is not None and F.shape[0] >= 3:
            out.append(sampson_distances(F[:3], xi[test], xj[test]))
    return np.concatenate(out) if out else np.zeros(0)


def rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def direction_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def recover_pose(xi: np.ndarray, xj: np.ndarray, K_i: np.ndarray, K_j: np.ndarray,
                 ransac_px: float = 0.5) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(R, t, cheirality inliers) with x_j ~ R x_i + t (camera i -> camera j, OpenCV axes, |t| = 1) from
    pixel correspondences and intrinsics; None when no essential matrix is found."""
    if len(xi) < 5:
        return None
    ni = cv2.undistortPoints(xi.reshape(-1, 1, 2), K_i, None).reshape(-1, 2)
    nj = cv2.undistortPoints(xj.reshape(-1, 1, 2), K_j, None).reshape(-1, 2)
    f = (K_i[0, 0] + K_i[1, 1] + K_j[0, 0] + K_j[1, 1]) / 4
    E, mask = cv2.findEssentialMat(ni, nj, np.eye(3), cv2.RANSAC, 0.9999, ransac_px / f)
    if E is None or E.shape != (3, 3):
        return None
    n, R, t, _ = cv2.recoverPose(E, ni, nj, np.eye(3), mask=mask)
    return R, t.ravel(), int(n)


def pair_stats(a: np.ndarray, b: np.ndarray, K_a: np.ndarray | None, K_b: np.ndarray | None,
               rel_true: np.ndarray | None, cfg: ConsistencyConfig) -> dict:
    """Correspondence, Sampson and pose statistics of one frame pair. ``rel_true``: the true 4 x 4 transform
    from camera a to camera b (None: unknown)."""
    xi, xj = klt_matches(a, b) if cfg.matcher == "klt" else matches(a, b)
    out = {"matches": len(xi), "motion_px": float(np.median(np.linalg.norm(xj - xi, axis=1))) if len(xi) else np.nan,
           "sampson": np.zeros(0), "inlier_ratio": np.nan, "sampson_gt": np.zeros(0), "recovered": False,
           "success": False if rel_true is not None else None, "rot_err": np.nan, "trans_err": np.nan}
    if len(xi) < cfg.min_matches:
        return out
    F, inl = cv2.findFundamentalMat(xi, xj, cv2.FM_RANSAC, cfg.ransac_px, 0.9999)
    if F is not None and F.shape[0] >= 3:
        out["inlier_ratio"] = float(inl.mean())
    out["sampson"] = heldout_sampson(xi, xj, cfg.ransac_px, cfg.min_matches)
    if K_a is None:
        return out
    if rel_true is not None:
        F_true = fundamental(K_a, np.eye(4), K_b, np.linalg.inv(rel_true))  # camera a at the origin
        out["sampson_gt"] = sampson_distances(F_true, xi, xj)
    pose = recover_pose(xi, xj, K_a, K_b, cfg.ransac_px)
    if pose is None:
        return out
    R, t, n = pose
    out["recovered"] = n >= cfg.min_inliers and out["motion_px"] >= cfg.min_motion_px
    if rel_true is not None and out["recovered"]:
        R_true, t_true = rel_true[:3, :3], rel_true[:3, 3]
        out["rot_err"] = rotation_angle_deg(R.T @ R_true)
        out["trans_err"] = direction_angle_deg(t, t_true) if np.linalg.norm(t_true) > 1e-6 else 0.0
        tol = cfg.rot_tol_deg + cfg.rot_tol_frac * rotation_angle_deg(R_true)
        out["success"] = bool(out["rot_err"] <= tol and out["trans_err"] <= cfg.trans_tol_deg)
    return out


def video_consistency(frames: np.ndarray, K: np.ndarray | None = None, cam2world: np.ndarray | None = None,
                      cfg: ConsistencyConfig | None = None) -> dict:
    """3D-consistency statistics of uint8 frames (T, H, W, 3) with optional per-frame intrinsics (T, 3, 3)
    and true camera-to-world poses (T, 4, 4)."""
    cfg = cfg or ConsistencyConfig()
    cfg.validate()
    pairs = [(i, i + cfg.gap) for i in range(0, len(frames) - cfg.gap, cfg.gap)]
    if not pairs:
        raise EvalError(f"{len(frames)} frames make no pair {cfg.gap} frames apart")
    stats = []
    for i, j in pairs:
        rel = np.linalg.inv(cam2world[j]) @ cam2world[i] if cam2world is not None else None
        stats.append(pair_stats(frames[i], frames[j], None if K is None else K[i], None if K is None else K[j],
                                rel, cfg))

    def pooled(key: str) -> float:
        v = np.concatenate([s[key] for s in stats])
        return float(np.median(v)) if len(v) else float("nan")

    def median(key: str) -> float:
        v = np.array([s[key] for s in stats], dtype=float)
        return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")

    row = {"pairs": len(pairs), "matches": median("matches"), "motion_px": median("motion_px"),
           "sampson_px": pooled("sampson"), "inlier_ratio": median("inlier_ratio")}
    if K is not None:
        row["pose_recovered"] = float(np.mean([s["recovered"] for s in stats]))
    if cam2world is not None:
        row.update(sampson_gt_px=pooled("sampson_gt"), pose_success=float(np.mean([s["success"] for s in stats])),
                   rot_err_deg=median("rot_err"), trans_err_deg=median("trans_err"))
    return row


def rollout_cameras(meta: dict, size: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics (T, 3, 3) for frames fitted to ``size`` x ``size`` (``physics.fit_square``: cover, center
    crop) and cam2world (T, 4, 4) of a rollout."""
    cam = meta.get("camera") or {}
    if "intrinsics" not in cam or "cam2world" not in cam:
        raise EvalError(f"{name}: no camera (meta.camera.intrinsics and cam2world), which 3D consistency needs")
    K = np.array(cam["intrinsics"], dtype=np.float64)
    c2w = np.array(cam["cam2world"], dtype=np.float64)
    if size:
        H, W = int(meta["height"]), int(meta["width"])
        s = size / min(H, W)
        nh, nw = max(size, round(H * s)), max(size, round(W * s))
        sx, sy = nw / W, nh / H
        K = K.copy()
        K[:, 0, 0] *= sx
        K[:, 1, 1] *= sy
        K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5 - (nw - size) // 2
        K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5 - (nh - size) // 2
    return K, c2w


def evaluate_consistency(rollouts: Iterable[str | os.PathLike], predictors: dict | None = None,
                         num_input_frames: int = 1, num_frames: int = 17, resolution: int = 64,
                         cfg: ConsistencyConfig | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Rows for the real frames of each rollout ("real") and for each predictor's video (its input frames
    followed by its predictions), with the rollout's true cameras; means per source."""
    from openwfm.evaluate.physics import find_rollouts, load_rollout, run_predictor, summarize

    cfg = cfg or ConsistencyConfig()
    rows = []
    for path in find_rollouts(rollouts):
        r = load_rollout(path, resolution, num_frames, need_masks=False)
        K, c2w = rollout_cameras(r.meta, resolution, str(path))
        K, c2w = K[:len(r.frames)], c2w[:len(r.frames)]
        videos = {"real": (r.frames, 0.0)}
        for name, predict in (predictors or {}).items():
            t0 = time.perf_counter()
            pred = run_predictor(predict, r, num_input_frames, len(r.frames) - num_input_frames, name)
            videos[name] = (np.concatenate([r.frames[:num_input_frames], pred]), time.perf_counter() - t0)
        for name, (video, dt) in videos.items():
            rows.append({"video": name, "rollout": r.name, "scenario": r.meta.get("scenario", "?"),
                         **video_consistency(video, K, c2w, cfg), "seconds": dt})
        if progress is not None:
            progress(r.name)
    keys = ("matches", "motion_px", "sampson_px", "inlier_ratio", "sampson_gt_px", "pose_recovered",
            "pose_success", "rot_err_deg", "trans_err_deg")
    return {"title": "3D consistency (Cosmos sec. 7.1)",
            "config": {**asdict(cfg), "num_input_frames": num_input_frames, "num_frames": num_frames,
                       "resolution": resolution},
            "summary": summarize(rows, keys, by=("video", "scenario")), "rows": rows,
            "notes": [f"pairs of frames {cfg.gap} apart, {cfg.matcher} correspondences, {resolution}x{resolution}, "
                      f"{num_frames} frames; generated videos = {num_input_frames} real input frame(s) + predictions",
                      "sampson_px: to a RANSAC fundamental matrix (no poses); sampson_gt_px: to the true cameras; "
                      "pose_success: recovered and within tolerance of the true relative pose"]}
