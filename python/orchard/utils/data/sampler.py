"""Samplers, as torch.utils.data.sampler: they yield the indices (or, BatchSampler, the lists of indices) a
DataLoader reads. Random ones draw from Orchard's generator (orchard.manual_seed makes them repeatable)."""
import numbers

from . import _draws

__all__ = ["BatchSampler", "RandomSampler", "Sampler", "SequentialSampler", "SubsetRandomSampler"]

# RandomSampler draws this many indices at a time: num_samples may be far larger than memory (minGPT asks for
# 1e10 samples with replacement).
_CHUNK = 32


class Sampler:
    """Yields indices of a dataset; subclasses define __iter__ and, when they know it, __len__."""

    def __init__(self, data_source=None):
        del data_source  # accepted as PyTorch's base class does

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """Random indices of data_source: a fresh permutation per pass (several, and part of one, when num_samples
    exceeds the dataset), or with replacement=True num_samples independent draws, made lazily."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        _draws.check_generator(generator, "RandomSampler")
        self.data_source, self.replacement, self._num_samples, self.generator = (data_source, replacement,
                                                                                 num_samples, generator)
        if not isinstance(self.num_samples, numbers.Integral) or isinstance(self.num_samples, bool) or \
                self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        if self.replacement:
            for start in range(0, self.num_samples, _CHUNK):
                yield from _draws.integers(n, min(_CHUNK, self.num_samples - start)).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from _draws.permutation(n).tolist()
            if self.num_samples % n:
                yield from _draws.permutation(n)[:self.num_samples % n].tolist()

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order, a fresh one per pass."""

    def __init__(self, indices, generator=None):
        _draws.check_generator(generator, "SubsetRandomSampler")
        self.indices, self.generator = indices, generator

    def __iter__(self):
        for i in _draws.permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Lists of batch_size indices from sampler; the last, shorter one is dropped when drop_last."""

    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
