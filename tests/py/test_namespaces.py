"""orchard.cuda, orchard.backends and orchard.compile: the namespaces PyTorch scripts touch even on a CPU run."""
import os
import subprocess
import sys
import warnings

import pytest
import torch

import orchard as oc
from orchard import _compile


def test_cuda_starts_on_first_use_only():
    # A fresh process: importing Orchard, CPU work and emptying caches leave the driver alone; asking
    # whether the device is available starts it where there is one.
    code = ("import orchard as oc; oc.empty_cache(); oc.ones(2) + 1; assert not oc.cuda.is_initialized(); "
            "print(oc.cuda.is_available(), oc.cuda.is_initialized())")
    available, initialized = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split()
    assert initialized == available


@pytest.mark.skipif(oc.cuda.is_available(), reason="what a machine without a CUDA device answers")
def test_cuda_reports_no_device_and_its_housekeeping_does_nothing():
    assert oc.cuda.is_available() is False and oc.cuda.is_initialized() is False
    assert oc.cuda.device_count() == 0 and oc.cuda.is_bf16_supported() is False
    oc.manual_seed(3)
    expected = oc.rand(4).tolist()
    oc.manual_seed(3)
    oc.cuda.manual_seed(7)  # seeds no CUDA generator: Orchard's draws are unchanged
    oc.cuda.manual_seed_all(7)
    oc.cuda.synchronize()
    oc.cuda.empty_cache()
    assert oc.rand(4).tolist() == expected
    with pytest.raises(type(_torch_error(lambda: torch.cuda.manual_seed("a")))):
        oc.cuda.manual_seed("a")


@pytest.mark.skipif(oc.cuda.is_available(), reason="what a machine without a CUDA device answers")
def test_cuda_events_need_the_device():
    with pytest.raises(RuntimeError, match="'cuda' is not available"):
        oc.cuda.Event(enable_timing=True)
    with pytest.raises(RuntimeError, match="'cpu' has no events"):
        oc._core._make_event("cpu", True, False)


@pytest.mark.skipif(not oc.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_events_mark_poll_and_time_the_queue():
    start, end, untimed = oc.cuda.Event(enable_timing=True), oc.cuda.Event(enable_timing=True), oc.cuda.Event()
    assert start.query() and untimed.query()  # never recorded: nothing to wait for
    untimed.synchronize()
    x = oc.randn(2048, 2048, device="cuda")
    start.record()
    for _ in range(20):
        x = x @ x / 2048
    end.record()
    end.wait()
    end.synchronize()
    assert end.query()
    assert 0 < start.elapsed_time(end) < 60_000
    untimed.record()
    with pytest.raises(RuntimeError, match="enable_timing=True"):
        start.elapsed_time(untimed)
    with pytest.raises(RuntimeError, match="must be recorded"):
        oc.cuda.Event(enable_timing=True).elapsed_time(end)
    with pytest.raises(TypeError, match="expected an orchard.cuda.Stream"):
        start.record(stream=object())
    with pytest.raises(ValueError, match="interprocess"):
        oc.cuda.Event(interprocess=True)


@pytest.mark.skipif(not oc.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_profile_tables_gpu_time_by_kernel(tmp_path):
    table = tmp_path / "kernels.txt"
    code = ("import orchard as oc; x = oc.randn(512, 512, device='cuda'); y = (x @ x + 1).sum(); "
            "oc.cuda.synchronize()")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "ORCHARD_CUDA_KERNEL_PROFILE": str(table)})
    header, *rows = table.read_text().splitlines()
    assert header.split() == ["total", "ms", "calls", "mean", "us", "median", "us", "kernel"]
    kernels = {row.split()[4]: float(row.split()[0]) for row in rows}
    assert "matmul_tiled_float32" in kernels and all(ms >= 0 for ms in kernels.values())
    totals = [float(row.split()[0]) for row in rows]
    assert totals == sorted(totals, reverse=True)


def _torch_error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what the test compares
        return e
    raise AssertionError("PyTorch raised nothing")


def test_mps_is_the_metal_device():
    assert oc.backends.mps.is_available() is oc.metal.is_available()
    assert oc.backends.mps.is_built() is oc.metal.is_available()


