"""Post-training tasks that start from a trained diffusion world model (Cosmos paper sec. 6).

``posttrain-action``: Video2World conditioned on a robot's 7-d end-effector actions (the ``push``
scenario's ``meta.actions``: dx dy dz droll dpitch dyaw gripper per frame); the actions between the
clip's sampled frames (summed over ``frame_stride``, gripper the last command), their motion scaled by
``action_scale`` (the gripper stays 0 / 1), flattened and embedded by a zero-initialized MLP into the
timestep embedding (``DiT`` ``action_dim``). ``per_frame``: each latent frame's tokens get the actions
leading into that frame; ``cumulative``: and the end effector's displacement since the clip's first
frame (the running sum of the actions), so no frame has to integrate its predecessors' actions.

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

import dataclasses
from dataclasses import dataclass, field

import torch

from openwfm.config import ConfigError, register_preset
from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.model import Video2WorldConfig, WorldModel
from openwfm.diffusion.train import DiffusionRunConfig, DiffusionTask
from openwfm.posttrain.camera import ray_maps, scale_intrinsics
from openwfm.train.distributed import DistEnv
from openwfm.train.task import register_task

RAY_CHANNELS = 6


def input_layout(cfg: DiTConfig) -> list[tuple[str, int]]:
    """The DiT's input channel groups in the order ``DiT.forward`` concatenates them."""
    groups = [("latent", cfg.in_channels), ("condition_mask", int(cfg.condition_mask)),
              ("padding_mask", int(cfg.concat_padding_mask)), ("extra", cfg.extra_channels)]
    return [(n, c) for n, c in groups if c]


def expand_input_weights(weight: torch.Tensor, old: DiTConfig, new: DiTConfig) -> torch.Tensor:
    """The patch-embedding weight of ``old`` for ``new``'s input channels: each group the base had is
    copied to its new place, new groups (or channels) get zeros — so the new inputs start ignored."""
    per = old.patch_temporal * old.patch_spatial ** 2
    w_old = weight.reshape(weight.shape[0], -1, per)
    old_at, at = {}, 0
    for name, c in input_layout(old):
        old_at[name], at = (at, c), at + c
    out = torch.zeros(weight.shape[0], sum(c for _, c in input_layout(new)), per, dtype=weight.dtype)
    at = 0
    for name, c in input_layout(new):
        if name in old_at:
            o, oc = old_at[name]
            out[:, at:at + min(c, oc)] = w_old[:, o:o + min(c, oc)]
        at += c
    return out.reshape(weight.shape[0], -1)


@dataclass
class PosttrainRunConfig(DiffusionRunConfig):
    base: str = ""  # the diffusion run or checkpoint to start from ("" = random init, for tests)
    lora_rank: int = 0  # > 0: freeze the base, train LoRA adapters (+ the new input / action layers)
    lora_alpha: float = 16.0
    v2w: Video2WorldConfig = field(default_factory=lambda: Video2WorldConfig(enabled=True))


@dataclass
class CameraRunConfig(PosttrainRunConfig):
    pass


def _tiny(cls: type) -> PosttrainRunConfig:
    """The tiny diffusion preset's settings, as Video2World."""
    from openwfm.diffusion.train import _tiny as tiny_diffusion

    d = tiny_diffusion()
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(DiffusionRunConfig) if f.name != "v2w"}
    return cls(**fields, v2w=Video2WorldConfig(enabled=True))


register_preset(CameraRunConfig, "tiny")(lambda: _tiny(CameraRunConfig))


