"""The hand-written backward is right: through the cross-check harness (manualnet.crosscheck), against the
plain-torch reference (nn.Linear's and F.cross_entropy's math), on the net's own samples (manualnet.net_crosscheck:
a batch of one, one hidden unit, C=2, pre-activations exactly 0, every unit dead, logits of magnitude 1e4), with
gradcheck and gradgradcheck in float64. What the harness cannot say about this net is tested here by hand: float32
accuracy over random shapes and values (hypothesis; MANUALNET_HYPOTHESIS_EXAMPLES, default 40), which matrix
products the backward runs, which tensors it saves, and the module.

The reference in the hand-written tests is manualnet.reference (nn.Linear, nn.ReLU, nn.Linear) with
F.cross_entropy, holding copies of the same weights.
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from manualnet import TwoLayerNet, net_crosscheck, softmax_cross_entropy, two_layer_net
from manualnet.functional import SoftmaxCrossEntropyFn, TwoLayerNetFn, dropout_mask
from manualnet.reference import (
    copy_from_reference,
    copy_to_reference,
    reference_from,
    reference_grads,
    reference_net,
    reference_net_both,
    reference_net_loss,
)

RTOL32 = 1e-5
NAMES = ("w1", "b1", "w2", "b2")


# ---------------------------------------------------------------------------------------------------------- helpers


def random_inputs(n, d, h, c, seed=0, dtype=torch.float64, margin=1e-3):
    """x, w1, b1, w2, b2, y drawn from a seeded generator, with every pre-activation s1 at least `margin` from 0.

    Finite differences across ReLU's kink are wrong by design, so random draws stay off it (the harness's "kink"
    sample tests it against the reference).
    """
    gen = torch.Generator().manual_seed(seed)
    for _ in range(100):
        x = torch.randn(n, d, generator=gen, dtype=dtype)
        w1 = torch.randn(d, h, generator=gen, dtype=dtype) / math.sqrt(d)
        b1 = torch.randn(h, generator=gen, dtype=dtype) * 0.1
        if (x @ w1 + b1).abs().min() > margin:
            break
    else:
        raise AssertionError("could not draw inputs away from the ReLU kink")
    w2 = torch.randn(h, c, generator=gen, dtype=dtype) / math.sqrt(h)
    b2 = torch.randn(c, generator=gen, dtype=dtype) * 0.1
    y = torch.randint(0, c, (n,), generator=gen)
    return x, w1, b1, w2, b2, y


def model_with(w1, b1, w2, b2) -> TwoLayerNet:
    """A TwoLayerNet holding exactly these weights (and their dtype)."""
    model = TwoLayerNet(w1.shape[0], w1.shape[1], w2.shape[1], dtype=w1.dtype)
    with torch.no_grad():
        for name, value in zip(NAMES, (w1, b1, w2, b2), strict=True):
            getattr(model, name).copy_(value)
    return model


def manual_and_reference(x, w1, b1, w2, b2, y, x_grad=True):
    """(loss, grads) of the manual path and of the reference; grads hold w1, b1, w2, b2 and, if x_grad, x."""
    model = model_with(w1, b1, w2, b2)
    ref = reference_from(model)
    xm, xr = x.detach().clone().requires_grad_(x_grad), x.detach().clone().requires_grad_(x_grad)
    loss_m = model.loss(xm, y)
    loss_m.backward()
    loss_r = F.cross_entropy(ref(xr), y)
    loss_r.backward()
    gm = {name: getattr(model, name).grad for name in NAMES}
    gr = reference_grads(ref)
    if x_grad:
        gm["x"], gr["x"] = xm.grad, xr.grad
    return (loss_m, gm), (loss_r, gr)


def assert_rel_close(name, manual, reference, rtol=RTOL32):
    """|manual - reference| <= rtol * max|reference|, elementwise; exact when the reference is all zeros."""
    assert manual is not None, f"{name}: no gradient"
    assert manual.shape == reference.shape and manual.dtype == reference.dtype, name
    err = (manual - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert math.isfinite(err), f"{name}: non-finite gradient"
    assert err <= rtol * scale, f"{name}: max abs err {err:.3e} > {rtol:g} * {scale:.3e}"


def term_magnitudes(x, w1, b1, w2, b2, y) -> dict:
    """Each gradient computed from the magnitudes of its terms, in float64 (P + Y for P - Y, |W| for W, ...).

    float32 rounds the terms of a sum, not the sum: when they cancel (1 - p_y as p_y -> 1, or db2 summed over
    rows) both implementations lose ~eps32 of the terms' size, which can exceed 1e-5 of the result's size.
    """
    x, w1, b1, w2, b2 = (t.detach().double() for t in (x, w1, b1, w2, b2))
    s1 = x @ w1 + b1
    terms_x2 = (x.abs() @ w1.abs() + b1.abs()) * (s1 > 0)  # the terms summed into each x2 = max(0, s1)
    p = torch.softmax((s1.clamp_min(0) @ w2 + b2), dim=1)
    ds2 = (p + F.one_hot(y, p.shape[1])) / x.shape[0]
    ds1 = (ds2 @ w2.abs().T) * (s1 > 0)
    return {
        "w1": x.abs().T @ ds1,
        "b1": ds1.sum(0),
        "w2": s1.clamp_min(0).T @ ds2,
        "b2": ds2.sum(0),
        "x": ds1 @ w1.abs().T,
        "s2": terms_x2 @ w2.abs() + b2.abs(),  # the terms summed into the scores, hence into the loss
    }


# -------------------------------------------------------------------- the harness on the net's Functions (eager)

GRADIENT_CHECKS = [
    "forward",
    "backward",
    "gradcheck",
    "gradgradcheck",
    "input_subsets",
    "unused_outputs",
    "noncontiguous",
    "same_tensor_twice",
    "saved_tensors",
    "deterministic",
]


def not_applicable(report) -> set[str]:
    """The checks that did not apply in float64 (float32 skips the finite differences by design)."""
    return {r.check for r in report.results if r.status == "n/a" and r.dtype == "float64"}


def test_net_gradients_equal_plain_torch_at_every_sample_with_gradcheck_and_gradgradcheck(crosscheck):
    report = crosscheck(net_crosscheck.NET, checks=GRADIENT_CHECKS)
    assert not_applicable(report) == {"unused_outputs", "same_tensor_twice"}  # one output; no two equal shapes


def test_net_function_with_both_outputs_takes_a_gradient_on_x2_or_none_on_either_output(crosscheck):
    # TwoLayerNetFn returns x2 as a second output; double backward sends a gradient into it, and either output may
    # be unused (its incoming gradient None).
    report = crosscheck(net_crosscheck.NET_BOTH_OUTPUTS, checks=GRADIENT_CHECKS)
    assert not_applicable(report) == {"same_tensor_twice"}


def test_softmax_cross_entropy_gradients_equal_plain_torch_including_logits_of_1e4(crosscheck):
    report = crosscheck(net_crosscheck.LOSS, checks=GRADIENT_CHECKS)
    assert not_applicable(report) == {"input_subsets", "unused_outputs", "same_tensor_twice"}  # one input, output


def test_loss_through_both_functions_passes_gradcheck_and_gradgradcheck_and_equals_plain_torch(crosscheck):
    crosscheck(net_crosscheck.NET_LOSS, checks=GRADIENT_CHECKS[:4])


def test_reference_checks_flag_a_dw1_off_by_a_tenth_of_a_percent_that_gradcheck_lets_through(wrong_dw1):
    report = net_crosscheck.NET.check(checks=["backward", "gradcheck", "noncontiguous"])
    # gradcheck compares with finite differences at rtol 1e-3: a 1e-3 error is within it. The reference is exact.
    assert {r.check for r in report.failed()} == {"backward", "noncontiguous"}
    assert "d(w1)" in report.failed()[0].note  # by the reference's parameter name


# ------------------------------------------------------------------ label smoothing and the dropout mask (eager)


def test_smoothed_loss_gradients_equal_f_cross_entropy_label_smoothing_including_logits_of_1e4(crosscheck):
    # softmax_cross_entropy(s2, y, 0.1) against torch's own F.cross_entropy(s2, y, label_smoothing=0.1)
    report = crosscheck(net_crosscheck.LOSS_SMOOTHED, checks=GRADIENT_CHECKS)
    assert not_applicable(report) == {"input_subsets", "unused_outputs", "same_tensor_twice"}  # one input, output


def test_net_with_a_dropout_mask_equals_plain_torch_with_the_same_mask_at_every_sample(crosscheck):
    # the kink sample masked, a row with every unit dropped, a mask of ones; m itself is never differentiated
    report = crosscheck(net_crosscheck.NET_DROPOUT, checks=GRADIENT_CHECKS)
    assert not_applicable(report) == {"unused_outputs", "same_tensor_twice"}
    assert all("d(m)" not in (r.note or "") for r in report.results)


def test_loss_with_smoothing_and_dropout_through_both_functions_equals_plain_torch(crosscheck):
    crosscheck(net_crosscheck.NET_LOSS_REGULARISED, checks=GRADIENT_CHECKS[:4])


def test_smoothed_loss_and_its_gradient_equal_f_cross_entropy_within_1e_10_float64():
    gen = torch.Generator().manual_seed(3)
    for name, s in net_crosscheck.smoothed_loss_inputs(torch.float64, torch.device("cpu"), gen).items():
        (s2, y), eps = s.args, s.kwargs["label_smoothing"]
        a, b = s2.clone().requires_grad_(), s2.clone().requires_grad_()
        got, want = softmax_cross_entropy(a, y, eps), F.cross_entropy(b, y, label_smoothing=eps)
        got.backward()
        want.backward()
        assert_rel_close(f"{name}: L", got.detach(), want.detach(), rtol=1e-10)
        assert_rel_close(f"{name}: dL/ds2", a.grad, b.grad, rtol=1e-10)


def test_eps_0_is_bitwise_the_unsmoothed_loss_and_its_gradient_the_unsmoothed_p_minus_y_over_n():
    # eps = 0 runs the old path: L = -mean_i ln P[i, y_i] bit for bit, and dL/dS2 = (P - Y) / N bit for bit as the
    # backward before label smoothing computed it (subtract 1 at (i, y_i) of softmax(s2), times dL / N). Autograd's
    # gradient of the same formula takes other ops (log_softmax's backward): equal to float32 rounding only.
    gen = torch.Generator().manual_seed(4)
    for name, (s2, y) in net_crosscheck.loss_inputs(torch.float32, torch.device("cpu"), gen).items():
        a, b = s2.clone().requires_grad_(), s2.clone().requires_grad_()
        got = softmax_cross_entropy(a, y, 0.0)
        want = -torch.log_softmax(b, 1).gather(1, y[:, None]).mean()
        got.backward()
        want.backward()
        assert torch.equal(got, want), name
        p_minus_y = torch.softmax(s2, 1).scatter_add(1, y[:, None], s2.new_full((len(y), 1), -1.0))
        assert torch.equal(a.grad, p_minus_y * (torch.ones(()) / len(y))), name
        assert_rel_close(f"{name}: dL/ds2", a.grad, b.grad, rtol=1e-6)


def smoothing_backward_without(monkeypatch, term: str) -> None:
    """SoftmaxCrossEntropyFn.backward with one term of dL/dS2 = (P - (1 - eps) Y - eps / C) / N left out:
    "eps / C" gives (P - (1 - eps) Y) / N, "1 - eps" gives (P - Y - eps / C) / N."""
    right = SoftmaxCrossEntropyFn.backward

    def wrong(ctx, dloss):
        ds2, dy, deps = right(ctx, dloss)
        s2, y = ctx.saved_tensors
        n, c = s2.shape
        if term == "eps / C":
            ds2 = ds2 + ctx.eps / c * (dloss / n)
        else:  # "1 - eps": subtract eps more at (i, y_i)
            ds2 = ds2.scatter_add(1, y[:, None], ds2.new_full((n, 1), -ctx.eps) * (dloss / n))
        return ds2, dy, deps

    monkeypatch.setattr(SoftmaxCrossEntropyFn, "backward", staticmethod(wrong))


@pytest.mark.parametrize("term", ["eps / C", "1 - eps"])
def test_a_smoothing_backward_missing_a_term_fails_backward_against_f_cross_entropy(monkeypatch, term):
    smoothing_backward_without(monkeypatch, term)
    report = net_crosscheck.LOSS_SMOOTHED.check(checks=["backward"])
    assert {(r.check, r.dtype) for r in report.failed()} == {("backward", "float32"), ("backward", "float64")}
    assert "d(input)" in report.failed()[0].note  # F.cross_entropy's name for s2


def test_a_net_backward_that_forgets_the_mask_on_dx2_fails_backward_against_plain_torch(mask_left_out_of_backward):
    report = net_crosscheck.NET_DROPOUT.check(checks=["backward"])
    assert {(r.check, r.dtype) for r in report.failed()} == {("backward", "float32"), ("backward", "float64")}
    # dS1 = dX2 * [S1 > 0] instead of dX2 * M * [S1 > 0]: x, w1 and b1 wrong; w2 and b2 (above the mask) right
    note = report.failed()[0].note
    assert "d(w1)" in note and "d(w2)" not in note, note


# ------------------------------------------------------------------------------------------------- dropout_mask


def test_dropout_mask_is_bitwise_repeatable_from_a_seeded_generator():
    a = dropout_mask((50, 40), 0.3, torch.Generator().manual_seed(7))
    b = dropout_mask((50, 40), 0.3, torch.Generator().manual_seed(7))
    c = dropout_mask((50, 40), 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_mask_entries_are_0_or_1_over_1_minus_p_in_the_dtype_asked_for(dtype):
    m = dropout_mask((30, 20), 0.3, torch.Generator().manual_seed(0), dtype=dtype)
    assert m.dtype == dtype and m.shape == (30, 20)
    kept = torch.tensor(1 / (1 - 0.3), dtype=dtype)
    assert ((m == 0) | (m == kept)).all()
    assert (m == 0).any() and (m == kept).any()


def test_dropout_mask_with_p_0_is_all_ones():
    assert torch.equal(dropout_mask((6, 5), 0.0, torch.Generator().manual_seed(0)), torch.ones(6, 5))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_keeps_a_fraction_near_1_minus_p_and_has_mean_1(p):
    # n = 10^6 Bernoulli(1 - p) draws: the kept fraction has standard deviation sqrt(p (1 - p) / n) <= 5e-4. The
    # bound 0.005 is over 10 of those: a seeded draw outside it means the probability is wrong, not bad luck.
    m = dropout_mask((1000, 1000), p, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs((m > 0).double().mean().item() - (1 - p)) < 0.005
    assert abs(m.mean().item() - 1) < 0.005 / (1 - p)  # E[M] = 1: inverted dropout needs no rescale at evaluation


# ------------------------------------------------------------------------------ float32 against the autograd reference


@settings(max_examples=int(os.environ.get("MANUALNET_HYPOTHESIS_EXAMPLES", 40)), deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 20),
    h=st.integers(1, 16),
    c=st.integers(2, 10),
    x_scale=st.sampled_from([1e-3, 1.0, 30.0]),
    b1_shift=st.sampled_from([0.0, -0.5, 0.5]),
    logit_scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**31 - 1),
)
# Two cases a fresh hypothesis run once found against an earlier, looser-founded bound (manual vs reference alone):
# cancellation in s2 = x2 w2 + b2 (terms ~10x the logits) made the two float32 results differ by ~100 ulps.
@example(n=1, d=4, h=4, c=4, x_scale=1.0, b1_shift=-0.5, logit_scale=10.0, seed=1)
@example(n=1, d=4, h=4, c=2, x_scale=1.0, b1_shift=-0.5, logit_scale=1.0, seed=1)
def test_float32_gradients_are_as_accurate_as_the_references_against_float64_over_random_shapes_and_values(
    n, d, h, c, x_scale, b1_shift, logit_scale, seed
):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen) * x_scale
    w1 = torch.randn(d, h, generator=gen) / math.sqrt(d)
    b1 = (torch.randn(h, generator=gen) * 0.1 + b1_shift) * x_scale  # the shift sets the share of dead units
    x2 = (x @ w1 + b1).clamp_min(0)
    w2 = torch.randn(h, c, generator=gen) * logit_scale / x2.norm(dim=1).max().clamp_min(1e-3)  # |s2| ~ logit_scale
    b2 = torch.randn(c, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    (loss_m, gm), (loss_r, gr) = manual_and_reference(x, w1, b1, w2, b2, y)
    # The truth: the autograd reference in float64 on the same (float32-representable) values.
    _, (loss64, g64) = manual_and_reference(*(t.double() for t in (x, w1, b1, w2, b2)), y)
    assert torch.isfinite(loss_m)
    # Each float32 result is allowed 4x the reference's own float32 error against the truth, plus 1e-5 of its largest
    # magnitude, plus 1e-6 (~8 float32 ulps) of the largest term that cancelled to make it (term_magnitudes): both
    # implementations round the terms of a sum, not the sum. A wrong backward misses this by orders of magnitude.
    terms = term_magnitudes(x, w1, b1, w2, b2, y)
    err_m, err_r = (loss_m.double() - loss64).abs().item(), (loss_r.double() - loss64).abs().item()
    allowed = 4 * err_r + RTOL32 * loss64.abs().item() + 1e-6 * terms["s2"].max().item()
    assert err_m <= allowed, f"loss: err {err_m:.3e} (reference {err_r:.3e}), allowed {allowed:.3e}"
    for name in g64:
        err_m = (gm[name].double() - g64[name]).abs().max().item()
        err_r = (gr[name].double() - g64[name]).abs().max().item()
        allowed = 4 * err_r + RTOL32 * g64[name].abs().max().item() + 1e-6 * terms[name].max().item()
        assert err_m <= allowed, f"{name}: err {err_m:.3e} (reference {err_r:.3e}), allowed {allowed:.3e}"


def test_confident_right_predictions_are_as_accurate_as_the_reference_against_float64():
    # Every sample right with p_y ~ 0.9975: each gradient is ~(1 - p_y), computed from a rounded p_y (or log p_y)
    # by both implementations, so both lose ~eps32 / (1 - p_y) ~ 5e-5 of it. Against float64 truth, the manual
    # error must stay of the reference's order.
    for seed in range(5):
        *params, y = random_inputs(8, 6, 5, 2, seed=seed, dtype=torch.float64)
        x, w1, b1, w2, b2 = params
        y = torch.zeros_like(y)
        w2, b2 = w2 * 0.05, torch.tensor([6.0, 0.0], dtype=torch.float64)  # s2 ~ (6, 0): p_0 ~ 0.9975
        (_, truth), _ = manual_and_reference(x, w1, b1, w2, b2, y)
        (_, gm), (_, gr) = manual_and_reference(*(t.float() for t in (x, w1, b1, w2, b2)), y)
        for name in truth:
            scale = truth[name].abs().max().item()
            err_m = (gm[name].double() - truth[name]).abs().max().item() / scale
            err_r = (gr[name].double() - truth[name]).abs().max().item() / scale
            assert err_m <= 2 * err_r + 1e-6 and err_m < 1e-4, f"seed {seed}, {name}: {err_m:.2e} vs ref {err_r:.2e}"


# ------------------------------------------------------------------------ only the work that was asked for is done


class CountMatmuls(TorchDispatchMode):
    """Counts the matrix products (aten mm/addmm/bmm) run while active, backward included."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.count += 1
        return func(*args, **(kwargs or {}))


