"""Autoregressive Video2World: input frames -> DV tokens -> next-token generation -> video (Cosmos sec. 5.2).

The input (1 frame, or 1 + k * temporal-compression frames; Cosmos: 1 or 9) is padded to a full clip by
repeating its last frame, tokenized, and its first latent frames kept as the prompt, as in the released
inference code. The model generates the rest of the clip's token grid (KV cache, optionally Medusa);
the diffusion decoder (``decoder.py``, when one is given) or the DV tokenizer's own decoder turns all
tokens back into frames, and the input frames replace their own reconstructions. Guardrail hooks run on the prompt before and on the frames after, as in the diffusion
pipeline.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from openwfm.autoregressive.config import ARRunConfig
from openwfm.autoregressive.medusa import medusa_generate
from openwfm.autoregressive.sampling import SamplingConfig, generate
from openwfm.autoregressive.world import ARWorldModel
from openwfm.hub import load_ar_model, load_decoder
from openwfm.text.encoder import make_text_encoder


class ARPipeline:
    def __init__(self, model: ARWorldModel, cfg: ARRunConfig, device: str = "cpu", decoder: str | os.PathLike = "",
                 pre_guard: Callable[[str], None] | None = None, post_guard: Callable[[np.ndarray], np.ndarray] | None = None):
        from openwfm.tokenizer.api import load_tokenizer

        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.tokenizer = load_tokenizer(cfg.tokenizer, device=device)
        self.decoder = None
        if decoder:
            from openwfm.diffusion.codec import LatentCodec

            self.decoder, dcfg = load_decoder(decoder)
            self.decoder.to(device)
            self.codec = LatentCodec(dcfg.tokenizer, dcfg.edm.sigma_data, device)
            self.decoder_text = make_text_encoder(dcfg.text, device)
            self.spatial_scale = self.tokenizer.cfg.spatial_compression // self.codec.model.cfg.spatial_compression
        self.text = make_text_encoder(cfg.text, device) if cfg.model.cross_attn_every else None
        self.pre_guard, self.post_guard = pre_guard, post_guard
        self.stats: dict = {}

    @classmethod
    def from_run(cls, run: str | os.PathLike, **kw) -> "ARPipeline":
        model, cfg = load_ar_model(run)
        return cls(model, cfg, **kw)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kw) -> "ARPipeline":
        """An autoregressive run, checkpoint or export by path (diffusers-style name for ``from_run``);
        ``kw``: ``device``, ``decoder`` (a diffusion-decoder run) and the guardrail hooks."""
        return cls.from_run(name_or_path, **kw)

    def condition_latents(self, num_input_frames: int) -> int:
        t = self.tokenizer.cfg.temporal_compression
        if num_input_frames < 1 or (num_input_frames - 1) % t:
            raise ValueError(f"num_input_frames must be 1 + k*{t} (e.g. 1 or {1 + 2 * t}), got {num_input_frames}")
        return 1 + (num_input_frames - 1) // t

    @torch.no_grad()
    def video2world(self, frames: np.ndarray, prompt: str = "", num_input_frames: int = 1,
                    sampling: SamplingConfig | None = None, medusa: bool = False,
                    actions: np.ndarray | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3): the last ``num_input_frames`` of ``frames`` followed by the generated rest of
        one clip (``data.num_frames`` frames); H and W must be multiples of the tokenizer's compression.
        ``actions`` ((clip - 1, 7) robot actions, one per frame transition) for an action-conditioned model."""
        from openwfm.video.transforms import from_tensor, to_tensor

        n_in, clip = num_input_frames, self.cfg.data.num_frames
        n_cond = self.condition_latents(n_in)
        if len(frames) < n_in:
            raise ValueError(f"Video2World needs {n_in} input frames, got {len(frames)}")
        if n_in >= clip:
            raise ValueError(f"{n_in} input frames leave nothing to generate in a {clip}-frame clip")
        s = self.tokenizer.cfg.spatial_compression
        if frames.shape[1] % s or frames.shape[2] % s:
            raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} must be a multiple of {s}")
        inp = frames[-n_in:]
        padded = np.concatenate([inp, np.repeat(inp[-1:], clip - n_in, 0)])
        grid = self.tokenizer.encode(to_tensor(padded)[None].to(self.device))[0]  # (1, T', H', W')
        shape = tuple(grid.shape[1:])
        seq = self.model.sequence(grid)
        keep = int(self.cfg.model.bov_token) + n_cond * shape[1] * shape[2]
        context = None
        if self.pre_guard is not None:
            self.pre_guard(prompt)
        if self.text is not None:
            context = self.text.encode([prompt])[0].to(self.device)
        sampling = sampling or SamplingConfig()
        new = seq.shape[1] - keep
        acts = None
        if bool(self.cfg.model.action_dim) != (actions is not None):
            raise ValueError("actions go with an action-conditioned model (model.action_dim > 0), which needs them")
        if actions is not None:
            from openwfm.posttrain.conditions import latent_frame_actions, scale_actions

            acts = latent_frame_actions({"actions": np.asarray(actions).tolist()}, 0, 1, clip,
                                        self.tokenizer.cfg.temporal_compression)
            acts = scale_actions(acts, self.cfg.action_scale)[None].to(self.device)
        progress = getattr(self, "progress", None)  # progress(done, total): new tokens (a progress bar's hook)
        callback = None if progress is None else (lambda done: progress(done, new))
        if medusa:
            if self.model.medusa is None:
                raise ValueError("this model has no Medusa heads (train with medusa.num_heads > 0)")
            out, self.stats = medusa_generate(self.model.net, self.model.medusa, seq[:, :keep], new, sampling,
                                              context, shape=shape, actions=acts, callback=callback)
        else:
            out = generate(self.model.net, seq[:, :keep], new, sampling, context, shape=shape, actions=acts,
                           callback=callback)
            self.stats = {}
        tokens = out[:, int(self.cfg.model.bov_token):].view(1, *shape)
        if self.decoder is not None:
            from openwfm.autoregressive.decoder import decode_tokens

            text = self.decoder_text.encode([prompt])[0].to(self.device)
            video = decode_tokens(self.decoder, self.codec, tokens, text, torch.zeros_like(text), seed=sampling.seed,
                                  spatial_scale=self.spatial_scale)[:clip]
        else:
            video = from_tensor(self.tokenizer.decode(tokens).clamp(-1, 1)[0].cpu())[:clip]
        video = np.concatenate([inp, video[n_in:]])
        if self.post_guard is not None:
            video = self.post_guard(video)
        return video
