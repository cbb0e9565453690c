"""A learned shot-boundary detector in the spirit of TransNetV2 (Soucek & Lokoc, 2020): a small 3D CNN
on 48x27 frames that scores every frame for "inside a transition", trained here on synthetic transitions
(transitions.py) built from real and simulated footage; the weights ship in the package.

Network: three blocks of dilated temporal convolutions (dilations 1, 2, 4, 8 over time, 3x3 in space, as
TransNetV2's DDCNN cells) with spatial average pooling, per-frame features, plus a colour-histogram
similarity of each frame to its neighbours (TransNetV2's frame-similarity features), then a temporal
convolution and a per-frame logit. Inference slides windows of up to ``INFER_WINDOW`` frames and keeps
the middle of each; runs of frames above the threshold become transitions (one frame: a cut). For speed on
one CPU thread (``ShotNet.for_inference``, same outputs): batch norms folded into the convolutions, each
block run as one 2D convolution with all temporal taps plus shifted sums, frames transposed so that PyTorch
picks oneDNN for every window (``MIN_WINDOW``), and the decoder skips H.264 deblocking (``stages``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openwfm.curate.transitions import Transition

WINDOW, CONTEXT = 64, 16  # training window; frames on each side of an inference window used only as context
CUT_WIDTH = 5  # frames above the threshold spanning fewer than this are one cut (dissolves and fades are longer)
# A sub-threshold peak becomes a cut when the picture changes at that frame SPIKE_RATIO times more than at any
# of the SPIKE_SPAN frames on either side (a static camera cut to a look-alike recording); calibrated values in
# config.json ("spike_low", "spike_ratio"), these are the defaults
SPIKE_LOW, SPIKE_RATIO, SPIKE_SPAN = 0.5, 3.0, 3
INFER_WINDOW = 256  # the network is convolutional in time: longer windows at inference, less overlap
# PyTorch runs a 3D convolution with its slow reference kernel instead of oneDNN (5-7x slower on one thread) when
# batch x channels x frames x height < 20480. Inference therefore runs one window per call, on frames transposed
# to (width, height) (the kernels transposed with them, ``for_inference``), and no shorter than MIN_WINDOW
# frames: 3 x 143 x 48 > 20480 for the first layer, and more for the later ones.
MIN_WINDOW = 143
WINDOWS = (MIN_WINDOW, 160, 176, 192, 208, 224, 240, INFER_WINDOW)  # few shapes: oneDNN's kernels are made per shape
WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "shotnet"


class DDCNN(nn.Module):
    """Parallel 3x3x3 convolutions with temporal dilations 1, 2, 4, 8 (c_out / 4 channels each),
    concatenated, then batch norm, ReLU and 2x2 spatial average pooling."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv3d(c_in, c_out // 4, (3, 3, 3), padding=(d, 1, 1), dilation=(d, 1, 1))
                                   for d in (1, 2, 4, 8))
        self.bn = nn.BatchNorm3d(c_out // 4 * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "taps"):
            return self._forward_taps(x)
        return F.avg_pool3d(F.relu(self.bn(torch.cat([c(x) for c in self.convs], dim=1))), (1, 2, 2))

    def _forward_taps(self, x: torch.Tensor) -> torch.Tensor:
        """The folded block (``fuse``) as one 2D convolution of every frame with all 12 temporal taps' 3x3
        kernels, then per branch the taps summed at their dilated time offsets (zero beyond the ends, as the 3D
        convolution pads), ReLU and pooling: the same sums, ~1.5x faster on one thread."""
        b, c, t, h, w = x.shape
        o = self.convs[0].out_channels
        y = F.conv2d(x.transpose(1, 2).reshape(b * t, c, h, w), self.taps, padding=1)
        y = y.contiguous().view(b, t, len(self.convs), 3, o, h, w)
        outs = []
        for i, conv in enumerate(self.convs):
            d = conv.dilation[0]
            acc = y[:, :, i, 1] + conv.bias.view(1, 1, o, 1, 1)
            acc[:, d:] += y[:, :-d, i, 0]
            acc[:, :-d] += y[:, d:, i, 2]
            outs.append(F.avg_pool3d(F.relu(acc.transpose(1, 2), inplace=True), (1, 2, 2)))
        return torch.cat(outs, dim=1)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the (eval-mode) batch norm into the convolutions: same outputs, one pass less."""
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        for k, conv in enumerate(self.convs):
            sl = slice(k * conv.out_channels, (k + 1) * conv.out_channels)
            conv.weight.mul_(scale[sl].view(-1, 1, 1, 1, 1))
            conv.bias.mul_(scale[sl]).add_(shift[sl])
        self.bn = nn.Identity()

    @torch.no_grad()
    def tap_kernels(self) -> None:
        """Gather the folded convolutions' 3x3 kernels, branch by branch and tap by tap, for ``_forward_taps``."""
        self.register_buffer("taps", torch.cat([c.weight[:, :, k] for c in self.convs for k in range(3)]),
                             persistent=False)


class ShotNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), hist_bins: int = 8):
        super().__init__()
        self.transposed = False  # frames (and kernels) transposed to (W, H): see MIN_WINDOW, for_inference
        blocks, c = [], 3
        for w in widths:
            blocks.append(DDCNN(c, w))
            c = blocks[-1].bn.num_features
        self.blocks = nn.ModuleList(blocks)
        self.hist_bins = hist_bins
        feat = c * 3 * 6 + 5  # pooled 27x48 -> 3x6 after three 2x poolings; 5 similarity features
        self.frame_fc = nn.Linear(feat, 128)
        self.temporal = nn.Conv1d(128, 64, 5, padding=2)
        self.head = nn.Linear(64, 1)

    def similarity(self, frames: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 5): cosine similarity of each frame's RGB histogram to frames t-2, t-1, t+1, t+2, and the
        mean absolute difference to frame t-1, of uint8 ``frames`` (B, T, H, W, 3) and the same frames ``x``
        as floats in [0, 1]. Bins of uint8 levels: floor(level x bins / 256), for 8 bins the bins of the
        [0, 1] values (floor(value x bins), 1.0 in the last)."""
        b, t, h, w, _ = frames.shape
        q = (frames.to(torch.int16) * self.hist_bins) >> 8
        idx = ((q[..., 0] * self.hist_bins + q[..., 1]) * self.hist_bins + q[..., 2]).long()  # (B, T, H, W)
        flat = idx.reshape(b * t, h * w)
        hist = torch.zeros(b * t, self.hist_bins ** 3, device=x.device).scatter_add_(
            1, flat, torch.ones_like(flat, dtype=torch.float32))
        hist = F.normalize(hist.view(b, t, -1), dim=-1)  # (B, T, bins^3)
        feats = []
        for o in (-2, -1, 1, 2):
            shifted = torch.roll(hist, o, dims=1)
            feats.append((hist * shifted).sum(-1))
        diff = (x - torch.roll(x, 1, dims=1)).abs().mean((2, 3, 4))
        return torch.stack(feats + [diff], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, 27, 48, 3) uint8, or float in [0, 1] (rounded to 255 levels) -> per-frame logits (B, T)."""
        frames = x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)
        x = frames.float() / 255
        sim = self.similarity(frames, x)
        x = x.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        h = x.transpose(3, 4) if self.transposed else x
        h = h.contiguous(memory_format=torch.channels_last_3d)  # oneDNN's own layout: fewer reorders (~15%)
        for block in self.blocks:
            h = block(h)
        if self.transposed:
            h = h.transpose(3, 4)
        b, c, t = h.shape[:3]
        per_frame = torch.cat([h.permute(0, 2, 1, 3, 4).reshape(b, t, -1), sim], dim=-1)
        f = F.relu(self.frame_fc(per_frame))
        f = F.relu(self.temporal(f.transpose(1, 2))).transpose(1, 2)
        return self.head(f)[..., 0]

    @torch.no_grad()
    def for_inference(self) -> ShotNet:
        """Eval mode, batch norms folded into the convolutions, frames and kernels transposed to (W, H)
        (same outputs; see ``MIN_WINDOW``). Inference only: the weights no longer load into a training model."""
        self.eval()
        for block in self.blocks:
            block.fuse()
            for conv in block.convs:
                conv.weight.copy_(conv.weight.transpose(3, 4).contiguous())
            block.tap_kernels()
        self.transposed = True
        return self


