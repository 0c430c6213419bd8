"""orchard.cuda: what PyTorch scripts ask of torch.cuda.

device="cuda" runs Orchard's kernels on an NVIDIA GPU where the machine has one: the Metal runtime's plans
on the CUDA driver, the same kernels compiled by NVRTC, float products through cuBLAS (`pip install
orchard[cuda]` brings both; _libraries.py says how they are found). The driver starts on the first call
that needs the device. Elsewhere the probes say there is none and the housekeeping calls have nothing to
do, so scripts that pick "cuda" when available pick the CPU.
"""
from .. import _core
from . import _libraries

_libraries.configure()

__all__ = ["Event", "device_count", "empty_cache", "is_available", "is_bf16_supported", "is_initialized",
           "manual_seed", "manual_seed_all", "synchronize"]


def is_available():
    """Whether device="cuda" works: an NVIDIA GPU with its driver, and NVRTC to compile the kernels."""
    return _core._cuda_is_available()


def is_initialized():
    """Whether the CUDA device has started: Orchard starts the driver on the first call that needs it."""
    return _core._cuda_is_initialized()


def device_count():
    """1 with a CUDA device (Orchard uses the first GPU), else 0."""
    return int(is_available())


def is_bf16_supported(including_emulation=True):
    """Whether bfloat16 runs on the CUDA device (it does wherever there is one: sm_80 and later)."""
    del including_emulation
    return is_available()


def manual_seed(seed):
    """orchard.manual_seed seeds every Orchard device, the CUDA one too; this only checks the argument."""
    int(seed)  # PyTorch accepts anything int() takes; the same mistakes raise here


def manual_seed_all(seed):
    manual_seed(seed)


def synchronize(device=None):
    """Waits for the work queued on the CUDA device (nothing to wait for without one)."""
    del device
    if is_available():
        _core.synchronize("cuda")


class Event:
    """torch.cuda.Event: a marker recorded after the work queued so far on the CUDA device, to poll, wait
    for, or time (`enable_timing`); `blocking` waits yield the CPU instead of spinning. Orchard runs all
    CUDA work on one stream, the legacy default stream, so `stream` arguments may only be None and
    `wait` has nothing to order. elapsed_time waits for the end event (PyTorch raises if it has not
    finished). Raises RuntimeError where there is no CUDA device."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        if interprocess:
            raise ValueError("orchard.cuda.Event: interprocess events are not supported")
        self._event = _core._make_event("cuda", bool(enable_timing), bool(blocking))

    @staticmethod
    def _one_stream(stream):
        if stream is not None:
            raise TypeError(f"orchard.cuda.Event: stream must be None (Orchard runs CUDA work on one stream), got {stream!r}")

    def record(self, stream=None):
        self._one_stream(stream)
        self._event.record()

    def wait(self, stream=None):
        """Makes later work wait for this event: on Orchard's one stream it already does."""
        self._one_stream(stream)

    def query(self):
        return self._event.query()

    def synchronize(self):
        self._event.synchronize()

    def elapsed_time(self, end_event):
        """Milliseconds from this event's record to end_event's."""
        if not isinstance(end_event, Event):
            raise TypeError(f"elapsed_time: end_event must be an orchard.cuda.Event, got {type(end_event).__name__}")
        return self._event.elapsed_ms(end_event._event)


def empty_cache():
    """Returns cached device memory to the system."""
    _core.empty_cache()


from . import amp  # noqa: E402  (torch.cuda.amp.GradScaler, as older scripts spell it)