def from_base(cfg: PosttrainRunConfig, base: str, **dit_changes) -> WorldModel:
    """A Video2World model with ``dit_changes`` (new inputs), initialized from the diffusion run ``base``
    when given: the base's weights, zero input columns for new channels, new modules at their own
    (zero-output) initialization — so it starts computing what the base computes."""
    model = WorldModel(dataclasses.replace(cfg.model, **dit_changes), cfg.edm, cfg.v2w)
    if base:
        from openwfm.diffusion.pipeline import load_world_model

        base_model, _ = load_world_model(base)
        state = base_model.state_dict()
        state["net.x_embedder.weight"] = expand_input_weights(state["net.x_embedder.weight"], base_model.net.cfg,
                                                              model.net.cfg)
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith(("uncertainty", "net.action_embed"))]
        if unexpected or bad:
            raise ConfigError(f"base {base} does not fit: missing {bad[:3]}, unexpected {unexpected[:3]} "
                              "(the same model preset as the base?)")
    if cfg.lora_rank:
        from openwfm.posttrain.lora import add_lora

        add_lora(model.net, cfg.lora_rank, cfg.lora_alpha)
        model.net.x_embedder.requires_grad_(True)  # it grew columns for the new inputs
        if dit_changes.get("action_dim"):
            model.net.action_embed.requires_grad_(True)
    return model


def camera_model(cfg: CameraRunConfig) -> WorldModel:
    """The camera-conditioned world model, initialized from ``cfg.base`` when given."""
    return from_base(cfg, cfg.base, extra_channels=RAY_CHANNELS)


def clip_rays(meta: dict, start: int, stride: int, num_frames: int, frame_size: tuple[int, int],
              latent_grid: tuple[int, int, int], temporal_compression: int) -> torch.Tensor:
    """(6, T', H', W') Plücker maps of the clip that starts at ``start`` in a rollout whose frames were fitted
    into ``frame_size`` (scaled to fit, centered: ``data.buckets.fit_to_bucket``)."""
    cam = meta.get("camera") or {}
    if "cam2world" not in cam or "intrinsics" not in cam:
        raise ConfigError(f"sample {meta.get('name', '?')} has no camera (meta.camera with intrinsics and "
                          "cam2world): camera post-training needs simulator rollouts or videos with poses")
    idx = [min(start + j * stride, len(cam["cam2world"]) - 1) for j in range(num_frames)]
    c2w = torch.tensor(cam["cam2world"], dtype=torch.float64)[idx]
    K = torch.tensor(cam["intrinsics"], dtype=torch.float64)[idx]
    H, W = int(meta["height"]), int(meta["width"])
    h, w = frame_size
    s = min(h / H, w / W)
    nh, nw = min(h, max(1, round(H * s))), min(w, max(1, round(W * s)))
    K = scale_intrinsics(K, nw / W, nh / H)
    K[:, 0, 2] += (w - nw) // 2
    K[:, 1, 2] += (h - nh) // 2
    return ray_maps(K, c2w, (h, w), latent_grid, temporal_compression).float()


def adopt_base(cfg: PosttrainRunConfig) -> None:
    """Take the base run's model, EDM, tokenizer and text settings and its Video2World formulation (residual
    or not: a post-trained model is its base plus one input: these must match the weights it starts from)."""
    if cfg.base:
        from openwfm.diffusion.pipeline import load_world_model

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


@register_task
class CameraTask(PosttrainTask):
    name = "posttrain-camera"
    config_cls = CameraRunConfig

    def build_model(self) -> torch.nn.Module:
        return camera_model(self.cfg)

    def loss(self, model, batch: dict, env: DistEnv):
        x0 = self.latents(batch)
        stride, n, size = self.clip(batch, x0)
        rays = torch.stack([clip_rays(m, int(s), stride, n, size, tuple(x0.shape[2:]), self.temporal_compression())
                            for m, s in zip(batch["meta"], batch["start_frame"])]).to(x0.device)
        return self.diffusion_loss(model, batch, x0, env, extra=rays)


