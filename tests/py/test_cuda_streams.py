"""orchard.cuda streams as torch.cuda's: Stream, stream(), current_stream, events across streams, and the
caching allocator's per-stream pools with Tensor.record_stream. The device tests need a GPU (CI has none;
tools/run_cuda_tests.sh runs them on one)."""
import threading

import numpy as np
import pytest

import orchard as oc

needs_cuda = pytest.mark.skipif(not oc.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.skipif(oc.cuda.is_available(), reason="what a machine without a CUDA device answers")
def test_cuda_streams_need_the_device():
    for make in (oc.cuda.Stream, oc.cuda.current_stream, oc.cuda.default_stream):
        with pytest.raises(RuntimeError, match="'cuda' is not available"):
            make()
    with oc.cuda.stream(None) as entered:  # None changes nothing, so it needs no device
        assert entered is None
    oc.cuda.set_stream(None)


def test_cuda_stream_arguments_are_checked():
    with pytest.raises(TypeError, match="expected an orchard.cuda.Stream, got int"):
        oc.cuda.stream(3)
    with pytest.raises(TypeError, match="expected an orchard.cuda.Stream, got str"):
        oc.cuda.set_stream("s")
    with pytest.raises(TypeError, match="record_stream: expected an orchard.cuda.Stream, got NoneType"):
        oc.ones(2).record_stream(None)
    with pytest.raises(ValueError, match="expected a CUDA device"):
        oc.cuda.Stream(device="cpu")
    with pytest.raises(ValueError, match="unknown device 'cuda:1'"):
        oc.cuda.current_stream(1)


@needs_cuda
def test_cuda_current_stream_follows_the_context_per_thread():
    default = oc.cuda.default_stream()
    assert default.cuda_stream == 0 and oc.cuda.current_stream() == default
    s = oc.cuda.Stream(priority=-1)
    assert s != default and s.cuda_stream != 0 and s.device == "cuda" and hash(s) == hash(oc.cuda.Stream._of(s._stream))
    with oc.cuda.stream(s) as entered:
        assert entered is s and oc.cuda.current_stream() == s
        with oc.cuda.stream(None):
            assert oc.cuda.current_stream() == s
        seen = []  # another thread has its own current stream, the default one
        worker = threading.Thread(target=lambda: seen.append(oc.cuda.current_stream()))
        worker.start()
        worker.join()
        assert seen == [default]
    assert oc.cuda.current_stream() == default
    with pytest.raises(ZeroDivisionError), oc.cuda.stream(s):
        1 / 0
    assert oc.cuda.current_stream() == default
    oc.cuda.set_stream(s)
    assert oc.cuda.current_stream() == s
    oc.cuda.set_stream(default)
    with pytest.raises(TypeError, match="unexpected arguments"):
        oc.cuda.Stream(flavour=1)


@needs_cuda
def test_cuda_work_on_side_streams_matches_the_default_stream():
    rng = np.random.default_rng(0)
    x = oc.tensor(rng.standard_normal((512, 512)), dtype=oc.float32, device="cuda")
    q, k, v = (oc.tensor(rng.standard_normal((2, 4, 256, 64)), dtype=oc.bfloat16, device="cuda") for _ in range(3))
    attention = oc.nn.functional.scaled_dot_product_attention
    want_product, want_softmax = ((x @ x).sum(1)).cpu().numpy(), x.softmax(-1).cpu().numpy()
    want_attention = attention(q, k, v, is_causal=True).float().cpu().numpy()
    assert x.is_cuda and not oc.ones(1).is_cuda
    first, second = oc.cuda.Stream(), oc.cuda.Stream()
    for s in (first, second):
        s.wait_stream(oc.cuda.current_stream())  # x, q, k, v were written on the default stream
    with oc.cuda.stream(first):
        product = (x @ x).sum(1)  # cuBLAS and a reduction kernel
        softmax = x.softmax(-1)
    with oc.cuda.stream(second):
        attended = attention(q, k, v, is_causal=True)  # the native FlashAttention kernel
    for s in (first, second):
        oc.cuda.current_stream().wait_stream(s)
    np.testing.assert_allclose(product.cpu().numpy(), want_product, rtol=1e-6)
    np.testing.assert_array_equal(softmax.cpu().numpy(), want_softmax)
    np.testing.assert_array_equal(attended.float().cpu().numpy(), want_attention)
    first.synchronize()
    assert first.query() and second.query()


@needs_cuda
def test_cuda_events_order_and_time_streams():
    side = oc.cuda.Stream()
    x = oc.ones(2048, 2048, device="cuda")
    side.wait_event(oc.cuda.current_stream().record_event())
    start, end = oc.cuda.Event(enable_timing=True), oc.cuda.Event(enable_timing=True)
    start.record(side)
    with oc.cuda.stream(side):
        y = x
        for _ in range(8):
            y = (y @ x) / 2048  # every element stays 1
    end.record(side)
    end.wait()  # the current (default) stream waits for the side stream's work
    assert y.sum().item() == 2048 * 2048
    assert start.elapsed_time(end) > 0 and end.query()
    with pytest.raises(TypeError, match="Event.record: expected an orchard.cuda.Stream"):
        start.record(0)


@needs_cuda
def test_cuda_memory_freed_on_a_stream_is_reused_only_there():
    side = oc.cuda.Stream()
    with oc.cuda.stream(side):
        a = oc.empty(1 << 20, device="cuda")
        block = a.data_ptr()
        del a
    on_default = oc.empty(1 << 20, device="cuda")
    assert on_default.data_ptr() != block
    with oc.cuda.stream(side):
        assert oc.empty(1 << 20, device="cuda").data_ptr() == block


@needs_cuda
def test_cuda_record_stream_holds_memory_until_the_streams_work_is_done():
    side = oc.cuda.Stream()
    x = oc.full((2048, 2048), 1.0, device="cuda")
    side.wait_stream(oc.cuda.current_stream())
    with oc.cuda.stream(side):  # long work on the side stream reading x
        y = x @ x
        for _ in range(16):
            y = (y @ x) / 2048
    x.record_stream(side)
    block = x.data_ptr()
    del x
    # The default stream's next block of that size is x's; its fill must wait for the side stream.
    z = oc.full((2048, 2048), 7.0, device="cuda")
    assert z.data_ptr() == block
    oc.cuda.current_stream().wait_stream(side)
    np.testing.assert_array_equal(y.cpu().numpy(), np.full((2048, 2048), 2048.0, np.float32))
    assert z.sum().item() == 7.0 * 2048 * 2048
    with pytest.raises(RuntimeError, match="record_stream: expected a CUDA tensor"):
        oc.ones(2).record_stream(side)


def test_cuda_external_stream_arguments_are_checked():
    for bad in (-1, "0x10", 1.5, True):
        with pytest.raises(TypeError, match="stream_ptr must be a stream handle"):
            oc.cuda.ExternalStream(bad)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch's CUDA device")
    return torch


@needs_cuda
def test_cuda_external_streams_order_work_with_torchs():
    torch = _torch_cuda()
    side = torch.cuda.Stream()
    theirs = oc.cuda.ExternalStream(side.cuda_stream)
    assert theirs.cuda_stream == side.cuda_stream and theirs == oc.cuda.ExternalStream(side.cuda_stream)
    assert oc.cuda.ExternalStream(0) == oc.cuda.default_stream() and "ExternalStream" in repr(theirs)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        t = torch.full((2048, 2048), 2.0, device="cuda")
        for _ in range(8):
            t = t @ torch.eye(2048, device="cuda")  # work ahead of Orchard's on torch's stream
        with oc.cuda.stream(theirs):
            x = oc.from_dlpack(t) * 3
        back = torch.from_dlpack(x) + 1
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(back, torch.full_like(back, 7.0))


@needs_cuda
def test_cuda_bridge_runs_on_torchs_current_stream():
    torch = _torch_cuda()
    from orchard.experimental.torch import flash_attention
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
               for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    want_grads = torch.autograd.grad(want.float().square().sum(), (q, k, v))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = flash_attention(q, k, v, causal=True)
        grads = torch.autograd.grad(got.float().square().sum(), (q, k, v))
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, atol=5e-2, rtol=5e-2)
