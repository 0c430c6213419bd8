"""orchard.nn.functional and the layers, against torch: values, gradients, shapes, dtypes and error
types, on every device."""
import warnings

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import nn
from orchard.nn import functional as F

TF = torch.nn.functional


def pair(array, device, requires_grad=False):
    """The same values as an orchard tensor on device and a torch tensor."""
    ours = oc.tensor(array, device=device)
    theirs = torch.tensor(array)
    if requires_grad:
        ours.requires_grad_()
        theirs.requires_grad_()
    return ours, theirs


def close(ours, theirs, rtol=1e-5, atol=1e-6):
    theirs = theirs.detach()
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
    np.testing.assert_allclose(ours.detach().cpu().numpy(), theirs.numpy(), rtol=rtol, atol=atol)


def check_with_grad(fn_ours, fn_theirs, arrays, device, rtol=1e-5, atol=1e-6):
    """Compares fn's value and the gradients of sum(fn * w) for every float input."""
    pairs = [pair(a, device, requires_grad=a.dtype.kind == "f") for a in arrays]
    out, expected = fn_ours(*[p[0] for p in pairs]), fn_theirs(*[p[1] for p in pairs])
    close(out, expected, rtol, atol)
    if not expected.requires_grad:
        return
    weight = np.random.default_rng(1).standard_normal(tuple(expected.shape)).astype(np.float32)
    (out * oc.tensor(weight, device=device)).sum().backward()
    (expected * torch.tensor(weight)).sum().backward()
    for ours, theirs in pairs:
        if theirs.requires_grad:
            close(ours.grad, theirs.grad, rtol, atol)


RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 5)).astype(np.float32)


@pytest.mark.parametrize("name", ["relu", "silu", "tanh", "sigmoid", "gelu"])
def test_activations(device, name):
    check_with_grad(getattr(F, name), getattr(TF, name), [X], device)


@pytest.mark.parametrize("name", ["relu", "silu"])
def test_inplace_activations_write_into_the_input(device, name):
    ours, theirs = pair(X, device)
    assert getattr(F, name)(ours, inplace=True) is ours
    getattr(TF, name)(theirs, inplace=True)
    close(ours, theirs)

    def on_intermediate(functional):  # overwrites a result that autograd recorded
        def fn(x):
            y = x * 2
            getattr(functional, name)(y, inplace=True)
            return y
        return fn
    check_with_grad(on_intermediate(F), on_intermediate(TF), [X], device)