@dataclass
class ActionRunConfig(PosttrainRunConfig):
    action_scale: float = 100.0  # motion is metres / radians per frame (~0.01): scaled to ~1; gripper stays 0/1
    blind: bool = False  # the control model for evaluation: trained the same way, its actions zeroed
    per_frame: bool = False  # each latent frame's tokens get the actions leading into that frame
    cumulative: bool = False  # per frame, also the displacement since the clip's first frame (7 more values)
    cumulative_scale: float = 10.0  # that displacement (metres / radians, up to ~0.5) scaled to ~1

    def validate(self) -> None:
        super().validate()
        if self.cumulative and not self.per_frame:
            raise ConfigError("cumulative=true adds per-frame features: set per_frame=true as well")

    def action_dim(self, temporal_compression: int = 4) -> int:
        if self.per_frame:
            return 7 * temporal_compression + 7 * int(self.cumulative)
        return 7 * (self.data.num_frames - 1)

    def action_input(self, meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int
                     ) -> torch.Tensor:
        """The model's action input for one clip, scaled: (action_dim,) or, per frame, (T', action_dim)."""
        if self.per_frame:
            a = scale_actions(latent_frame_actions(meta, start, stride, num_frames, temporal_compression),
                              self.action_scale)
            if self.cumulative:
                a = torch.cat([a, scale_actions(displacements(meta, start, stride, num_frames, temporal_compression),
                                                self.cumulative_scale)], -1)
        else:
            a = scale_actions(clip_actions(meta, start, stride, num_frames), self.action_scale)
        return a * (0.0 if self.blind else 1.0)


register_preset(ActionRunConfig, "tiny")(lambda: _tiny(ActionRunConfig))


