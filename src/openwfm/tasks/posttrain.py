"""Post-training tasks that start from a trained diffusion world model (Cosmos paper sec. 6).

``posttrain-action``: Video2World conditioned on a robot's 7-d end-effector actions (the ``push``
scenario's ``meta.actions``: dx dy dz droll dpitch dyaw gripper per frame); the actions between the
clip's sampled frames (summed over ``frame_stride``, gripper the last command), their motion scaled by
``action_scale`` (the gripper stays 0 / 1), flattened and embedded by a zero-initialized MLP into the
timestep embedding (``DiT`` ``action_dim``). ``per_frame``: each latent frame's tokens get the actions
leading into that frame; ``cumulative``: and the end effector's displacement since the clip's first
frame (the running sum of the actions), so no frame has to integrate its predecessors' actions. ``path``:
the commanded end-effector path also enters as 3 input channels drawn where the arm will be
(``conditions.path_maps``: the recorded camera projects the first pose plus the summed actions), a spatial
condition like the camera model's rays.

``posttrain-camera``: Video2World conditioned on the camera path. Each latent pixel's Plücker ray (6
channels, relative to the first frame's camera; ``camera.py``) is concatenated to the DiT input, from the
cameras the simulator records beside every rollout (``meta.camera``), resized with the frames. The model
starts as the base (``base``: a diffusion run or checkpoint, whose model / EDM / tokenizer / text settings
it adopts): its weights are copied, the input layer
grows zero columns for the new channels (and for the Video2World mask when the base had none), so before
training the post-trained model computes what the base computes.

    wfm posttrain camera --base runs/dit --out runs/camera data.shards=shards/orbit
    wfm posttrain action --base runs/dit --out runs/action data.shards=shards/push
    wfm posttrain multiview --base runs/dit --out runs/multiview data.shards=shards/drive [trajectory=true]
"""

from __future__ import annotations

import torch

from openwfm.config import ConfigError
from openwfm.posttrain.conditions import clip_rays, trajectory_vector, view_maps
from openwfm.posttrain.config import ActionRunConfig, CameraRunConfig, MultiviewRunConfig, PosttrainRunConfig
from openwfm.posttrain.surgery import from_base
from openwfm.tasks.diffusion import DiffusionTask
from openwfm.train.distributed import DistEnv
from openwfm.train.task import register_task


def adopt_base(cfg: PosttrainRunConfig) -> None:
    """Take the base run's model, EDM, tokenizer and text settings and its Video2World formulation (residual
    or not: a post-trained model is its base plus one input: these must match the weights it starts from)."""
    if cfg.base:
        from openwfm.hub import load_world_model

        _, base = load_world_model(cfg.base)
        cfg.model, cfg.edm, cfg.tokenizer, cfg.text = base.model, base.edm, base.tokenizer, base.text
        cfg.v2w.residual, cfg.v2w.residual_sigma_data = base.v2w.residual, base.v2w.residual_sigma_data
        cfg.v2w.residual_prior = base.v2w.residual_prior


class PosttrainTask(DiffusionTask):
    """A diffusion task whose run starts from a base model and adopts its settings. It trains on video
    shards (tokenized on the fly) or on precomputed latents, whose samples carry their source's metadata."""

    def __init__(self, cfg: PosttrainRunConfig):
        adopt_base(cfg)
        super().__init__(cfg)

    def clip(self, batch: dict, x0: torch.Tensor) -> tuple[int, int, tuple[int, int]]:
        """(frame stride, pixel frames, (height, width)) of the batch's clips: a video batch's, or the
        clips precomputed latents were made from (consecutive frames filling the latent's bucket)."""
        if "video" in batch:
            v = batch["video"]
            return self.cfg.data.frame_stride, v.shape[2], tuple(v.shape[3:])
        s = self.codec(x0.device).model.cfg.spatial_compression
        n = int(batch["num_frames"][0])
        if self.cfg.data.frame_stride != 1 or n != self.cfg.data.num_frames:
            raise ConfigError(f"{self.cfg.data.shards}: the latents are clips of {n} consecutive frames, but the run "
                              f"asks for data.num_frames={self.cfg.data.num_frames} at data.frame_stride="
                              f"{self.cfg.data.frame_stride}; precompute them to match (wfm data latents --num-frames)")
        return 1, n, (x0.shape[3] * s, x0.shape[4] * s)

    def temporal_compression(self) -> int:
        return self.codec("cpu").model.cfg.temporal_compression

    def from_base(self) -> torch.nn.Module:
        """The post-trained network (``posttrain.surgery``), starting from the base model's weights."""
        base = None
        if self.cfg.base:
            from openwfm.hub import load_world_model

            base, _ = load_world_model(self.cfg.base)
        return from_base(self.cfg, base, self.temporal_compression())


@register_task
class CameraTask(PosttrainTask):
    name = "posttrain-camera"
    config_cls = CameraRunConfig

    def build_model(self) -> torch.nn.Module:
        return self.from_base()

    def loss(self, model, batch: dict, env: DistEnv):
        x0 = self.latents(batch)
        stride, n, size = self.clip(batch, x0)
        rays = torch.stack([clip_rays(m, int(s), stride, n, size, tuple(x0.shape[2:]), self.temporal_compression())
                            for m, s in zip(batch["meta"], batch["start_frame"])]).to(x0.device)
        return self.diffusion_loss(model, batch, x0, env, extra=rays)


@register_task
class ActionTask(PosttrainTask):
    name = "posttrain-action"
    config_cls = ActionRunConfig

    def build_model(self) -> torch.nn.Module:
        return self.from_base()

    def loss(self, model, batch: dict, env: DistEnv):
        x0 = self.latents(batch)
        stride, t, size = self.clip(batch, x0)
        tc, clips = self.temporal_compression(), list(zip(batch["meta"], batch["start_frame"]))
        kw = {"action": torch.stack([self.cfg.action_input(m, int(s), stride, t, tc) for m, s in clips]).to(x0.device)}
        if self.cfg.path:
            kw["extra"] = torch.stack([self.cfg.path_input(m, int(s), stride, t, size, tuple(x0.shape[2:]), tc)
                                       for m, s in clips]).to(x0.device)
        return self.diffusion_loss(model, batch, x0, env, **kw)


@register_task
class MultiviewTask(PosttrainTask):
    """Joint generation of the six tiled views (one sequence: self-attention spans every camera), each
    latent pixel told its view by 6 one-hot channels; optionally conditioned on the ego trajectory (an MLP
    into the timestep embedding, like robot actions)."""

    name = "posttrain-multiview"
    config_cls = MultiviewRunConfig

    def build_model(self) -> torch.nn.Module:
        return self.from_base()

    def loss(self, model, batch: dict, env: DistEnv):
        x0 = self.latents(batch)
        _, _, size = self.clip(batch, x0)
        views = torch.stack([view_maps(m, size, tuple(x0.shape[2:]))
                             for m in batch["meta"]]).to(x0.device)
        kw = {"extra": views}
        if self.cfg.trajectory:
            kw["action"] = torch.stack([trajectory_vector(m) for m in batch["meta"]]).to(x0.device) \
                * self.cfg.trajectory_scale
        return self.diffusion_loss(model, batch, x0, env, **kw)

