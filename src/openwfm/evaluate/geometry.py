"""3D consistency of a video under known cameras: Sampson error of matched features (Cosmos paper
sec. 7.1 measures 3D consistency this way; camera control is judged by it in sec. 6.1).

For frames i and j with cameras (K_i, c2w_i) and (K_j, c2w_j) the fundamental matrix is
F = K_j^-T [t]_x R K_i^-1, where (R, t) maps camera-i coordinates to camera-j coordinates. A pixel x_i
and its match x_j satisfy x_j^T F x_i = 0 when the scene is rigid and the cameras are right; the Sampson
distance (x_j^T F x_i)^2 / ((F x_i)_1^2 + (F x_i)_2^2 + (F^T x_j)_1^2 + (F^T x_j)_2^2) is the squared
first-order pixel distance to that constraint. ``sampson_error`` matches SIFT features (OpenCV) between
the first frame and later ones (ratio test) and returns the median of sqrt(Sampson) in pixels: low for a
video that agrees with the poses, high for one that does not (or for the wrong poses).
"""

from __future__ import annotations

import cv2
import numpy as np


def fundamental(K_i: np.ndarray, c2w_i: np.ndarray, K_j: np.ndarray, c2w_j: np.ndarray) -> np.ndarray:
    """F with x_j^T F x_i = 0 for pixels of the same 3D point (pixel centers at integer coordinates)."""
    rel = np.linalg.inv(c2w_j) @ c2w_i  # camera i -> camera j
    R, t = rel[:3, :3], rel[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(K_j).T @ tx @ R @ np.linalg.inv(K_i)


def sampson_distances(F: np.ndarray, xi: np.ndarray, xj: np.ndarray) -> np.ndarray:
    """sqrt of the Sampson distance (pixels) of each match (N, 2) <-> (N, 2)."""
    hi = np.concatenate([xi, np.ones((len(xi), 1))], 1)
    hj = np.concatenate([xj, np.ones((len(xj), 1))], 1)
    Fx, Ftx = hi @ F.T, hj @ F
    num = np.einsum("ni,ni->n", hj, Fx) ** 2
    den = Fx[:, 0] ** 2 + Fx[:, 1] ** 2 + Ftx[:, 0] ** 2 + Ftx[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def matches(a: np.ndarray, b: np.ndarray, ratio: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches (Lowe's ratio test) between two uint8 RGB frames: (N, 2) pixel positions in each."""
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kb, db = sift.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < ratio * n.distance]
    return (np.array([ka[m.queryIdx].pt for m in good]).reshape(-1, 2),
            np.array([kb[m.trainIdx].pt for m in good]).reshape(-1, 2))


def sampson_error(frames: np.ndarray, K: np.ndarray, c2w: np.ndarray, stride: int = 4,
                  min_matches: int = 8) -> tuple[float, int]:
    """(median sqrt-Sampson distance in pixels, matches used) of frames (T, H, W, 3) against per-frame
    intrinsics K (T, 3, 3) and poses c2w (T, 4, 4): frame 0 against every ``stride``-th later frame.
    NaN when fewer than ``min_matches`` matches were found in all."""
    errs = []
    for j in range(stride, len(frames), stride):
        xi, xj = matches(frames[0], frames[j])
        if len(xi):
            errs.append(sampson_distances(fundamental(K[0], c2w[0], K[j], c2w[j]), xi, xj))
    e = np.concatenate(errs) if errs else np.zeros(0)
    return (float(np.median(e)) if len(e) >= min_matches else float("nan")), len(e)
