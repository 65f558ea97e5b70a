"""Tests of wsol.pooling: values and gradients against the papers' equations, worked by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.pooling import (
    ClassSpecificGWAP,
    GlobalWeightedAvgPool,
    LogSumExpPool,
    SPAMPool,
    WildcatPool,
    build_pooling,
    list_poolings,
)


def _make(name: str, channels: int = 3):
    if name == "gwap":
        return build_pooling(name, in_channels=channels)
    if name == "spam":  # default pyramid (1, 2, 5, N) needs maps of at least 5x5
        return build_pooling(name, kernel_sizes=(1, 2, None))
    return build_pooling(name)


def test_registry_lists_every_pooling_of_the_issue():
    assert {"gap", "gmp", "lse", "spam", "gwap", "gwap_cs", "wildcat"} <= set(list_poolings())


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown pooling 'avg'.*gap.*spam"):
        build_pooling("avg")


def test_gmp_gradient_only_at_argmax():
    x = torch.tensor([[[[0.1, 0.5, -1.0], [2.0, 0.3, 0.0]]]], requires_grad=True)
    y = build_pooling("gmp")(x)
    assert y.item() == pytest.approx(2.0)
    (3.0 * y).sum().backward()  # upstream gradient g = 3
    expected = torch.zeros_like(x)
    expected[0, 0, 1, 0] = 3.0
    assert torch.equal(x.grad, expected)


def test_gmp_tie_sends_gradient_to_one_location():
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    build_pooling("gmp")(x).sum().backward()
    assert x.grad.sum().item() == pytest.approx(1.0)
    assert (x.grad > 0).sum().item() == 1


def test_gap_gradient_is_uniform():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    y = build_pooling("gap")(x)
    assert torch.allclose(y, x.mean(dim=(2, 3)))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 1 / 20))


SPAM_MAP = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 2.0, 0.0],
        [0.0, 3.0, 9.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)


def test_spam_forward_and_gradient_hand_computed_eq3():
    # Pyramid (1, 2, N=4). Level 1x1: max = 9 at (2, 2). Level 2x2 (stride 1, no padding): the best
    # window is rows 1-2, cols 1-2 with mean (1 + 2 + 3 + 9) / 4 = 3.75. Level 4x4: mean 15/16.
    x = SPAM_MAP.view(1, 1, 4, 4).clone().requires_grad_(True)
    y = SPAMPool(kernel_sizes=(1, 2, None))(x)
    assert y.item() == pytest.approx((9 + 3.75 + 15 / 16) / 3)
    y.backward()
    # Eq. 3 with g = 1, P = 3: 1/P * (K^-2 on the arg-max window of each level).
    expected = torch.full((4, 4), (1 / 16) / 3)
    expected[1:3, 1:3] += (1 / 4) / 3
    expected[2, 2] += 1 / 3
    assert torch.allclose(x.grad[0, 0], expected, atol=1e-7)


def _spam_reference(x2d: torch.Tensor, sizes: list[int]) -> tuple[float, torch.Tensor]:
    """Loop implementation of SPAM forward and of Gudi eq. 3 (gradient for g = 1)."""
    h, w = x2d.shape
    total, grad = 0.0, torch.zeros_like(x2d)
    for k in sizes:
        best, arg = -math.inf, (0, 0)
        for r in range(h - k + 1):
            for c in range(w - k + 1):
                v = x2d[r : r + k, c : c + k].mean().item()
                if v > best:
                    best, arg = v, (r, c)
        total += best
        grad[arg[0] : arg[0] + k, arg[1] : arg[1] + k] += 1.0 / (k * k)
    return total / len(sizes), grad / len(sizes)


def test_spam_matches_loop_reference_with_default_pyramid():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    y = SPAMPool()(x)  # (1, 2, 5, N=7)
    y.backward()
    value, grad = _spam_reference(x.detach()[0, 0], [1, 2, 5, 7])
    assert y.item() == pytest.approx(value, rel=1e-12)
    assert torch.allclose(x.grad[0, 0], grad, atol=1e-12)


def test_spam_endpoints_equal_gmp_and_gap():
    x = torch.randn(2, 3, 6, 5)
    assert torch.allclose(SPAMPool(kernel_sizes=(1,))(x), build_pooling("gmp")(x))
    assert torch.allclose(SPAMPool(kernel_sizes=(None,))(x), build_pooling("gap")(x), atol=1e-6)


def test_spam_kernel_larger_than_map_is_a_clear_error():
    with pytest.raises(ValueError, match=r"kernel_sizes entry 5x5 is larger than the 4x4 map"):
        SPAMPool()(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="kernel_sizes"):
        SPAMPool(kernel_sizes=(0, 2))
    with pytest.raises(ValueError, match="kernel_sizes"):
        SPAMPool(kernel_sizes=())


def test_lse_limits_and_monotonicity():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    gap, gmp = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    assert torch.allclose(LogSumExpPool(r=1e-6)(x), gap, atol=1e-5)
    # (1/r) log(1/HW sum e^{r x}) >= max - log(HW)/r, so r = 1e4 is within log(20)/1e4 of the max
    assert torch.allclose(LogSumExpPool(r=1e4)(x), gmp, atol=math.log(20) / 1e4 + 1e-9)
    values = [LogSumExpPool(r=r)(x) for r in (0.1, 1.0, 10.0, 100.0)]
    for lo, hi in itertools.pairwise(values):
        assert (hi >= lo - 1e-12).all()
    assert torch.isfinite(LogSumExpPool(r=1e6)(x * 100)).all()  # no overflow


@pytest.mark.parametrize("r", [0, -1.0, float("nan"), float("inf")])
def test_lse_rejects_non_positive_r(r):
    with pytest.raises(ValueError, match="r must be"):
        LogSumExpPool(r=r)


def test_gwap_weights_are_a_distribution_and_follow_eq_3_to_5():
    torch.manual_seed(1)
    pool = GlobalWeightedAvgPool(in_channels=4)
    x = torch.randn(2, 4, 3, 5)
    f, alpha = pool.forward_with_weights(x)
    assert alpha.shape == (2, 1, 3, 5)
    assert (alpha >= 0).all()
    assert torch.allclose(alpha.sum(dim=(2, 3)), torch.ones(2, 1))
    w, b = pool.score.weight.view(4), pool.score.bias
    m = torch.exp(torch.sigmoid(torch.einsum("k,bkhw->bhw", w, x) + b))  # eq. 3
    a = m / m.sum(dim=(1, 2), keepdim=True)  # eq. 4
    assert torch.allclose(alpha[:, 0], a, atol=1e-6)
    assert torch.allclose(f, torch.einsum("bhw,bkhw->bk", a, x), atol=1e-6)  # eq. 5


def test_gwap_cs_follows_eq_6_to_9_with_background_channel():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)  # 3 classes + background (last)
    s, alpha = ClassSpecificGWAP().forward_with_weights(x)
    assert s.shape == (2, 3) and alpha.shape == (2, 3, 3, 3)
    for b in range(2):
        for c in range(3):
            o = torch.exp(x[b, c]) / torch.exp(x[b]).sum(dim=0)  # eq. 6 over C + 1 channels
            m = o * torch.sigmoid(x[b, c])  # eq. 7
            a = torch.exp(m) / torch.exp(m).sum()  # eq. 8
            assert torch.allclose(alpha[b, c], a)
            assert s[b, c].item() == pytest.approx((a * x[b, c]).sum().item())  # eq. 9
    assert ClassSpecificGWAP.extra_channels == 1
    with pytest.raises(ValueError, match="C \\+ 1"):
        ClassSpecificGWAP()(torch.zeros(1, 1, 2, 2))


def test_wildcat_top_and_bottom_k_hand_computed():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert WildcatPool(kmax=2, kmin=1, alpha=0.5)(x).item() == pytest.approx((9 + 8) / 2 + 0.5 * 1)
    assert WildcatPool(kmax=1, kmin=0)(x).item() == pytest.approx(9.0)
    # fractions of H*W = 9: round(0.34 * 9) = 3 -> (9 + 8 + 7) / 3 + 0.7 * (1 + 2 + 3) / 3
    assert WildcatPool(kmax=0.34)(x).item() == pytest.approx(8 + 0.7 * 2)
    with pytest.raises(ValueError, match="kmax"):
        WildcatPool(kmax=0)
    with pytest.raises(ValueError, match="alpha"):
        WildcatPool(alpha=-1)


@pytest.mark.parametrize("name", ["gap", "gmp", "lse", "spam", "gwap", "gwap_cs", "wildcat"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_pooling_non_square_batch1_and_bfloat16(name, dtype):
    torch.manual_seed(3)
    pool = _make(name).to(dtype)
    x = torch.randn(1, 3, 3, 7, dtype=dtype, requires_grad=True)
    y = pool(x)
    expected_c = 2 if name == "gwap_cs" else 3
    assert y.shape == (1, expected_c) and y.dtype == dtype
    assert torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all()
    # the same map in float32 gives (close to) the same scores
    ref = _make(name).to(torch.float32)
    ref.load_state_dict({k: v.float() for k, v in pool.state_dict().items()})
    assert torch.allclose(y.float(), ref(x.detach().float()), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("name", ["gap", "gmp", "lse", "spam", "wildcat", "gwap_cs"])
def test_pooling_is_translation_invariant_for_a_blob(name):
    """A blob moved on an empty map gets the same score (global pooling has no position)."""
    a = torch.zeros(1, 2, 9, 9)
    a[0, :, 1:3, 1:4] = torch.tensor([[1.0, 2.0, 1.5], [0.5, 3.0, 1.0]])
    b = torch.roll(a, shifts=(4, 5), dims=(2, 3))
    pool = _make(name, channels=2)
    assert torch.allclose(pool(a), pool(b), atol=1e-6)


@pytest.mark.parametrize("name", ["gap", "gmp", "lse", "spam", "gwap", "gwap_cs", "wildcat"])
@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(3, 4, 4), "rank 3"),
        (torch.zeros(1, 3, 0, 4), "zero-size"),
        ([[1.0]], "torch.Tensor"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_argument(name, bad, message):
    with pytest.raises(ValueError, match=message):
        _make(name)(bad)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_every_pooling_lies_between_min_and_max(h, w, seed):
    """GAP, GMP, LSE, SPAM, GWAP(-cs) are (weighted) means/maxima: min <= score <= max."""
    torch.manual_seed(seed)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    lo, hi = x.amin(dim=(2, 3)), x.amax(dim=(2, 3))
    for pool in (
        build_pooling("gap"),
        build_pooling("gmp"),
        build_pooling("lse", r=3.0),
        SPAMPool(kernel_sizes=(1, None)),
        GlobalWeightedAvgPool(3).double(),
    ):
        y = pool(x)
        assert (y >= lo - 1e-9).all() and (y <= hi + 1e-9).all()
    y = ClassSpecificGWAP()(x)
    assert (y >= lo[:, :2] - 1e-9).all() and (y <= hi[:, :2] + 1e-9).all()


@pytest.mark.parametrize("name", ["lse", "spam", "gwap", "gwap_cs", "wildcat"])
def test_autograd_gradcheck(name):
    torch.manual_seed(4)
    pool = _make(name).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pool, (x,), eps=1e-6, atol=1e-5)
