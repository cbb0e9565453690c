"""The autoregressive world model as trained and loaded: the base transformer and its optional Medusa
heads (Cosmos paper sec. 5.2); ``forward`` is the training loss."""

from __future__ import annotations

import torch
from torch import nn

from openwfm.autoregressive.config import MedusaConfig
from openwfm.autoregressive.medusa import MedusaHeads, medusa_loss
from openwfm.autoregressive.model import ARConfig, ARTransformer, ar_loss


class ARWorldModel(nn.Module):
    """The base transformer and its (optional) Medusa heads; ``forward`` is the training loss."""

    def __init__(self, cfg: ARConfig, medusa: MedusaConfig | None = None):
        super().__init__()
        self.net = ARTransformer(cfg)
        m = medusa or MedusaConfig()
        self.medusa = MedusaHeads(cfg.dim, m.num_heads) if m.num_heads else None
        self.mcfg = m
        if m.freeze_base:
            self.net.requires_grad_(False)

    def sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T', H', W') indices -> (B, n) sequence, with <bov> first when the model has one."""
        seq = tokens.flatten(1)
        if self.net.cfg.bov_token:
            seq = torch.cat([torch.full_like(seq[:, :1], self.net.cfg.vocab_size), seq], 1)
        return seq

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None, actions: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        seq = self.sequence(tokens)
        shape = tuple(tokens.shape[1:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.mcfg.freeze_base):
            logits, hidden = self.net(seq[:, :-1], context=context, shape=shape, return_hidden=True, actions=actions)
        loss, stats = ar_loss(logits, seq[:, 1:], self.net.cfg.z_loss)
        if self.mcfg.freeze_base:
            loss = loss.detach()
        if self.medusa is not None:
            n, p = hidden.shape[1], self.mcfg.positions
            pos = torch.randperm(n, generator=generator)[:p].sort().values if 0 < p < n else None
            mloss, mstats = medusa_loss(self.medusa, hidden, self.net.output, seq, self.mcfg.decay, pos)
            loss = loss + self.mcfg.weight * mloss
            stats.update(mstats)
        return loss, stats
