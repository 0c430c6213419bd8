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

__all__ = ["Event", "ExternalStream", "Stream", "StreamContext", "current_stream", "default_stream", "device_count", "empty_cache",
           "is_available", "is_bf16_supported", "is_initialized", "manual_seed", "manual_seed_all", "set_stream",
           "stream", "synchronize"]


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


class Stream:
    """torch.cuda.Stream: a queue of CUDA work that runs in order, apart from other streams' unless events
    order them (wait_event, wait_stream). Streams come from a pool of 32 per priority reused
    round-robin, as PyTorch's, and are non-blocking: the default stream does not wait for them, nor
    they for it. `priority`: lower runs first, clamped to what the GPU offers. Memory allocated on a
    stream is reused only on that stream; a tensor used on another stream needs record_stream (or a
    synchronisation) before it is freed, as in PyTorch. Raises RuntimeError where there is no CUDA device."""

    def __init__(self, device=None, priority=0, **kwargs):
        _check_device(device, "Stream")
        if kwargs:
            raise TypeError(f"orchard.cuda.Stream: unexpected arguments {sorted(kwargs)}")
        self._stream = _core._pool_stream("cuda", int(priority))

    @classmethod
    def _of(cls, device_stream):
        s = cls.__new__(cls)
        s._stream = device_stream
        return s

    @property
    def cuda_stream(self):
        """The driver's handle (cudaStream_t) as an int: 0 for the default stream."""
        return self._stream.handle

    @property
    def device(self):
        from .. import device
        return device("cuda")

    def query(self):
        """Whether the work queued on this stream so far has finished."""
        return self._stream.query()

    def synchronize(self):
        """Waits for the work queued on this stream so far."""
        self._stream.synchronize()

    def wait_event(self, event):
        """Work queued on this stream from now on waits for the work before the event's last record."""
        if not isinstance(event, Event):
            raise TypeError(f"wait_event: expected an orchard.cuda.Event, got {type(event).__name__}")
        self._stream.wait(event._event)

    def wait_stream(self, stream):
        """Work queued on this stream from now on waits for the work queued on `stream` so far."""
        self.wait_event(_checked_stream(stream, "wait_stream").record_event())

    def record_event(self, event=None):
        """Records `event` (a new one when None) after the work queued on this stream so far; returns it."""
        event = Event() if event is None else event
        event.record(self)
        return event

    def __eq__(self, other):
        return isinstance(other, Stream) and self.cuda_stream == other.cuda_stream

    def __hash__(self):
        return hash(("cuda", self.cuda_stream))

    def __repr__(self):
        return f"<orchard.cuda.{type(self).__name__} device=cuda:0 cuda_stream={self.cuda_stream:#x}>"


class ExternalStream(Stream):
    """torch.cuda.ExternalStream: a stream made elsewhere (by PyTorch, or cudaStreamCreate), taken by its
    handle (`stream.cuda_stream`; 0 is the default stream). Its owner must keep it alive while Orchard
    queues work on it or caches memory for it."""

    def __init__(self, stream_ptr, device=None, **kwargs):
        _check_device(device, "ExternalStream")
        if kwargs:
            raise TypeError(f"orchard.cuda.ExternalStream: unexpected arguments {sorted(kwargs)}")
        if not isinstance(stream_ptr, int) or isinstance(stream_ptr, bool) or stream_ptr < 0:
            raise TypeError(f"orchard.cuda.ExternalStream: stream_ptr must be a stream handle (an int >= 0), got {stream_ptr!r}")
        self._stream = _core._external_stream("cuda", stream_ptr)


def _check_device(device, what):
    if device is None:
        return
    from .. import device as device_type
    if device_type(f"cuda:{device}" if isinstance(device, int) else device).type != "cuda":
        raise ValueError(f"orchard.cuda.{what}: expected a CUDA device (cuda, cuda:0 or 0), got {device!r}")


def _checked_stream(stream, what):
    if not isinstance(stream, Stream):
        raise TypeError(f"{what}: expected an orchard.cuda.Stream, got {type(stream).__name__}")
    return stream


def current_stream(device=None):
    """The calling thread's current stream, where Orchard queues its CUDA work (the default stream unless set)."""
    _check_device(device, "current_stream")
    return Stream._of(_core._current_stream("cuda"))


def default_stream(device=None):
    """The legacy default stream (cuda_stream 0), where CUDA work runs unless another stream is set."""
    _check_device(device, "default_stream")
    return Stream._of(_core._default_stream("cuda"))


def set_stream(stream):
    """Makes `stream` the calling thread's current stream (None: no change, as in PyTorch)."""
    if stream is not None:
        _core._set_stream("cuda", _checked_stream(stream, "set_stream")._stream)


class StreamContext:
    """`with orchard.cuda.stream(s):` queues the block's CUDA work on `s`, restoring the current stream
    after; a None stream changes nothing."""

    def __init__(self, stream):
        self.stream = None if stream is None else _checked_stream(stream, "orchard.cuda.stream")
        self._previous = None

    def __enter__(self):
        if self.stream is not None:
            self._previous = current_stream()
            set_stream(self.stream)
        return self.stream

    def __exit__(self, *exc):
        if self.stream is not None:
            set_stream(self._previous)
        return False


def stream(stream):
    """A context manager that makes `stream` current for its block (torch.cuda.stream)."""
    return StreamContext(stream)


class Event:
    """torch.cuda.Event: a marker recorded after the work queued so far on a stream, to poll, wait for,
    order another stream after, or time (`enable_timing`); `blocking` waits yield the CPU instead of
    spinning. elapsed_time waits for the end event (PyTorch raises if it has not finished). Raises
    RuntimeError where there is no CUDA device."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        if interprocess:
            raise ValueError("orchard.cuda.Event: interprocess events are not supported")
        self._event = _core._make_event("cuda", bool(enable_timing), bool(blocking))

    def record(self, stream=None):
        """Marks the work queued so far on `stream` (None: the current stream)."""
        self._event.record(None if stream is None else _checked_stream(stream, "Event.record")._stream)

    def wait(self, stream=None):
        """Makes work queued later on `stream` (None: the current stream) wait for this event's."""
        (current_stream() if stream is None else _checked_stream(stream, "Event.wait")).wait_event(self)

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
