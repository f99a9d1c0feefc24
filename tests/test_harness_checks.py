"""The checks of issue 21 (vmap over vjp, forward over reverse, batched forward gradients, compiled-trace
specialization, incoming gradients written in place, DDP): each catches the deliberately wrong Function it is for,
and its exact verdict in the quick profile (with the check it is for) is its block in tests/golden/verdicts.txt; the
net's own Functions pass every one of them with no warning; `ddp` is opt-in and refused, naming the argument, where
two processes cannot start.

Each zoo Function is compared with a reference in plain torch ops computing the right values.
"""

from dataclasses import dataclass

import golden
import pytest
import torch
import torch.distributed as dist

from manualnet import net_crosscheck
from manualnet.crosscheck import CHECKS, PROFILES, FunctionUnderTest, check_function

QUICK = PROFILES["quick"]
NEW = ["vmap_vjp", "fwd_over_rev", "batched_fwd_grad", "incoming_grad_inplace", "compile_fresh_inputs", "ddp"]


def randn(dtype, device, gen, *shape):
    return torch.randn(*shape, dtype=dtype, device=device, generator=gen)


def make_x(dtype, device, gen):
    return (randn(dtype, device, gen, 4, 3),)


def make_long_x(dtype, device, gen):
    """1100 elements: an elementwise Jacobian of 1.2e6 entries, over the limit of jacrev and jacfwd."""
    return (randn(dtype, device, gen, 1100),)


def make_a_b(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 4, 3)


def make_linear(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 3, 2), randn(dtype, device, gen, 2)


# ------------------------------------------------------------------------------------------------------ the zoo


class SquareIntoBuffer(torch.autograd.Function):
    """y = x^2; backward fills a preallocated buffer: fine for one incoming gradient, an error for a batch of them."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        dx = torch.zeros_like(x)
        dx.copy_(2 * x * g)  # bug: x is not batched under vmap, g is: the copy cannot hold the batch
        return dx


class SquareJvpIntoBuffer(SquareIntoBuffer):
    """y = x^2, right backward; the jvp fills a preallocated buffer: an error for a batch of tangents."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        out = torch.empty_like(x)
        out.copy_(2 * x * t)  # bug: the same, in forward mode
        return out


class MulJvpNeedsEveryTangent(torch.autograd.Function):
    """y = a * b with set_materialize_grads(False); the jvp assumes both tangents are given (a None tangent, for an
    input held constant, raises)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):
        return a * b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        if g is None:
            return None, None
        return g * b if ctx.needs_input_grad[0] else None, g * a if ctx.needs_input_grad[1] else None

    @staticmethod
    def jvp(ctx, a_dot, b_dot):
        a, b = ctx.saved_tensors
        return a_dot * b + a * b_dot  # bug: a_dot or b_dot may be None


class ExpWithAux(torch.autograd.Function):
    """(2 e^x, e^x): the second output is returned to be saved (as TwoLayerNetFn's x2); the jvp gives it no
    tangent, "nobody uses it". The backward reads it: its derivative, the Hessian, loses that term."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        e = x.exp()
        return 2 * e, e

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, g_y, g_e):
        (e,) = ctx.saved_tensors
        dx = torch.zeros_like(e)
        dx = dx if g_y is None else dx + 2 * g_y * e
        return dx if g_e is None else dx + g_e * e

    @staticmethod
    def jvp(ctx, t):
        (e,) = ctx.saved_tensors
        return 2 * e * t, torch.zeros_like(e)  # bug: the tangent of e is e * t


def exp_visible(x):
    return ExpWithAux.apply(x)[0]