@pytest.mark.parametrize("module", ["ReLU", "SiLU", "Tanh", "Sigmoid", "GELU", "Identity"])
def test_activation_modules(device, module):
    ours, theirs = pair(X, device)
    close(getattr(nn, module)()(ours), getattr(torch.nn, module)()(theirs))


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_softmax_and_module(device, dim):
    ours, theirs = pair(X, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        close(F.softmax(ours, dim), TF.softmax(theirs, dim))
        close(F.log_softmax(ours, dim), TF.log_softmax(theirs, dim))
        close(nn.Softmax(dim)(ours), torch.nn.Softmax(dim)(theirs))
        if device == "cpu":
            close(F.softmax(ours, dim, dtype=oc.float64), TF.softmax(theirs, dim, dtype=torch.float64))
    implicit = [w for w in caught if "Implicit dimension choice" in str(w.message)]
    assert len(implicit) == (0 if dim is not None else 6 + 2 * (device == "cpu"))
    assert all(w.filename == __file__ for w in implicit if "torch" not in str(w.filename))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_and_module(device, reduction):
    target = RNG.standard_normal(X.shape).astype(np.float32)
    check_with_grad(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                    lambda a, b: TF.mse_loss(a, b, reduction=reduction), [X, target], device)
    close(nn.MSELoss(reduction=reduction)(*[oc.tensor(a, device=device) for a in (X, target)]),
          torch.nn.MSELoss(reduction=reduction)(torch.tensor(X), torch.tensor(target)))
    weight = RNG.uniform(0, 2, X.shape).astype(np.float32)
    check_with_grad(lambda a, b, w: F.mse_loss(a, b, reduction=reduction, weight=w),
                    lambda a, b, w: TF.mse_loss(a, b, reduction=reduction, weight=w), [X, target, weight], device)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(oc.tensor(X), oc.tensor(target), reduction="bad")
    with pytest.raises(ValueError, match="same size"):
        F.mse_loss(oc.tensor(X), oc.tensor(target), weight=oc.ones(5))


CE_CASES = {
    "2d": ((6, 5), (6,)),
    "class dim 1": ((3, 5, 4), (3, 4)),
    "two extra dims": ((2, 5, 3, 2), (2, 3, 2)),
    "unbatched": ((5,), ()),
}


def class_targets(shape, classes, ignore_index=None):
    target = RNG.integers(0, classes, shape)
    if ignore_index is not None and target.size:
        target.reshape(-1)[0] = ignore_index
    return target


@pytest.mark.parametrize("case", CE_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", ["plain", "weight", "label_smoothing", "both", "ignore_index"])
def test_cross_entropy_and_nll_loss(device, case, reduction, options):
    input_shape, target_shape = CE_CASES[case]
    logits = RNG.standard_normal(input_shape).astype(np.float32)
    target = class_targets(target_shape, 5, ignore_index=-1 if options == "ignore_index" and target_shape else None)
    weight = RNG.uniform(0.5, 2, 5).astype(np.float32)
    kwargs = dict(reduction=reduction)
    if options == "ignore_index":
        kwargs["ignore_index"] = -1
    if options in ("label_smoothing", "both"):
        kwargs["label_smoothing"] = 0.2
    with_weight = options in ("weight", "both")

    def ours(x, t):
        return F.cross_entropy(x, t, weight=oc.tensor(weight, device=device) if with_weight else None, **kwargs)

    def theirs(x, t):
        return TF.cross_entropy(x, t, weight=torch.tensor(weight) if with_weight else None, **kwargs)

    check_with_grad(ours, theirs, [logits, target], device)
    if "label_smoothing" not in kwargs:
        logp = TF.log_softmax(torch.tensor(logits), 0 if logits.ndim == 1 else 1).numpy()
        check_with_grad(lambda x, t: F.nll_loss(x, t, weight=oc.tensor(weight, device=device) if with_weight else None,
                                                **kwargs),
                        lambda x, t: TF.nll_loss(x, t, weight=torch.tensor(weight) if with_weight else None, **kwargs),
                        [logp, target], device)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_probability_targets(device, label_smoothing, reduction):
    logits = RNG.standard_normal((4, 5, 3)).astype(np.float32)
    probs = RNG.dirichlet(np.ones(5), (4, 3)).transpose(0, 2, 1).astype(np.float32)
    weight = RNG.uniform(0.5, 2, 5).astype(np.float32)
    check_with_grad(lambda x, p: F.cross_entropy(x, p, weight=oc.tensor(weight, device=device), reduction=reduction,
                                                 label_smoothing=label_smoothing),
                    lambda x, p: TF.cross_entropy(x, p, weight=torch.tensor(weight), reduction=reduction,
                                                  label_smoothing=label_smoothing),
                    [logits, probs], device)


def test_cross_entropy_loss_module(device):
    logits, target = RNG.standard_normal((6, 5)).astype(np.float32), class_targets((6,), 5)
    weight = RNG.uniform(0.5, 2, 5).astype(np.float32)
    ours = nn.CrossEntropyLoss(weight=oc.tensor(weight, device=device), label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), label_smoothing=0.1)
    close(ours(oc.tensor(logits, device=device), oc.tensor(target, device=device)),
          theirs(torch.tensor(logits), torch.tensor(target)))
    assert "weight" in ours.state_dict()


def errors_match(fn_ours, fn_theirs):
    """Both raise, the same exception type."""
    with pytest.raises(Exception) as theirs:
        fn_theirs()
    with pytest.raises(Exception) as ours:
        fn_ours()
    assert ours.type is theirs.type, f"{ours.type.__name__}: {ours.value} (torch: {theirs.type.__name__})"


ERROR_CALLS = {
    "cross_entropy batch mismatch": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1])),
    "cross_entropy target too large": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1, 4])),
    "cross_entropy negative target": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1, -1])),
    "cross_entropy label_smoothing range": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1, 2]),
                                                                          label_smoothing=1.5),
    "cross_entropy weight size": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1, 2]),
                                                                weight=lib.ones(2)),
    "cross_entropy reduction": lambda lib, F: F.cross_entropy(lib.zeros(3, 4), lib.tensor([0, 1, 2]),
                                                              reduction="foo"),
    "cross_entropy target shape": lambda lib, F: F.cross_entropy(lib.zeros(3, 4, 5), lib.tensor([0, 1, 2])),
    "nll_loss target too large": lambda lib, F: F.nll_loss(lib.zeros(3, 4), lib.tensor([0, 1, 7])),
    "nll_loss batch mismatch": lambda lib, F: F.nll_loss(lib.zeros(3, 4), lib.tensor([0, 1])),
    "one_hot negative": lambda lib, F: F.one_hot(lib.tensor([1, -2])),
    "one_hot too large": lambda lib, F: F.one_hot(lib.tensor([1, 2]), 2),
    "one_hot empty": lambda lib, F: F.one_hot(lib.tensor([], dtype=lib.int64)),
    "one_hot int32": lambda lib, F: F.one_hot(lib.tensor([1, 2], dtype=lib.int32)),
    "pad odd length": lambda lib, F: F.pad(lib.zeros(2, 3), (1,)),
    "pad too long": lambda lib, F: F.pad(lib.zeros(2, 3), (1, 1, 1, 1, 1, 1)),
    "pad unknown mode": lambda lib, F: F.pad(lib.zeros(2, 3), (1, 1), mode="foo"),
    "pad negative size": lambda lib, F: F.pad(lib.zeros(2, 3), (-3, -3)),
    "Dropout p": lambda lib, F: lib.nn.Dropout(1.5),
    "Embedding padding_idx": lambda lib, F: lib.nn.Embedding(3, 4, padding_idx=5),
}


