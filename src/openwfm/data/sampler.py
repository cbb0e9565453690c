"""A distributed, resumable batch sampler over aspect-ratio buckets.

Every batch holds samples of one bucket key (e.g. ``"video/16:9"`` or ``"image/1:1"``), so a batch has
one shape. Each epoch every sample is used exactly once across all ranks, and every rank gets the same
number of batches, so DDP never waits on a rank that ran out. The plan of an epoch depends only on
``(seed, epoch)``: all ranks compute it alone, without communication. Image and video batches are
shuffled together, which interleaves them for joint image + video training.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Sequence

import numpy as np

from openwfm.data.shards import DataError

log = logging.getLogger(__name__)


class BucketBatchSampler:
    """Yields lists of sample indices for one rank; use as a DataLoader's ``batch_sampler``.

    ``batch_size`` is one number, or a dict keyed by bucket key or by kind (the part before ``/``),
    e.g. ``{"video": 4, "image": 16}``. ``on_epoch`` is called with the epoch whenever it changes
    (``make_loader`` uses it to pass the epoch to the dataset).

    Resume: ``state_dict()`` is ``{"epoch", "position"}`` where ``position`` counts the batches this
    sampler has handed out in the epoch; ``load_state_dict`` makes the next iteration start at the
    following batch. A DataLoader with workers reads ahead of the training loop, so a trainer using
    workers should save the number of batches it has *consumed* as ``position`` instead.
    """

    def __init__(self, keys: Sequence[str], batch_size: int | dict[str, int], rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, on_epoch: Callable[[int], None] | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.keys = list(keys)
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.on_epoch = on_epoch
        self.groups: dict[str, list[int]] = {}
        for i, k in enumerate(self.keys):
            self.groups.setdefault(k, []).append(i)
        self.sizes = {k: self._batch_size(batch_size, k) for k in self.groups}
        if len(self.keys) < world_size:
            raise DataError("sampler", f"{len(self.keys)} samples cannot be shared by {world_size} ranks: "
                                       "every rank needs at least one batch")
        self.epoch, self.position = 0, 0
        self._finished = False  # this object has itself iterated to the end of the epoch
        self._cache: tuple[int, list[list[int]]] | None = None
        self._rank_batches(0)  # fail now, not in the training loop, if the batches cannot be balanced

    @staticmethod
    def _batch_size(batch_size: int | dict[str, int], key: str) -> int:
        if isinstance(batch_size, dict):
            kind = key.split("/", 1)[0]
            if key in batch_size:
                size = batch_size[key]
            elif kind in batch_size:
                size = batch_size[kind]
            else:
                raise ValueError(f"no batch size for bucket '{key}' (have {', '.join(batch_size)})")
        else:
            size = batch_size
        if size < 1:
            raise ValueError(f"batch size of '{key}' must be >= 1, got {size}")
        return int(size)

    def plan(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` for all ranks, in order; rank ``r`` takes ``plan[r::world_size]``."""
        rng = np.random.default_rng((self.seed, epoch))
        batches: list[list[int]] = []
        for key in sorted(self.groups):
            idx = self.groups[key]
            if self.shuffle:
                idx = [idx[j] for j in rng.permutation(len(idx))]
            size = self.sizes[key]
            batches += [idx[j:j + size] for j in range(0, len(idx), size)]
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        while len(batches) % self.world_size:
            j = max(range(len(batches)), key=lambda b: (len(batches[b]), -b))  # the largest, first on ties
            big = batches[j]
            if len(big) < 2:
                raise DataError("sampler", f"cannot cut {len(self.keys)} samples in {len(self.groups)} buckets "
                                           f"into a multiple of {self.world_size} batches without dropping "
                                           "or repeating samples; use larger batch sizes, fewer buckets "
                                           "or fewer ranks")
            half = (len(big) + 1) // 2
            batches[j:j + 1] = [big[:half], big[half:]]
        return batches

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.plan(epoch)[self.rank::self.world_size])
        return self._cache[1]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch; the current epoch again keeps the position (so a state
        loaded before the training loop's ``set_epoch`` survives it)."""
        if epoch != self.epoch:
            self.epoch, self.position, self._finished = epoch, 0, False
            if self.on_epoch is not None:
                self.on_epoch(epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"sampler position {position} is outside [0, {len(self)}]")
        self.epoch, self.position, self._finished = epoch, position, False
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches(self.epoch)
        if self._finished:  # iterating again over a finished epoch without set_epoch: repeat it
            self.position, self._finished = 0, False
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield list(batch)
        self._finished = True

    def __len__(self) -> int:
        return len(self._rank_batches(self.epoch))
