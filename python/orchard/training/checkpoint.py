"""Training checkpoints that survive a kill at any moment and never run code when loaded.

Each checkpoint is a directory `checkpoint-<step>` in the run's directory: the model in HuggingFace's layout
(config.json, model.safetensors) and the trainer's state (optimizer moments, schedule, step, loss history, the
data sampler's position) written by orchard.save, safetensors and JSON only. It is written under a name ending
in `.incomplete`, flushed to disk (every file, then the directory), and only then renamed to its final name;
the previous checkpoint is deleted after that. A `checkpoint-<step>` directory is therefore always complete:
resuming takes the newest one, and anything ending in `.incomplete` is a leftover to delete.
"""
import os
import re
import shutil

from ..serialization import load, save as save_object

TRAINER_STATE = "trainer_state.safetensors"
_INCOMPLETE = ".incomplete"
_COMPLETE = re.compile(r"checkpoint-(\d+)")


def _sync(path):
    """Flushes a file's or directory's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path):
    """Deletes a checkpoint directory; renamed first, so that it never looks complete while half deleted."""
    doomed = path + _INCOMPLETE
    shutil.rmtree(doomed, ignore_errors=True)
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def complete(out_dir):
    """[(step, path)] of the complete checkpoints in out_dir, oldest first."""
    if not os.path.isdir(out_dir):
        return []
    found = [(int(m.group(1)), os.path.join(out_dir, name))
             for name in os.listdir(out_dir) if (m := _COMPLETE.fullmatch(name))]
    return sorted(found)


def remove_incomplete(out_dir):
    """Deletes what a killed save left behind."""
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if name.endswith(_INCOMPLETE) and _COMPLETE.fullmatch(name.removesuffix(_INCOMPLETE)):
                shutil.rmtree(os.path.join(out_dir, name))


def latest(out_dir):
    """The newest complete checkpoint's directory, or None."""
    found = complete(out_dir)
    return found[-1][1] if found else None


def save(out_dir, step, model, trainer_state):
    """Writes checkpoint-<step> (see the module's docstring) and then deletes the older ones; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, f"checkpoint-{step:08d}")
    partial = final + _INCOMPLETE
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    save_object(trainer_state, os.path.join(partial, TRAINER_STATE))
    for name in os.listdir(partial):
        _sync(os.path.join(partial, name))
    _sync(partial)
    older = [path for _, path in complete(out_dir)]
    os.rename(partial, final)
    _sync(out_dir)
    for path in older:
        _remove(path)
    return final


def load_trainer_state(checkpoint_dir, map_location=None):
    return load(os.path.join(checkpoint_dir, TRAINER_STATE), map_location=map_location)