@pytest.mark.parametrize("name", ERROR_CALLS)
def test_errors_have_torch_types(name):
    call = ERROR_CALLS[name]
    errors_match(lambda: call(oc, F), lambda: call(torch, TF))


def test_one_hot(device):
    for values, classes in (([0, 3, 1], -1), ([[1, 2], [0, 0]], 4), ([], 3)):
        ours, theirs = pair(np.array(values, dtype=np.int64), device)
        close(F.one_hot(ours, classes), TF.one_hot(theirs, classes))


@pytest.mark.parametrize("pads", [(1, 2), (0, 0), (1, 0, 2, 1), (-1, 2, 0, -1), (1, 1, 1, 1, 1, 1)])
@pytest.mark.parametrize("value", [None, 2.5])
def test_pad_constant(device, pads, value):
    check_with_grad(lambda x: F.pad(x, pads, value=value), lambda x: TF.pad(x, pads, value=value),
                    [RNG.standard_normal((2, 3, 4)).astype(np.float32)], device)


def test_pad_other_modes_are_not_implemented():
    for mode in ("reflect", "replicate", "circular"):
        with pytest.raises(NotImplementedError, match=mode):
            F.pad(oc.zeros(1, 2, 3), (1, 1), mode=mode)


def test_pad_returns_a_new_tensor():
    x = oc.zeros(2, 3)
    assert not F.pad(x, (0, 0)).is_alias_of(x) and not F.pad(x, (-1, 0)).is_alias_of(x)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_module(device, bias, affine):
    ours = nn.LayerNorm(5, elementwise_affine=affine, bias=bias).to(device)
    theirs = torch.nn.LayerNorm(5, elementwise_affine=affine, bias=bias)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    if affine:
        w = RNG.standard_normal(5).astype(np.float32)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    check_with_grad(ours, theirs, [x], device, rtol=1e-4, atol=1e-5)
    check_with_grad(lambda x: F.layer_norm(x, (5,)), lambda x: TF.layer_norm(x, (5,)), [x], device, 1e-4, 1e-5)