class TripleIntoIncomingGrad(torch.autograd.Function):
    """y = 3x; backward multiplies the incoming gradient in place "to save an allocation"."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return 3 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g.mul_(3)  # bug: overwrites grad_output, which the caller may still use


class ScaleBy(torch.autograd.Function):
    """y = x / s for a Python number s (a quantizer's scale); no gradient for s."""

    @staticmethod
    def forward(x, s):
        return x / s

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.s = inputs[1]

    @staticmethod
    def backward(ctx, g):
        return g / ctx.s, None


@torch.compiler.assume_constant_result
def amax(x):
    return float(x.detach().abs().max())  # bug: under compile, the first input's value is baked into the graph


def normalized(x):
    return ScaleBy.apply(x, amax(x))


def normalized_reference(x):
    return x / x.detach().abs().max()


class SumsGradAcrossRanks(torch.autograd.Function):
    """y = 2x; backward all-reduces its gradient, as a model-parallel region does: a no-op in one process, a second
    reduction (a sum where DDP averages) under DistributedDataParallel."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        g = 2 * g
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(g)  # bug: DDP reduces it again
        return g


@dataclass(frozen=True, kw_only=True)
class Bug(FunctionUnderTest):
    """A deliberately wrong Function; its verdict (every check that fails or warns: the row of the catch matrix) is
    its block checks/<name> in tests/golden/verdicts.txt."""

    intended: str  # the new check meant to catch it


ZOO = {
    "backward_into_preallocated_buffer": Bug(SquareIntoBuffer.apply, lambda x: x * x, make_long_x, intended="vmap_vjp"),
    "hessian_loses_the_aux_outputs_tangent": Bug(
        exp_visible, lambda x: 2 * x.exp(), make_x, {"functions": [ExpWithAux]}, intended="fwd_over_rev"
    ),
    "jvp_into_preallocated_buffer": Bug(
        SquareJvpIntoBuffer.apply, lambda x: x * x, make_long_x, intended="batched_fwd_grad"
    ),
    "jvp_needs_every_tangent": Bug(
        MulJvpNeedsEveryTangent.apply, lambda a, b: a * b, make_a_b, intended="batched_fwd_grad"
    ),
    # gradgradcheck sees it by accident: its own incoming gradients are leaves that require grad
    "backward_writes_into_incoming_grad": Bug(
        TripleIntoIncomingGrad.apply, lambda x: 3 * x, make_x, intended="incoming_grad_inplace"
    ),
    "scale_baked_into_the_compiled_graph": Bug(
        normalized,
        normalized_reference,
        make_x,
        {"functions": [ScaleBy], "checks": [*QUICK, "compile_fresh_inputs"]},
        intended="compile_fresh_inputs",
    ),
    "gradient_reduced_twice_under_ddp": Bug(
        SumsGradAcrossRanks.apply, lambda x: 2 * x, make_x, {"checks": [*QUICK, "ddp"]}, intended="ddp"
    ),
}


def test_every_new_check_is_registered_and_has_a_zoo_bug():
    assert set(NEW) <= set(CHECKS)
    assert {bug.intended for bug in ZOO.values()} == set(NEW)


@pytest.mark.parametrize("name", ZOO)
def test_each_new_zoo_bug_is_caught_by_its_check_and_gets_exactly_its_golden_verdict(name):
    golden.assert_verdict(f"checks/{name}", ZOO[name].check(profile="quick", name=name), ZOO[name].intended)


def test_the_golden_file_holds_a_verdict_for_each_new_zoo_bug_and_no_other():
    golden.assert_corpus("checks", ZOO)


# --------------------------------------------------------------------------------- what each check says, and where


def test_an_incoming_gradient_written_in_place_is_named_by_the_function_whose_backward_did_it():
    report = check_function(TripleIntoIncomingGrad.apply, lambda x: 3 * x, make_x, checks=["incoming_grad_inplace"])
    for r in report.results:
        assert r.status == "failed" and "TripleIntoIncomingGrad.backward modified its incoming gradient 0" in r.note
    # behind a wrapper, with no Function named: still caught, and the note says how to get the name
    wrapped = check_function(
        lambda x: TripleIntoIncomingGrad.apply(x), lambda x: 3 * x, make_x, checks=["incoming_grad_inplace"]
    )
    assert {r.status for r in wrapped.results} == {"failed"}
    assert "pass functions= to name it" in wrapped.results[0].note


def test_compile_fresh_inputs_is_not_applicable_when_make_inputs_ignores_its_generator():
    def same_every_time(dtype, device, gen):
        return (torch.linspace(-1, 1, 12, dtype=dtype, device=device).reshape(4, 3),)

    report = check_function(normalized, normalized_reference, same_every_time, checks=["compile_fresh_inputs"])
    for r in report.results:
        assert r.status == "n/a" and "ignores its generator" in r.note, report.markdown()


def test_the_baked_scale_is_right_on_the_traced_inputs_and_wrong_on_fresh_ones():
    report = check_function(
        normalized, normalized_reference, make_x, checks=["compile_fresh_inputs"], dtypes=[torch.float32]
    )
    (r,) = report.results
    assert r.status == "failed" and "traced as given" in r.note
    assert "sample fresh compiled output 0" in r.note and "sample compiled output 0" not in r.note


# ------------------------------------------------------------------------------------------------------------ ddp


class LinearFn(torch.autograd.Function):
    """y = x @ w + b, right."""

    @staticmethod
    def forward(x, w, b):
        return x @ w + b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, g.sum(0)


class LinearNoBiasGrad(LinearFn):
    """y = x @ w + b; backward returns None for the bias."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, None  # bug


def linear_reference(x, w, b):
    return x @ w + b


def test_ddp_is_opt_in_in_no_profile_and_runs_when_named():
    assert all("ddp" not in checks for checks in PROFILES.values())
    report = check_function(LinearFn.apply, linear_reference, make_linear, checks=["ddp"], dtypes=[torch.float32])
    assert [(r.check, r.status) for r in report.results] == [("ddp", "passed")], report.markdown()


def test_ddp_reports_a_none_parameter_gradient_as_the_zeros_ddp_reduces():
    report = check_function(
        LinearNoBiasGrad.apply, linear_reference, make_linear, checks=["ddp"], dtypes=[torch.float32]
    )
    (r,) = report.results
    assert r.status == "failed" and "rank 0 d(b): rel err 1.00e+00" in r.note, report.markdown()


def test_ddp_own_error_for_a_parameter_outside_the_graph_becomes_the_note():
    def detached_weight(x, w, b):
        return LinearFn.apply(x, w.detach(), b)

    report = check_function(
        detached_weight, linear_reference, make_linear, checks=["ddp"], dtypes=[torch.float32], functions=[LinearFn]
    )
    (r,) = report.results
    assert r.status == "failed", report.markdown()
    assert "DDP raised on rank 0 and 1: RuntimeError: Expected to have finished reduction" in r.note
    assert "a parameter reaches the loss outside autograd" in r.note


def test_ddp_where_two_processes_cannot_start_is_refused_naming_the_argument_before_any_check(monkeypatch):
    calls = []

    def counted(x, w, b):
        calls.append(1)
        return linear_reference(x, w, b)

    monkeypatch.setattr(dist, "is_gloo_available", lambda: False)
    with pytest.raises(ValueError, match=r"^checks: 'ddp' expected two processes to start here .*gloo backend"):
        check_function(counted, linear_reference, make_linear, checks=["backward", "ddp"])
    assert not calls


# ---------------------------------------------------------------------------------- the net's own Functions


@pytest.mark.parametrize("target", ["NET", "LOSS", "NET_LOSS", "LOSS_SMOOTHED", "NET_DROPOUT", "NET_LOSS_REGULARISED"])
def test_the_nets_functions_pass_every_new_check_with_no_warning(target):
    report = getattr(net_crosscheck, target).check(checks=NEW)
    status = {(r.check, r.dtype): r.status for r in report.results}
    want = {(c, dt): "passed" for c in NEW for dt in ("float32", "float64")}
    want[("batched_fwd_grad", "float32")] = "n/a"  # finite differences: float64 only
    assert status == want, report.markdown()