def backward_matmuls(requires: set[str]) -> tuple[int, dict]:
    """Matrix products run by backward of the loss when only the inputs named in `requires` need a gradient."""
    *params, y = random_inputs(4, 5, 3, 2, seed=16, dtype=torch.float32)
    inputs = dict(zip(("x", *NAMES), params, strict=True))
    inputs = {k: v.requires_grad_(k in requires) for k, v in inputs.items()}
    loss = softmax_cross_entropy(two_layer_net(*inputs.values()), y)
    with CountMatmuls() as counter:
        loss.backward()
    return counter.count, {k: v.grad for k, v in inputs.items()}


def test_backward_computes_dx_only_when_x_requires_grad():
    with_x, grads = backward_matmuls({"x", "w1", "b1", "w2", "b2"})
    assert grads["x"] is not None
    without_x, grads = backward_matmuls({"w1", "b1", "w2", "b2"})
    assert grads["x"] is None
    # dW2 = X2^T dS2, dX2 = dS2 W2^T, dW1 = X^T dS1, and dX = dS1 W1^T only when asked for.
    assert (with_x, without_x) == (4, 3)


def test_backward_skips_the_first_layer_when_only_the_second_needs_gradients():
    count, grads = backward_matmuls({"w2", "b2"})
    assert grads["w2"] is not None and grads["w1"] is None and grads["x"] is None
    assert count == 1  # dW2 = X2^T dS2 only: no dX2, no dS1


