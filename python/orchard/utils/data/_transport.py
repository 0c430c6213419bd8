"""How batches travel from a DataLoader's worker processes to the main process: pickled, as multiprocessing
sends anything, between processes the DataLoader itself started. The worker pickles a batch itself (rather than
leaving it to the queue, which would drop what fails to pickle without a word) so that a failure reaches the
main process as an error. Files are never unpickled: orchard.load reads data only."""
import pickle

__all__ = ["pack", "picklable", "unpack"]


def pack(obj):
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data):
    return pickle.loads(data)


def picklable(obj):
    try:
        pack(obj)
        return True
    except Exception:  # noqa: BLE001 - any failure means: send something else
        return False
