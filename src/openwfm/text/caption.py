"""Captions for clips (Cosmos paper sec. 3.3), behind one interface ``caption(frames, info) -> (text, source)``:

- ``metadata``: the simulator's own caption when the source sample has one (its JSON beside the video);
- ``vlm``: a local vision-language model through transformers (``AutoProcessor`` +
  ``AutoModelForImageTextToText`` from a local path; never a download);
- ``template`` (when no model is given): a factual sentence from what the pipeline measured — camera
  motion, motion level, brightness, duration — and labeled ``"template"`` in the metadata, so nobody
  mistakes it for a description of the content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def sim_caption(video_path: str | os.PathLike) -> str | None:
    """The caption in the simulator's ``NAME.json`` beside ``NAME.mp4``, if there is one."""
    meta = Path(video_path).with_suffix(".json")
    if not meta.is_file():
        return None
    try:
        cap = json.loads(meta.read_text()).get("caption")
    except (ValueError, OSError):
        return None
    return cap if isinstance(cap, str) and cap.strip() else None


def template_caption(info: dict) -> str:
    """A sentence built only from measured facts (scores from the filters)."""
    cam = info.get("camera", "static")
    camera = {"static": "A static camera", "pan": "A panning camera", "tilt": "A tilting camera",
              "zoom": "A zooming camera"}.get(cam, "A camera")
    m = info.get("motion", 0.0)
    motion = "little motion" if m < 0.003 else "moderate motion" if m < 0.01 else "fast motion"
    b = info.get("brightness", 0.5)
    light = "a dark scene" if b < 0.3 else "a bright scene" if b > 0.7 else "a scene"
    return f"{camera} films {light} with {motion} for {info.get('duration', 0):.1f} seconds."


class VLMCaptioner:
    """A local vision-language model: ``AutoProcessor`` + ``AutoModelForImageTextToText``.

    The prompt goes through the processor's chat template when it has one. A processor with a video
    processor gets ``num_frames`` evenly spaced frames as a video; any other gets the middle frame.
    """

    def __init__(self, path: str | os.PathLike, prompt: str = "Describe this video in one sentence.",
                 max_new_tokens: int = 64, device: str = "cpu", num_frames: int = 8, video: bool | None = None):
        import transformers

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a local model directory (no config.json)")
        transformers.utils.logging.disable_progress_bar()
        self.processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
        self.model = self.model.to(device).eval()
        has_video = getattr(self.processor, "video_processor", None) is not None
        if video and not has_video:
            raise ValueError(f"{path}: the processor has no video processor; use video=False")
        self.video = has_video if video is None else video
        self.max_new_tokens, self.device, self.num_frames = max_new_tokens, device, num_frames
        self.text = self._prompt(prompt, "video" if self.video else "image")

    def _prompt(self, prompt: str, kind: str) -> str:
        """The model's input text: its chat template around one image/video placeholder, else a bare prompt."""
        if getattr(self.processor, "chat_template", None):
            msgs = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        token = getattr(self.processor, f"{kind}_token", None)
        return f"{token}\n{prompt}" if token and token not in prompt else prompt

    def __call__(self, frames: np.ndarray) -> str:
        """A caption of uint8 frames (T, H, W, 3), greedy (deterministic), new tokens only."""
        import torch

        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"frames must be uint8 (T, H, W, 3) with T > 0, got {frames.dtype} {frames.shape}")
        if self.video:
            idx = np.linspace(0, len(frames) - 1, min(self.num_frames, len(frames))).round().astype(int)
            media = {"videos": [frames[idx]]}
        else:
            from PIL import Image

            media = {"images": [Image.fromarray(frames[len(frames) // 2])]}
        inputs = self.processor(text=[self.text], return_tensors="pt", **media)
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype: floating tensors only
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()


def caption(frames: np.ndarray, info: dict, source: str | os.PathLike | None = None,
            vlm: VLMCaptioner | None = None) -> tuple[str, str]:
    """(caption, how it was made: "metadata" | "vlm" | "template")."""
    if source is not None and (cap := sim_caption(source)):
        return cap, "metadata"
    if vlm is not None:
        return vlm(frames), "vlm"
    return template_caption(info), "template"