def saved_by_net(x_requires_grad: bool, w1_requires_grad: bool = True) -> tuple[list, tuple]:
    """The tensors TwoLayerNetFn saves for backward, seen through saved_tensors_hooks."""
    *params, _ = random_inputs(4, 5, 3, 2, seed=17, dtype=torch.float32)
    x, w1, b1, w2, b2 = params
    x.requires_grad_(x_requires_grad)
    w1.requires_grad_(w1_requires_grad)
    b1.requires_grad_(True)
    w2.requires_grad_(True)
    b2.requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        s2, x2 = TwoLayerNetFn.apply(x, w1, b1, w2, b2)
    return saved, (x, w1, w2, x2)


def test_net_function_saves_w1_only_when_x_requires_grad_and_x_only_when_w1_does():
    def ptrs(tensors):
        return sorted(t.data_ptr() for t in tensors)

    saved, (x, w1, w2, x2) = saved_by_net(x_requires_grad=False)
    assert ptrs(saved) == ptrs((x, w2, x2))
    saved, (x, w1, w2, x2) = saved_by_net(x_requires_grad=True)
    assert ptrs(saved) == ptrs((x, w1, w2, x2))
    saved, (x, w1, w2, x2) = saved_by_net(x_requires_grad=False, w1_requires_grad=False)
    assert ptrs(saved) == ptrs((w2, x2))


