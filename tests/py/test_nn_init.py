"""orchard.nn.init against torch.nn.init: the formulas (gains, fans, bounds) exactly, the draws by their
statistics, in place under no_grad, on every device; seeded draws repeat."""
import math

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import nn

GAINS = [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
         ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None)]


@pytest.mark.parametrize("nonlinearity, param", GAINS)
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert nn.init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (4, 3, 2, 2)])
def test_fans_match_torch(shape):
    assert (nn.init._calculate_fan_in_and_fan_out(oc.zeros(*shape)) ==
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape)))


@pytest.mark.parametrize("call", [
    lambda lib: lib.nn.init.calculate_gain("foo"),
    lambda lib: lib.nn.init.calculate_gain("leaky_relu", "a"),
    lambda lib: lib.nn.init.xavier_uniform_(lib.zeros(3)),
    lambda lib: lib.nn.init.kaiming_uniform_(lib.zeros(3, 3), mode="x"),
    lambda lib: lib.nn.init.kaiming_normal_(lib.zeros(3)),
])
def test_errors_match_torch(call):
    with pytest.raises(Exception) as theirs:
        call(torch)
    with pytest.raises(Exception) as ours:
        call(oc)
    assert ours.type is theirs.type and str(ours.value) == str(theirs.value)


# (name, kwargs, expected (low, high) bounds or None, expected std)
def expectations(fan_in, fan_out):
    leaky = math.sqrt(2 / (1 + 0.01**2))
    return [
        ("uniform_", dict(a=-2.0, b=3.0), (-2.0, 3.0), 5 / math.sqrt(12)),
        ("normal_", dict(mean=1.0, std=0.5), None, 0.5),
        ("trunc_normal_", dict(mean=0.0, std=1.0, a=-1.0, b=1.5), (-1.0, 1.5), None),
        ("xavier_uniform_", dict(gain=2.0), None, 2 * math.sqrt(2 / (fan_in + fan_out))),
        ("xavier_normal_", dict(gain=0.5), None, 0.5 * math.sqrt(2 / (fan_in + fan_out))),
        ("kaiming_uniform_", dict(a=math.sqrt(5)), None, math.sqrt(2 / 6) / math.sqrt(fan_in)),
        ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), None, math.sqrt(2) / math.sqrt(fan_out)),
        ("kaiming_normal_", dict(), None, leaky / math.sqrt(fan_in)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_random_fills_have_the_expected_distribution(device, case):
    shape = (300, 200)
    name, kwargs, bounds, std = expectations(200, 300)[case]
    weight = nn.Parameter(oc.zeros(*shape, device=device))
    assert getattr(nn.init, name)(weight, **kwargs) is weight
    assert weight.is_leaf and weight.requires_grad and weight.grad_fn is None
    values = weight.detach().cpu().numpy().astype(np.float64)
    if bounds is not None:
        assert values.min() >= bounds[0] and values.max() <= bounds[1]
    if std is not None:
        assert abs(values.std() - std) < 0.02 * std, (values.std(), std)
    # the same statistics as torch's fill of the same shape
    theirs = getattr(torch.nn.init, name)(torch.zeros(*shape), **kwargs).numpy()
    assert abs(values.mean() - theirs.mean()) < 0.02 + 0.01 * abs(theirs.mean())
    assert abs(values.std() - theirs.std()) < 0.03 * theirs.std()


def test_trunc_normal_matches_torch_moments():
    ours = nn.init.trunc_normal_(oc.zeros(200_000), mean=0.5, std=1.0, a=-0.5, b=2.0).numpy()
    theirs = torch.nn.init.trunc_normal_(torch.zeros(200_000), mean=0.5, std=1.0, a=-0.5, b=2.0).numpy()
    assert ours.min() >= -0.5 and ours.max() <= 2.0
    assert abs(ours.mean() - theirs.mean()) < 0.01 and abs(ours.std() - theirs.std()) < 0.01


def test_constant_fills_and_dtypes(device):
    t = oc.zeros(3, 2, device=device, dtype=oc.float16)
    assert nn.init.constant_(t, 2.5) is t and (t.cpu().numpy() == 2.5).all()
    assert (nn.init.ones_(t).cpu().numpy() == 1).all() and not nn.init.zeros_(t).cpu().numpy().any()
    nn.init.normal_(t)
    assert t.dtype == oc.float16 and t.device == device


def test_seeded_draws_repeat():
    draws = []
    for _ in range(2):
        oc.manual_seed(7)
        draws.append(nn.init.kaiming_uniform_(oc.zeros(4, 4)).numpy())
    np.testing.assert_array_equal(*draws)


def test_generator_argument_is_refused():
    with pytest.raises(NotImplementedError, match="generator"):
        nn.init.normal_(oc.zeros(2), generator=object())


def test_zero_element_tensor_warns_and_is_unchanged():
    with pytest.warns(UserWarning, match="no-op"):
        assert nn.init.kaiming_uniform_(oc.zeros(0, 3)).shape == (0, 3)
