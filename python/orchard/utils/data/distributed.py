"""DistributedSampler: each rank of a data-parallel run draws its own share of a dataset's indices."""
import math

import numpy as np

from ...distributed import get_rank, get_world_size
from .sampler import Sampler


class DistributedSampler(Sampler):
    """The indices of `dataset` for one of `num_replicas` ranks, as torch.utils.data.DistributedSampler.

    Each epoch the indices (shuffled with seed + epoch when `shuffle`: call set_epoch before each epoch) are
    padded by repeating the first ones, or with drop_last cut, to a multiple of num_replicas, and rank r takes
    every num_replicas-th from position r. The ranks' shares are disjoint (apart from the padding) and of equal
    length. The shuffle is NumPy's permutation of the seed, not torch's: the same on every rank, and repeatable,
    but not the order PyTorch would draw. num_replicas and rank default to the process group's."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)  # the full rounds only
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if self.total_size > len(indices):
            repeats = math.ceil((self.total_size - len(indices)) / max(len(indices), 1))
            indices += (indices * repeats)[:self.total_size - len(indices)]
        indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Makes the next epoch's shuffle differ from the last one's (the same epoch on every rank)."""
        self.epoch = epoch