# ------------------------------------------------------------------------------------------------------ the module


def test_module_with_same_seed_has_same_weights_and_different_seed_different_weights():
    a, b, c = (TwoLayerNet(30, 8, 4, seed=s) for s in (5, 5, 6))
    for name in NAMES:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.w1, c.w1) and not torch.equal(a.w2, c.w2)


def test_module_seed_does_not_depend_on_dtype_beyond_rounding():
    a = TwoLayerNet(30, 8, 4, seed=5)
    b = TwoLayerNet(30, 8, 4, seed=5, dtype=torch.float64)
    assert torch.equal(a.w1, b.w1.float()) and torch.equal(a.w2, b.w2.float())


def test_module_flattens_images_to_rows():
    model = TwoLayerNet(3 * 32 * 32, 16, 10, seed=0)
    x = torch.randn(5, 3, 32, 32)
    s2 = model(x)
    assert s2.shape == (5, 10)
    assert torch.equal(s2, model(x.reshape(5, -1)))


def test_module_initialisation_statistics_are_as_documented():
    d, h, c = 3072, 100, 10
    model = TwoLayerNet(d, h, c, seed=0)
    # The sample std of n normal draws has relative standard error 1/sqrt(2n): 0.13% for w1, 2.2% for w2.
    assert model.w1.std().item() == pytest.approx(math.sqrt(2 / d), rel=0.01)
    assert abs(model.w1.mean().item()) < 5 * math.sqrt(2 / d) / math.sqrt(d * h)
    assert model.w2.std().item() == pytest.approx(math.sqrt(1 / h), rel=0.12)
    assert (model.b1 == 0).all() and (model.b2 == 0).all()