def load_shotnet(path: str | Path | None = None) -> ShotNet:
    """The shipped detector (or one saved by ``save_shotnet`` at ``path``) in its inference form
    (``ShotNet.for_inference``: eval mode, batch norms folded, frames and kernels transposed)."""
    from safetensors.torch import load_file

    d = Path(path) if path else WEIGHTS
    cfg = json.loads((d / "config.json").read_text())
    model = ShotNet(tuple(cfg["widths"]), cfg["hist_bins"])
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    model.threshold = float(cfg.get("threshold", 0.5))
    model.low = float(cfg.get("low", model.threshold))
    model.spike_low = float(cfg.get("spike_low", SPIKE_LOW))
    ratio = cfg.get("spike_ratio", SPIKE_RATIO)  # null: no spike cuts
    model.spike_ratio = float("inf") if ratio is None else float(ratio)
    return model.for_inference()


def save_shotnet(model: ShotNet, out: str | Path, threshold: float, info: dict, low: float | None = None,
                 spike_ratio: float = SPIKE_RATIO) -> Path:
    from openwfm.files import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    widths = [sum(c.out_channels for c in b.convs) for b in model.blocks]
    (out / "config.json").write_text(json.dumps({"widths": widths, "hist_bins": model.hist_bins,
                                                 "threshold": threshold, "low": threshold if low is None else low,
                                                 "spike_low": SPIKE_LOW,
                                                 "spike_ratio": spike_ratio_json(spike_ratio), **info}, indent=1))
    return out