def scale_actions(a: torch.Tensor, scale: float) -> torch.Tensor:
    """Actions (..., k * 7) with their motion (the first 6 of every 7) times ``scale``; the gripper command
    (every 7th) stays 0 / 1, so it does not drown the motion in the embedding MLP's input."""
    s = torch.full((7,), float(scale), dtype=a.dtype)
    s[6] = 1.0
    return a * s.repeat(a.shape[-1] // 7)


def clip_actions(meta: dict, start: int, stride: int, num_frames: int) -> torch.Tensor:
    """((num_frames - 1) * 7,) actions taking each sampled frame to the next: deltas summed over the
    stride, the gripper command of the last step."""
    acts = meta.get("actions")
    if not acts:
        raise ConfigError(f"sample {meta.get('name', '?')} has no actions (meta.actions): action post-training "
                          "needs robot rollouts (the push scenario)")
    a = torch.tensor(acts, dtype=torch.float32)
    a = torch.cat([a, torch.zeros(max(0, start + stride * num_frames - len(a)), 7)])  # past the end: no motion
    steps = a[start:start + stride * (num_frames - 1)].view(num_frames - 1, stride, 7)
    return torch.cat([steps[:, :, :6].sum(1), steps[:, -1:, 6]], -1).flatten()


def _check_causal(num_frames: int, tc: int) -> None:
    if (num_frames - 1) % tc:
        raise ValueError(f"{num_frames} frames: a causal tokenizer with temporal compression {tc} takes 1 + k*{tc}")


def latent_frame_actions(meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int
                         ) -> torch.Tensor:
    """(T', 7 * temporal_compression): the actions leading into each latent frame of a causal tokenizer's
    clip (latent frame i >= 1 covers pixel frames 4i-3 .. 4i, reached by transitions 4i-4 .. 4i-1); zeros
    for the first. The autoregressive model's action conditioning."""
    tc = temporal_compression
    _check_causal(num_frames, tc)
    a = clip_actions(meta, start, stride, num_frames).view(-1, tc * 7)
    return torch.cat([torch.zeros(1, tc * 7), a])


def displacements(meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int) -> torch.Tensor:
    """(T', 7): the end effector's commanded displacement (dx .. dyaw summed) from the clip's first frame to
    the last pixel frame of each latent frame, and the gripper command then; zeros for the first."""
    tc = temporal_compression
    _check_causal(num_frames, tc)
    a = clip_actions(meta, start, stride, num_frames).view(-1, 7)
    total = torch.cat([a[:, :6].cumsum(0), a[:, 6:]], -1)[tc - 1::tc]
    return torch.cat([torch.zeros(1, 7), total])


@register_task
class ActionTask(PosttrainTask):
    name = "posttrain-action"
    config_cls = ActionRunConfig

    def build_model(self) -> torch.nn.Module:
        return from_base(self.cfg, self.cfg.base, action_dim=self.cfg.action_dim(self.temporal_compression()))

    def loss(self, model, batch: dict, env: DistEnv):
        x0 = self.latents(batch)
        stride, t, _ = self.clip(batch, x0)
        actions = torch.stack([self.cfg.action_input(m, int(s), stride, t, self.temporal_compression())
                               for m, s in zip(batch["meta"], batch["start_frame"])]).to(x0.device)
        return self.diffusion_loss(model, batch, x0, env, action=actions)


# -- multi-view driving ---------------------------------------------------------------------------------------
NUM_VIEWS = 6  # sim.drive.VIEWS: front, front_left, front_right, back, back_left, back_right
@dataclass
class MultiviewRunConfig(PosttrainRunConfig):
    trajectory: bool = False  # condition on the ego's future trajectory (64 points at 0.1 s) as well
    trajectory_scale: float = 1.0  # metres of the 1:10 scene: already ~1


register_preset(MultiviewRunConfig, "tiny")(lambda: _tiny(MultiviewRunConfig))


def view_maps(meta: dict, frame_size: tuple[int, int], latent_grid: tuple[int, int, int]) -> torch.Tensor:
    """(6, T', H', W') one-hot view id of every latent pixel of a tiled multi-view clip (``sim/drive.py``:
    views tiled by ``meta.view_layout``) after the frames were fitted into ``frame_size``; zeros on
    padding. Channel k is ``meta.views_order[k]``: each view's tokens know which camera they belong to."""
    layout, order = meta.get("view_layout"), meta.get("views_order")
    if not layout or not order:
        raise ConfigError(f"sample {meta.get('name', '?')} is not a multi-view rollout (meta.view_layout, "
                          "views_order): multi-view post-training needs the drive scenario")
    H, W = int(meta["height"]), int(meta["width"])
    h, w = frame_size
    s = min(h / H, w / W)
    nh, nw = min(h, max(1, round(H * s))), min(w, max(1, round(W * s)))
    top, left = (h - nh) // 2, (w - nw) // 2
    t, gh, gw = latent_grid
    ys = (torch.arange(gh) + 0.5) * h / gh - top  # latent pixel centers in the fitted content's pixels
    xs = (torch.arange(gw) + 0.5) * w / gw - left
    rows, cols = len(layout), len(layout[0])
    r = torch.floor(ys / nh * rows).long()[:, None].expand(gh, gw)
    c = torch.floor(xs / nw * cols).long()[None, :].expand(gh, gw)
    inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
    view_of = torch.tensor([[order.index(v) for v in row] for row in layout])  # tile -> channel
    ids = view_of[r.clamp(0, rows - 1), c.clamp(0, cols - 1)]
    out = torch.nn.functional.one_hot(ids, len(order)).movedim(-1, 0).float() * inside
    return out[:, None].expand(-1, t, -1, -1).contiguous()


def trajectory_vector(meta: dict) -> torch.Tensor:
    """(128,) the ego's future (x, y) at 64 steps of 0.1 s, in the first frame's ego coordinates."""
    traj = meta.get("trajectory")
    if traj is None or len(traj) != 64:
        raise ConfigError(f"sample {meta.get('name', '?')} has no 64-point ego trajectory (meta.trajectory)")
    return torch.tensor(traj, dtype=torch.float32).flatten()


@register_task
class MultiviewTask(PosttrainTask):
    """Joint generation of the six tiled views (one sequence: self-attention spans every camera), each
    latent pixel told its view by 6 one-hot channels; optionally conditioned on the ego trajectory (an MLP
    into the timestep embedding, like robot actions)."""

    name = "posttrain-multiview"
    config_cls = MultiviewRunConfig

    def build_model(self) -> torch.nn.Module:
        extra = {"action_dim": 128} if self.cfg.trajectory else {}
        return from_base(self.cfg, self.cfg.base, extra_channels=NUM_VIEWS, **extra)

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