def test_reference_computes_the_same_function_as_the_module():
    model = TwoLayerNet(3 * 8 * 8, 12, 5, seed=1)
    ref = reference_from(model)
    x = torch.randn(7, 3, 8, 8)
    assert_rel_close("s2", model(x), ref(x), rtol=1e-6)


def test_the_sequential_reference_and_the_functional_references_are_one_computation():
    # manualnet.reference's two forms (the nn.Sequential and the functions of the weights the harness checks against)
    # run the same ops on the same operands: bitwise equal outputs, loss and gradients.
    model = TwoLayerNet(20, 6, 3, seed=4, dtype=torch.float64)
    ref = reference_from(model)
    x, y = torch.randn(9, 20, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    weights = [p.detach().clone().requires_grad_() for p in (model.w1, model.b1, model.w2, model.b2)]
    assert torch.equal(reference_net(x, *weights), ref(x))
    s2, x2 = reference_net_both(x, *weights)
    assert torch.equal(s2, ref(x)) and torch.equal(x2, ref[:3](x))
    loss = reference_net_loss(x, *weights, y)
    F.cross_entropy(ref(x), y).backward()
    loss.backward()
    for (name, want), got in zip(reference_grads(ref).items(), weights, strict=True):
        assert torch.equal(got.grad, want), name


def test_copy_from_reference_round_trip_gives_identical_outputs():
    model = TwoLayerNet(20, 6, 3, seed=2)
    ref = reference_from(model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p))  # the reference moves on (as in training)...
    other = TwoLayerNet(20, 6, 3, seed=3)
    copy_from_reference(ref, other)  # ...and is copied back
    x = torch.randn(9, 20)
    assert_rel_close("s2", other(x), ref(x), rtol=1e-6)
    back = reference_from(other)
    copy_to_reference(other, back)
    for p, q in zip(ref.parameters(), back.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(back(x), ref(x))


def test_building_a_reference_does_not_draw_from_the_global_rng():
    model = TwoLayerNet(20, 6, 3, seed=2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    reference_from(model)
    assert torch.equal(torch.rand(3), expected)
