"""DataLoader, as torch.utils.data.DataLoader: batches of a dataset, read in the main process or, with
num_workers > 0, in worker processes that return them in order."""
import itertools
import multiprocessing
import queue
import time

from . import _draws
from ._transport import unpack
from ._worker import ExceptionWrapper, IterableEnd, _Fetcher, get_worker_info, worker_loop
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

# How often the main process, waiting for a batch, checks that the workers are alive.
_LIVENESS_POLL_S = 1.0
_JOIN_TIMEOUT_S = 5.0


class _InfiniteConstantSampler(Sampler):
    """The sampler of an IterableDataset: the dataset decides what comes next."""

    def __iter__(self):
        return itertools.repeat(None)


class DataLoader:
    """Iterates over batches of `dataset`, as torch.utils.data.DataLoader.

    pin_memory is accepted and does nothing: Orchard's CPU tensors already live in memory the Apple GPU reads
    directly (unified memory), so there is no page-locked staging copy to make."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        del pin_memory_device, in_order  # (batches always come back in order, which in_order=False allows too)
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor option should be at least 1, got {prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        _draws.check_generator(generator, "DataLoader")

        self.is_iterable = isinstance(dataset, IterableDataset)
        if self.is_iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and "
                                 "drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if self.is_iterable:
                sampler = _InfiniteConstantSampler()
            else:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.prefetch_factor = num_workers, (2 if num_workers and prefetch_factor is None
                                                               else prefetch_factor)
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else default_convert)
        self.pin_memory, self.timeout, self.worker_init_fn = pin_memory, timeout, worker_init_fn
        self.multiprocessing_context = (multiprocessing.get_context(multiprocessing_context)
                                        if multiprocessing_context is None or isinstance(multiprocessing_context, str)
                                        else multiprocessing_context)
        self.persistent_workers = persistent_workers
        self._pool = None  # the persistent workers, once started

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self):
        if self.is_iterable:
            length = len(self.dataset)  # TypeError when the dataset has no len, as in PyTorch
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else -(-length // self.batch_size)
            return length
        return len(self._index_sampler)

    def _fetcher(self):
        return _Fetcher(self.dataset, self.is_iterable, self._auto_collation, self.collate_fn, self.drop_last)

    def __iter__(self):
        if self.num_workers == 0:
            return _single_process_batches(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self, _WorkerPool(self))
        if self._pool is None or not self._pool.alive():
            self._pool = _WorkerPool(self)
        return _MultiProcessIter(self, self._pool)


def _single_process_batches(loader):
    fetcher = loader._fetcher()
    fetcher.restart()
    if loader.is_iterable:
        while True:
            try:
                yield fetcher.fetch(loader.batch_size)
            except StopIteration:
                return
    for what in loader._index_sampler:
        yield fetcher.fetch(what)


class _WorkerPool:
    """The worker processes of one DataLoader (for one pass, or for all with persistent_workers), each with its own
    task queue, all answering on one result queue."""

    def __init__(self, loader):
        ctx = loader.multiprocessing_context
        # The workers' seeds come from Orchard's generator, so orchard.manual_seed makes them repeatable.
        base_seed = int(_draws.integers(2**53, 1)[0])
        self.epoch = 0
        self.result_queue = ctx.Queue()
        self.index_queues, self.workers = [], []
        for worker_id in range(loader.num_workers):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()  # exiting never waits for tasks no worker will read
            worker = ctx.Process(target=worker_loop, daemon=True,
                                 args=(loader._fetcher(), index_queue, self.result_queue, worker_id, loader.num_workers,
                                       base_seed + worker_id, loader.worker_init_fn))
            worker.start()
            self.index_queues.append(index_queue)
            self.workers.append(worker)

    def alive(self):
        return self.workers and all(w.is_alive() for w in self.workers)

    def check_alive(self):
        for w in self.workers:
            if not w.is_alive():
                raise RuntimeError(f"DataLoader worker (pid {w.pid}) exited unexpectedly with exit code {w.exitcode}")

    def shutdown(self):
        if not self.workers:
            return
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):  # a closed queue: the worker is gone anyway
                pass
        for w in self.workers:
            w.join(_JOIN_TIMEOUT_S)
            if w.is_alive():
                w.terminate()
                w.join()
        for q in self.index_queues:
            q.close()
        self.result_queue.close()
        self.result_queue.cancel_join_thread()
        self.workers, self.index_queues = [], []

    def __del__(self):
        self.shutdown()


class _MultiProcessIter:
    """One pass over the loader's batches, read by the pool's workers and returned in the order they were asked:
    task i goes to a worker, up to prefetch_factor per worker are in flight, and answers that arrive early wait
    in `ready` until their turn."""

    def __init__(self, loader, pool):
        self.loader, self.pool = loader, pool
        pool.epoch += 1
        self.epoch = pool.epoch
        self.tasks = iter(loader._index_sampler)
        self.active = list(range(len(pool.workers)))  # workers still serving (an IterableDataset's may run out)
        self.next_worker = 0
        self.sent = self.received = 0
        self.ready = {}  # index -> answer, arrived before its turn
        self.worker_of = {}  # index -> worker, of the tasks in flight
        self.finished = False
        for _ in range(loader.prefetch_factor * len(pool.workers)):
            self._send()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def _send(self):
        """Gives the next task to the next worker still serving; False when there is none."""
        if not self.active:
            return False
        what = self.loader.batch_size if self.loader.is_iterable else next(self.tasks, _DONE)
        if what is _DONE:
            return False
        worker = self.active[self.next_worker % len(self.active)]
        self.next_worker += 1
        self.pool.index_queues[worker].put((self.epoch, self.sent, what))
        self.worker_of[self.sent] = worker
        self.sent += 1
        return True

    def __next__(self):
        while not self.finished:
            if self.received == self.sent:
                self._finish()
                break
            answer = self.ready.pop(self.received) if self.received in self.ready else self._receive()
            if answer is None:
                continue
            index = self.received
            worker = self.worker_of.pop(index)
            self.received += 1
            if isinstance(answer, IterableEnd):
                if worker in self.active:
                    self.active.remove(worker)
                continue
            self._send()
            if isinstance(answer, ExceptionWrapper):
                if not self.loader.persistent_workers:
                    self._finish()
                answer.reraise()
            return unpack(answer)
        raise StopIteration

    def _receive(self):
        """The answer to task `received` once it arrives (answers to later tasks are kept in `ready`); None when
        another one arrived first."""
        deadline = time.monotonic() + self.loader.timeout if self.loader.timeout > 0 else None
        while True:
            wait = _LIVENESS_POLL_S if deadline is None else min(_LIVENESS_POLL_S, deadline - time.monotonic())
            try:
                epoch, index, answer = self.pool.result_queue.get(timeout=max(wait, 0))
            except queue.Empty:
                self.pool.check_alive()
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"DataLoader timed out after {self.loader.timeout} seconds") from None
                continue
            if epoch != self.epoch:  # left over from an earlier pass of persistent workers
                continue
            if index == self.received:
                return answer
            self.ready[index] = answer
            return None

    def _finish(self):
        self.finished = True
        if not self.loader.persistent_workers:
            self.pool.shutdown()

    def __del__(self):
        if not self.finished:
            self._finish()


_DONE = object()
