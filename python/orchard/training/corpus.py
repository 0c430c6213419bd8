"""Byte-level training text: the standard library's own sources by default, or files the user names."""
import os
import sysconfig

import numpy as np

from .._tensor import tensor


def stdlib_sources(max_bytes):
    """The first max_bytes of the stdlib's *.py files, in sorted path order so every run sees the same text."""
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        paths.extend(os.path.join(directory, f) for f in sorted(files) if f.endswith(".py"))
    return read_files(sorted(paths), max_bytes)


def read_files(paths, max_bytes=None):
    chunks, total = [], 0
    for path in paths:
        with open(path, "rb") as f:
            chunks.append(f.read())
        total += len(chunks[-1])
        if max_bytes is not None and total >= max_bytes:
            break
    data = b"".join(chunks)[:max_bytes]
    if not data:
        raise ValueError(f"no training text found in {list(paths)[:3]}...")
    return np.frombuffer(data, dtype=np.uint8)


class ByteBatches:
    """Random windows of a byte stream, split into training and validation parts.

    Every tenth 64 KiB block goes to validation, so both parts sample the whole corpus (its tail alone can be
    a very different kind of text)."""

    def __init__(self, data, seq_len, block=65536, val_every=10):
        is_val = (np.arange(len(data)) // block) % val_every == val_every - 1
        if not is_val.any():
            is_val = np.arange(len(data)) >= len(data) * (val_every - 1) // val_every
        self.splits = {"train": data[~is_val], "val": data[is_val]}
        self.seq_len = seq_len
        for name, part in self.splits.items():
            if len(part) <= seq_len + 1:
                raise ValueError(f"the {name} split has {len(part)} bytes, fewer than seq_len + 2; "
                                 "give more text or a shorter --seq-len")

    def sample(self, split, batch_size, rng, device="cpu"):
        """(inputs, next-byte targets), both [batch_size, seq_len] int64."""
        data = self.splits[split]
        starts = rng.integers(0, len(data) - self.seq_len - 1, batch_size)
        windows = data[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64)
        return tensor(windows[:, :-1], device=device), tensor(windows[:, 1:], device=device)
