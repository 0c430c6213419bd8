"""What runs inside a DataLoader's worker process: the loop that reads samples and collates them, and what it
sends back (batches, pickled in the worker; errors with their traceback text)."""
import os
import queue
import random
import sys
import traceback

import numpy as np

from ... import _core
from ._transport import pack, picklable

__all__ = ["WorkerInfo", "get_worker_info"]

# How often an idle worker checks that the process that started it is still alive.
_PARENT_POLL_S = 5.0


class WorkerInfo:
    """Which worker this is (id, num_workers), its seed, and its copy of the dataset. Read-only."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, **fields):
        for name in self.__slots__:
            object.__setattr__(self, name, fields[name])

    def __setattr__(self, name, value):
        raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={type(self.dataset).__name__})")


_worker_info = None


def get_worker_info():
    """In a DataLoader worker process, its WorkerInfo; None in the main process."""
    return _worker_info


class ExceptionWrapper:
    """An exception raised in a worker, carried to the main process with its traceback text and raised there
    again: the same type where that type can be built from a message, else RuntimeError."""

    def __init__(self, where):
        exc_type, exc, _ = sys.exc_info()
        self.exc_type = exc_type if picklable(exc_type) else RuntimeError
        self.message = f"Caught {exc_type.__name__} {where}.\nOriginal " + "".join(traceback.format_exc())

    def reraise(self):
        try:
            error = self.exc_type(self.message)
        except Exception:  # noqa: BLE001 - a type that needs other arguments
            error = None
        if error is None:
            raise RuntimeError(self.message)
        raise error


class IterableEnd:
    """Sent by a worker whose copy of an IterableDataset is exhausted."""


def _seed(seed, worker_id):
    _core.manual_seed(seed)
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, seed]).generate_state(4))


class _Fetcher:
    """Reads one batch (or, without batching, one sample) for a task."""

    def __init__(self, dataset, is_iterable, auto_collation, collate_fn, drop_last):
        self.dataset, self.is_iterable = dataset, is_iterable
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.iterator = None

    def restart(self):
        self.iterator = iter(self.dataset) if self.is_iterable else None

    def fetch(self, indices):
        if self.is_iterable:
            return self._next_from_stream(indices)
        if not self.auto_collation:
            return self.collate_fn(self.dataset[indices])
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if callable(getitems) else [self.dataset[i] for i in indices]
        return self.collate_fn(samples)

    def _next_from_stream(self, batch_size):
        """The next batch_size samples (one, not batched, when batch_size is None); StopIteration at the end."""
        if batch_size is None:
            return self.collate_fn(next(self.iterator))
        samples = []
        for sample in self.iterator:
            samples.append(sample)
            if len(samples) == batch_size:
                break
        if not samples or (self.drop_last and len(samples) < batch_size):
            raise StopIteration
        return self.collate_fn(samples)


def worker_loop(fetcher, index_queue, result_queue, worker_id, num_workers, seed, init_fn):
    """Serves tasks (epoch, index, what to read) from index_queue until it reads None; puts (epoch, index, pickled
    batch, IterableEnd or ExceptionWrapper) on result_queue. A new epoch restarts an iterable dataset."""
    global _worker_info
    parent = os.getppid()
    try:
        _seed(seed, worker_id)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=fetcher.dataset)
        init_error = None
        if init_fn is not None:
            try:
                init_fn(worker_id)
            except Exception:  # noqa: BLE001 - sent to the main process with each answer
                init_error = ExceptionWrapper(f"in DataLoader worker process {worker_id} (worker_init_fn)")
        epoch = None
        while True:
            try:
                task = index_queue.get(timeout=_PARENT_POLL_S)
            except queue.Empty:
                if os.getppid() != parent:  # the main process is gone
                    return
                continue
            if task is None:
                return
            task_epoch, index, what = task
            result_queue.put((task_epoch, index, init_error or _answer(fetcher, what, epoch != task_epoch)))
            epoch = task_epoch
    except KeyboardInterrupt:  # the main process handles Ctrl-C and stops the workers
        pass


def _answer(fetcher, what, restart):
    try:
        if restart:
            fetcher.restart()
        return pack(fetcher.fetch(what))
    except StopIteration:
        return IterableEnd()
    except Exception:  # noqa: BLE001 - every error goes to the main process
        return ExceptionWrapper(f"in DataLoader worker process {get_worker_info().id}")