def test_backend_flags_are_settable_and_read_back():
    for owner, name in ((oc.backends.cuda.matmul, "allow_tf32"), (oc.backends.cudnn, "allow_tf32"),
                        (oc.backends.cudnn, "benchmark"), (oc.backends.cudnn, "deterministic")):
        saved = getattr(owner, name)
        torch_owner = torch.backends.cuda.matmul if owner is oc.backends.cuda.matmul else torch.backends.cudnn
        assert type(saved) is bool and saved == getattr(torch_owner, name), name  # PyTorch's defaults
        setattr(owner, name, not saved)
        assert getattr(owner, name) is (not saved)
        setattr(owner, name, saved)
    assert oc.backends.cudnn.is_available() is False


def test_float32_matmul_precision_is_accepted_as_pytorch():
    assert oc.get_float32_matmul_precision() == torch.get_float32_matmul_precision() == "highest"
    oc.set_float32_matmul_precision("high")
    assert oc.get_float32_matmul_precision() == "high"
    with pytest.warns(UserWarning, match="not one of"):
        oc.set_float32_matmul_precision("fastest")  # PyTorch warns and ignores it
    assert oc.get_float32_matmul_precision() == "high"
    oc.set_float32_matmul_precision("highest")


def test_allow_tf32_is_the_float32_matmul_precision_as_in_pytorch():
    matmul = oc.backends.cuda.matmul
    try:
        matmul.allow_tf32 = True
        assert oc.get_float32_matmul_precision() == "high"
        oc.set_float32_matmul_precision("medium")
        assert matmul.allow_tf32 is True
        oc.set_float32_matmul_precision("highest")
        assert matmul.allow_tf32 is False
    finally:
        oc.set_float32_matmul_precision("highest")


@pytest.fixture
def fresh_compile_warning(monkeypatch):
    monkeypatch.setattr(_compile, "_warned", False)


def test_compile_returns_the_model_and_warns_once(fresh_compile_warning):
    model = oc.nn.Linear(2, 3)
    with pytest.warns(UserWarning, match="eagerly"):
        assert oc.compile(model) is model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert oc.compile(model, mode="max-autotune", fullgraph=True, dynamic=False, backend="inductor",
                          options=None) is model


def test_compile_as_a_decorator(fresh_compile_warning):
    with pytest.warns(UserWarning):
        @oc.compile
        def double(x):
            return 2 * x

    @oc.compile(mode="reduce-overhead")
    def triple(x):
        return 3 * x

    assert double(oc.tensor(2.0)).item() == 4.0 and triple(oc.tensor(2.0)).item() == 6.0


def test_compile_disabled_does_not_warn(fresh_compile_warning):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert oc.compile(len, disable=True) is len


def test_compile_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="module or a function"):
        oc.compile(5)  # (PyTorch raises AssertionError; a wrong argument's type is a TypeError here)
    with pytest.raises(TypeError, match="mode"):
        oc.compile(len, mode=3)


@pytest.mark.parametrize("usage", ["with", "decorator", "bare decorator"])
def test_inference_mode_records_no_graph(usage):
    x = oc.ones(2, requires_grad=True)
    if usage == "with":
        with oc.inference_mode():
            y = x * 2
    elif usage == "decorator":
        y = oc.inference_mode()(lambda: x * 2)()
    else:
        @oc.inference_mode
        def double():
            return x * 2
        y = double()
    assert not y.requires_grad and oc.is_grad_enabled()
    with oc.inference_mode(False):
        assert (x * 2).requires_grad


def test_distributed_reports_no_process_group():
    import importlib.util
    assert oc.distributed.is_available() is (importlib.util.find_spec("mpi4py") is not None)  # MPI is the backend
    assert oc.distributed.is_initialized() is False
    assert torch.distributed.is_initialized() is False  # PyTorch's answer in a single process


def test_cuda_libraries_are_found_in_the_nvidia_wheels(tmp_path, monkeypatch):
    from orchard.cuda import _libraries
    for wheel, name in (("cublas", "libcublas.so.12"), ("cu13", "libcublas.so.13")):  # CUDA 12's and 13's layouts
        (tmp_path / "nvidia" / wheel / "lib").mkdir(parents=True)
        (tmp_path / "nvidia" / wheel / "lib" / name).write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nvidia", raising=False)
    environ = {"ORCHARD_NVRTC_LIBRARY": "/set/by/the/user.so"}
    _libraries.configure(environ)
    assert environ["ORCHARD_CUBLAS_LIBRARY"] == str(tmp_path / "nvidia" / "cublas" / "lib" / "libcublas.so.12")
    assert environ["ORCHARD_NVRTC_LIBRARY"] == "/set/by/the/user.so"  # a variable already set is kept