def spike_ratio_json(ratio: float) -> float | None:
    """The spike ratio as config.json stores it: null for none (infinity)."""
    return None if ratio == float("inf") else ratio


@torch.inference_mode()
def frame_probs(model: ShotNet, frames: np.ndarray) -> np.ndarray:
    """Per-frame transition probability of uint8 (T, 27, 48, 3) frames, by overlapping windows of at most
    ``INFER_WINDOW`` frames, one per call (each keeps its middle; the first and last frames repeat at the
    edges; a short video is one window of the next length in ``WINDOWS``)."""
    t = len(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames))
    out = np.zeros(t, dtype=np.float32)
    length = next(n for n in WINDOWS if n >= min(INFER_WINDOW, t + 2 * CONTEXT))
    step = length - 2 * CONTEXT
    for s in range(-CONTEXT, t - CONTEXT, step):
        idx = np.clip(np.arange(s, s + length), 0, t - 1)
        row = torch.sigmoid(model(x[torch.from_numpy(idx)][None]))[0].numpy()
        lo, hi = s + CONTEXT, min(t, s + CONTEXT + step)
        out[lo:hi] = row[CONTEXT:CONTEXT + hi - lo]
    return out


def detect_learned(frames: np.ndarray, model: ShotNet | None = None, threshold: float | None = None,
                   low: float | None = None) -> list[Transition]:
    """Transitions from per-frame probabilities, with hysteresis: a run of frames above ``low`` that
    reaches ``threshold`` somewhere is one transition (one or two frames: a cut). Both default to the
    model's calibrated values (``low`` defaults to the threshold: plain runs above it). Sub-threshold peaks
    that are isolated spikes of frame difference are cuts too (``spike_cuts``)."""
    model = model or load_shotnet()
    thr = threshold if threshold is not None else getattr(model, "threshold", 0.5)
    low = low if low is not None else min(thr, getattr(model, "low", thr))
    probs = frame_probs(model, frames)
    found = transitions_from_probs(probs, thr, low)
    extra = spike_cuts(probs, frame_differences(frames), found, getattr(model, "spike_low", SPIKE_LOW),
                       getattr(model, "spike_ratio", SPIKE_RATIO))
    return sorted(found + extra, key=lambda t: t.start)


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each uint8 frame (T, H, W, 3) to the one before, in [0, 1] (0 for the first)."""
    d = np.zeros(len(frames), dtype=np.float32)
    if len(frames) > 1:
        a = frames.astype(np.int16)
        d[1:] = np.abs(a[1:] - a[:-1]).mean(axis=(1, 2, 3)) / 255
    return d


def spike_cuts(probs: np.ndarray, diffs: np.ndarray, found: list[Transition], low: float = SPIKE_LOW,
               ratio: float = SPIKE_RATIO, span: int = SPIKE_SPAN) -> list[Transition]:
    """Cuts the threshold missed: frames whose probability is a local peak of at least ``low``, at least
    ``span`` frames from every transition in ``found``, where the frame difference ``diffs`` is at least
    ``ratio`` times every other within ``span`` frames. At a cut between two recordings of one static scene
    only a few percent of the picture changes and the network's peak stays under the threshold, but the frame
    difference still spikes; a flash changes the picture twice within a frame or two, and fast motion on many
    frames: neither is an isolated spike."""
    out = []
    for t in range(1, len(probs) - 1):
        if probs[t] < low or probs[t] < probs[t - 1] or probs[t] < probs[t + 1]:
            continue
        if any(f.start - span <= t <= f.end + span for f in found):
            continue
        near = np.concatenate([diffs[max(1, t - span):t], diffs[t + 1:t + span + 1]])
        if len(near) and diffs[t] >= ratio * max(float(near.max()), 1e-4):
            out.append(Transition(t, t, "cut"))
    return out


def transitions_from_probs(probs: np.ndarray, threshold: float, low: float) -> list[Transition]:
    """Runs of ``probs > low`` whose peak is above ``threshold``, as transitions: a cut where the frames
    passing the threshold span fewer than ``CUT_WIDTH`` frames (the network marks a few frames around a
    cut), placed on the most likely frame; a gradual transition over the whole run otherwise."""
    above = probs > low
    out, i = [], 0
    while i < len(above):
        if above[i]:
            j = i
            while j + 1 < len(above) and above[j + 1]:
                j += 1
            core = np.flatnonzero(probs[i:j + 1] > threshold)
            if len(core) and core[-1] - core[0] < CUT_WIDTH:  # a cut: on its most likely frame
                peak = i + int(np.argmax(probs[i:j + 1]))
                out.append(Transition(peak, peak, "cut"))
            elif len(core):
                out.append(Transition(i, j, "gradual"))
            i = j + 1
        else:
            i += 1
    return out