def test_linear_and_embedding_default_initialisation_match_torch_statistics():
    oc.manual_seed(0)
    linear = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    for p in (linear.weight, linear.bias):
        values = p.detach().numpy()
        assert values.min() >= -bound and values.max() <= bound and values.max() > 0.95 * bound
    assert abs(linear.weight.detach().numpy().std() - bound / np.sqrt(3)) < 0.01 * bound
    assert nn.Linear(3, 2, bias=False).bias is None and "bias" in nn.Linear(3, 2, bias=False)._parameters
    emb = nn.Embedding(500, 200, padding_idx=-1)
    values = emb.weight.detach().numpy()
    assert emb.padding_idx == 499 and not values[499].any()
    assert abs(values[:499].std() - 1) < 0.01 and abs(values[:499].mean()) < 0.01


def test_linear_module(device):
    theirs = torch.nn.Linear(5, 3)
    ours = nn.Linear(5, 3, device=device)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    check_with_grad(ours, theirs, [X], device, rtol=1e-4, atol=1e-5)
    assert nn.Linear(2, 2, dtype=oc.float64).weight.dtype == oc.float64


def test_embedding_padding_idx_gets_no_gradient(device):
    theirs = torch.nn.Embedding(6, 3, padding_idx=2)
    ours = nn.Embedding(6, 3, padding_idx=2).to(device)
    ours.load_state_dict({"weight": theirs.weight.detach().numpy() + 1})  # a non-zero padding row too
    with torch.no_grad():
        theirs.weight += 1
    check_with_grad(ours, theirs, [np.array([[2, 1, 2], [0, 5, 2]])], device)
    close(ours.weight.grad, theirs.weight.grad)
    frozen = nn.Embedding.from_pretrained(oc.ones(4, 2))
    assert not frozen.weight.requires_grad and frozen(oc.tensor([1])).shape == (1, 2)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(3, 2, max_norm=1.0)


def test_dropout_module_and_inplace(device):
    drop = nn.Dropout(0.5)
    x = oc.ones(1000, device=device)
    kept = drop(x).cpu().numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0} and 0.4 < (kept == 0).mean() < 0.6
    assert drop.eval()(x) is x or drop(x).is_alias_of(x)
    y = oc.ones(1000, device=device)
    assert F.dropout(y, 0.5, training=True, inplace=True) is y
    assert set(np.unique(y.cpu().numpy())) == {0.0, 2.0}
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 2.0)


def test_scaled_dot_product_attention_signature_matches_torch(device):
    q, k, v = (RNG.standard_normal((1, 2, 4, 8)).astype(np.float32) for _ in range(3))
    check_with_grad(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                                   is_causal=True, scale=0.3),
                    lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                                    is_causal=True, scale=0.3),
                    [q, k, v], device, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("target", [1, [1]])
def test_unbatched_class_losses_take_a_0d_or_one_element_target(device, name, reduction, target):
    logits = np.random.default_rng(4).standard_normal(5).astype(np.float32)
    expected = getattr(torch.nn.functional, name)(torch.tensor(logits), torch.tensor(target), reduction=reduction)
    got = getattr(F, name)(oc.tensor(logits, device=device), oc.tensor(target, device=device), reduction=reduction)
    assert tuple(got.shape) == tuple(expected.shape)
    np.testing.assert_allclose(got.cpu().numpy(), expected.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="1D target must have size 1, but got target size: 2"):
        getattr(F, name)(oc.tensor(logits, device=device), oc.tensor([1, 2], device=device))
