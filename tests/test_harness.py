"""check_function catches what it claims to: a zoo of deliberately wrong autograd Functions, each a classic mistake,
is flagged by the check meant for it, and gets exactly the verdict of its block in tests/golden/verdicts.txt; a right
old-style Function is still checked; bad arguments are refused before any check runs.

Each zoo Function is compared with a reference in plain torch ops computing the right gradient. The compile checks
run only where they are the intended catch (they cost seconds each on 2 cores).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import golden
import numpy as np
import pytest
import torch

from manualnet.crosscheck import CHECKS, FAST_MODE_NUMEL, FLOOR, PROFILES, FunctionUnderTest, K, check_function

MOST_CHECKS = PROFILES["quick"]  # the compile checks cost seconds each


def randn(dtype, device, gen, *shape):
    return torch.randn(*shape, dtype=dtype, device=device, generator=gen)


def make_x(dtype, device, gen):
    return (randn(dtype, device, gen, 4, 3),)


def make_x_w(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 3, 3)


def make_a_b(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 4, 3)


# ------------------------------------------------------------------------------------------------------ the zoo


class SavesInputs(torch.autograd.Function):
    """A base for the zoo: setup_context saves every input for backward."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)


class MatMul(SavesInputs):
    """A base for the zoo: y = x @ w."""

    @staticmethod
    def forward(x, w):
        return x @ w


class TransposedGrad(MatMul):
    """y = x @ w; dW returned transposed (W is square, so the shape is right and only the values are wrong)."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, (x.T @ g).T  # bug: dW = X^T G, not its transpose


class MissingOneOverN(SavesInputs):
    """L = mean((x - t)^2); backward forgets the 1/N of the mean."""

    @staticmethod
    def forward(x, t):
        return (x - t).square().mean()

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        d = 2 * (x - t) * g  # bug: / x.numel() missing
        return d, -d


class ReluMaskFromInput(torch.autograd.Function):
    """y = relu(x + b); the mask is taken from x instead of the pre-activation x + b."""

    @staticmethod
    def forward(x, b):
        return (x + b).clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = g * (x > 0)  # bug: should be (x + b > 0)
        return d, d.sum(0)


class ReluWrongAtKink(SavesInputs):
    """y = relu(x) with d/dx = 1 at x == 0 (torch and its reference take 0 there)."""

    @staticmethod
    def forward(x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x >= 0)  # bug: >= instead of >


def make_with_kink(dtype, device, gen):
    x = randn(dtype, device, gen, 4, 3)
    kink = x.clone()
    kink[0] = 0.0  # a row exactly on the kink
    return {"random": (x,), "kink": (kink,)}


class GradsInWrongOrder(torch.autograd.Function):
    """y = 2a + 3b; the two gradients returned swapped."""

    @staticmethod
    def forward(a, b):
        return 2 * a + 3 * b

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return 3 * g, 2 * g  # bug: (2g, 3g)


class IgnoresSecondOutputGrad(torch.autograd.Function):
    """(sin x, cos x); the incoming gradient of cos is ignored."""

    @staticmethod
    def forward(x):
        return x.sin(), x.cos()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        return None if g_sin is None else g_sin * x.cos()  # bug: - g_cos * sin(x) missing


class ModifiesSavedInput(torch.autograd.Function):
    """y = exp(x); the forward clamps its input in place "against overflow" (values here stay the same)."""

    @staticmethod
    def forward(x):
        return x.clamp_(max=50.0).exp()  # bug: modifies the caller's x (and the tensor saved for backward)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class DetachedBackward(SavesInputs):
    """y = x^3; backward right to first order but computed from x.detach(): double backward is wrong."""

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x.detach() ** 2  # bug: detach cuts the graph of the gradient


class NumpyBackward(SavesInputs):
    """y = sin(x); backward through NumPy: not differentiable again, not traceable."""

    @staticmethod
    def forward(x):
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.from_numpy(np.cos(x.detach().cpu().numpy())).to(g.device)  # bug: leaves torch


class ItemBranch(SavesInputs):
    """y = |x| written with a data-dependent Python branch on .item() per row: breaks vmap."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        rows = [r if r.sum().item() >= 0 else -r for r in x]  # bug: Python control flow on values
        return torch.stack(rows)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x.sum(1, keepdim=True) >= 0, 1.0, -1.0).to(g.dtype)


def item_branch_reference(x):
    return x * torch.where(x.sum(1, keepdim=True) >= 0, 1.0, -1.0).to(x.dtype)


class WrongDtypeUnderAutocast(SavesInputs):
    """y = x @ w; casts its output back to x's dtype, so under autocast it is float32 where matmul gives bf16."""

    @staticmethod
    def forward(x, w):
        return (x @ w).to(x.dtype)  # bug: undoes autocast

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = (g @ w.T.to(g.dtype)).to(x.dtype) if ctx.needs_input_grad[0] else None
        return dx, (x.T.to(g.dtype) @ g).to(w.dtype) if ctx.needs_input_grad[1] else None


class GradientNobodyAskedFor(MatMul):
    """y = x @ w; backward ignores ctx.needs_input_grad and computes both gradients every time."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g  # bug: dX computed even when only W asks (a wasted (N,D) matmul)


class StraightThroughRound(torch.autograd.Function):
    """round(x) with the straight-through gradient 1: right in eager; compile(func.grad) drops the custom backward
    and differentiates round (gradient 0): pytorch #193279."""

    @staticmethod
    def forward(x):
        return x.round()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g


class StraightThroughRoundWithJvp(StraightThroughRound):
    """The same with its forward-mode rule (tangent passed through): right in eager; compiled, torch.func.jvp drops
    the custom jvp and differentiates round: pytorch #192985."""

    @staticmethod
    def jvp(ctx, t):
        return t


def straight_through_reference(x):
    return x + (x.round() - x).detach()


class ReusesInputBufferForGrad(SavesInputs):
    """y = a * b; backward writes dB into a's memory "to save an allocation": with the same tensor as a and b the
    second gradient reads the overwritten value (the pattern of pytorch #183604)."""

    @staticmethod
    def forward(a, b):
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        db = a.mul_(g)  # bug: overwrites a (the caller's tensor)
        da = g * b  # reads a's new value when b is a
        return da, db


class Double(torch.autograd.Function):
    """A base for the zoo: y = 2x, its input's shape kept on ctx."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.shape = inputs[0].shape


class ViewOfIncomingGrad(Double):
    """y = 2x; backward flattens the incoming gradient with .view, which fails on a non-contiguous one."""

    @staticmethod
    def backward(ctx, g):
        return (2 * g.view(-1)).view(ctx.shape)  # bug: .view needs a contiguous g (.reshape does not)


class RandomOrderSum(MatMul):
    """y = x @ w; dW = sum_i x_i^T g_i accumulated over the rows in a random order (as atomics would): right to
    rounding, but two backward passes differ in the last bits."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = g @ w.T if ctx.needs_input_grad[0] else None
        if not ctx.needs_input_grad[1]:
            return dx, None
        return dx, sum(x[i : i + 1].T @ g[i : i + 1] for i in torch.randperm(x.shape[0]).tolist())  # bug: order


def make_rows(dtype, device, gen):
    return randn(dtype, device, gen, 64, 3), randn(dtype, device, gen, 3, 3)


@dataclass(frozen=True, kw_only=True)
class Bug(FunctionUnderTest):
    """A deliberately wrong Function; its verdict (every check that fails or warns, the row of the catch matrix) is
    its block in tests/golden/verdicts.txt."""

    intended: str  # the check meant to catch it


ZOO = {
    "transposed_grad": Bug(TransposedGrad.apply, lambda x, w: x @ w, make_x_w, intended="backward"),
    "missing_1_over_n": Bug(MissingOneOverN.apply, lambda x, t: (x - t).square().mean(), make_a_b, intended="backward"),
    "relu_mask_from_input": Bug(
        ReluMaskFromInput.apply,
        lambda x, b: (x + b).relu(),
        lambda d, v, g: (*make_x(d, v, g), randn(d, v, g, 3)),
        intended="backward",
    ),
    # Not named in kinks=, the kink sample must match torch's convention (0 at 0); named, 1 is a valid one-sided
    # derivative and passes (test_a_kink_sample_accepts_either_one_sided_derivative).
    "relu_wrong_at_kink": Bug(ReluWrongAtKink.apply, torch.relu, make_with_kink, intended="backward"),
    "grads_in_wrong_order": Bug(GradsInWrongOrder.apply, lambda a, b: 2 * a + 3 * b, make_a_b, intended="backward"),
    "ignores_second_output_grad": Bug(
        IgnoresSecondOutputGrad.apply, lambda x: (x.sin(), x.cos()), make_x, intended="unused_outputs"
    ),
    "modifies_saved_input": Bug(ModifiesSavedInput.apply, torch.exp, make_x, intended="saved_tensors"),
    "detached_backward": Bug(DetachedBackward.apply, lambda x: x**3, make_x, intended="gradgradcheck"),
    "numpy_backward": Bug(NumpyBackward.apply, torch.sin, make_x, intended="gradgradcheck"),
    "item_branch": Bug(ItemBranch.apply, item_branch_reference, make_x, intended="vmap_grad"),
    "wrong_dtype_under_autocast": Bug(WrongDtypeUnderAutocast.apply, lambda x, w: x @ w, make_x_w, intended="autocast"),
    "gradient_nobody_asked_for": Bug(
        GradientNobodyAskedFor.apply, lambda x, w: x @ w, make_x_w, intended="input_subsets"
    ),
    "compile_drops_custom_backward": Bug(
        StraightThroughRound.apply,
        straight_through_reference,
        make_x,
        {"checks": MOST_CHECKS + ["compile_func_grad"]},
        intended="compile_func_grad",
    ),
    "compile_drops_custom_jvp": Bug(
        StraightThroughRoundWithJvp.apply,
        straight_through_reference,
        make_x,
        {"checks": MOST_CHECKS + ["compile_jvp"]},
        intended="compile_jvp",
    ),
    "reuses_input_buffer_for_grad": Bug(
        ReusesInputBufferForGrad.apply, lambda a, b: a * b, make_a_b, intended="same_tensor_twice"
    ),
    "view_of_incoming_grad": Bug(ViewOfIncomingGrad.apply, lambda x: 2 * x, make_x, intended="noncontiguous"),
    "random_order_sum": Bug(RandomOrderSum.apply, lambda x, w: x @ w, make_rows, intended="deterministic"),
}


def test_the_zoo_holds_at_least_12_bugs_each_meant_for_a_known_check():
    assert len(ZOO) >= 12 and all(bug.intended in CHECKS for bug in ZOO.values())


@pytest.mark.parametrize("name", ZOO)
def test_each_zoo_bug_is_flagged_by_its_intended_check_and_gets_exactly_its_golden_verdict(name):
    report = ZOO[name].check(profile="quick", name=name)  # the compile bugs name their checks in their options
    golden.assert_verdict(f"zoo/{name}", report, ZOO[name].intended)


def test_the_golden_file_holds_a_verdict_for_each_zoo_bug_and_no_other():
    golden.assert_corpus("zoo", ZOO)


# ------------------------------------------------------------------------------- what a right Function gets


class OldStyleCube(torch.autograd.Function):
    """y = x^3, right, in the old forward(ctx, ...) style: torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x**2


def test_old_style_function_without_vmap_is_checked_and_what_it_cannot_do_is_not_applicable_with_the_reason():
    report = check_function(OldStyleCube.apply, lambda x: x**3, make_x, checks=MOST_CHECKS)
    assert report.ok, report.markdown()
    by_check = {r.check: r for r in report.results if r.dtype == "float64"}
    for check in ("func_grad", "func_vjp", "jacrev", "vmap_grad", "jvp"):
        assert by_check[check].status == "n/a" and "old-style forward(ctx, ...)" in by_check[check].note, check
    for check in ("forward", "backward", "gradcheck", "gradgradcheck", "noncontiguous", "deterministic"):
        assert by_check[check].status == "passed", check


class RaisesInBackward(Double):
    @staticmethod
    def backward(ctx, g):
        raise ZeroDivisionError("boom in backward")


def test_a_check_that_crashes_inside_the_function_fails_with_the_exception_and_the_others_still_run():
    report = check_function(RaisesInBackward.apply, lambda x: 2 * x, make_x, checks=["forward", "backward"])
    forward, backward = (r for r in report.results if r.dtype == "float32")
    assert forward.status == "passed"
    assert backward.status == "failed" and "raised ZeroDivisionError: boom in backward" in backward.note


def test_probe_restores_the_function_backward_even_when_a_check_fails():
    before = RaisesInBackward.__dict__["backward"]
    check_function(RaisesInBackward.apply, lambda x: 2 * x, make_x, checks=["input_subsets", "compile"])
    assert RaisesInBackward.__dict__["backward"] is before


def test_assert_ok_fails_with_the_summary_line_then_the_markdown_table_and_ok_reports_pass():
    bad = check_function(GradsInWrongOrder.apply, lambda a, b: 2 * a + 3 * b, make_a_b, checks=["backward"])
    with pytest.raises(AssertionError) as info:
        bad.assert_ok()
    assert "| backward | float32 | cpu | **FAILED** |" in str(info.value)
    assert str(info.value) == bad.summary() + "\n\n" + bad.markdown()
    assert bad.summary().startswith("GradsInWrongOrder.apply: FAILED: backward: d(a): 5.0e-01 relative off")
    good = check_function(OldStyleCube.apply, lambda x: x**3, make_x, checks=["backward"])
    good.assert_ok()
    assert good.markdown().splitlines()[0] == "### OldStyleCube.apply: ok"


# ---------------------------------------------------------------- verdict levels, no reference, messages, kinks


class GraphBreakInForward(Double):
    """y = 2x, right, with a print in its forward: Dynamo breaks the graph there and runs it eagerly."""

    @staticmethod
    def forward(x):
        print("", end="")
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


def test_a_function_dynamo_cannot_trace_gets_a_warning_with_dynamos_reason_never_a_pass():
    checks = ["compile", "compile_func_grad", "compile_double_backward"]
    report = check_function(GraphBreakInForward.apply, lambda x: 2 * x, make_x, checks=checks, dtypes=[torch.float32])
    for r in report.results:
        assert r.status == "warning" and "not compiled, nothing checked" in r.note and "graph break" in r.note, r
    assert (
        report.ok
        and not check_function(
            GraphBreakInForward.apply, lambda x: 2 * x, make_x, checks=checks[:1], dtypes=[torch.float32], strict=True
        ).ok
    )


def test_an_internal_dynamo_error_is_a_warning_with_its_message_not_the_function_failing(monkeypatch):
    # Dynamo's own crash (seen on a Function class that overrides apply) says nothing about fn: the compile check
    # is a warning naming Dynamo's error, after the fallback as Cls.apply was tried too.
    import manualnet.crosscheck.compile_checks as compile_checks
    from manualnet.crosscheck.case import Trace

    def crashing(f, dynamic=None):
        def run(*args, **kwargs):
            raise torch._dynamo.exc.InternalTorchDynamoError("simulated internal error")

        return run, Trace()

    monkeypatch.setattr(compile_checks, "compile_traced", crashing)
    report = check_function(
        ViewOfIncomingGrad.apply, lambda x: 2 * x, make_x, checks=["compile"], dtypes=[torch.float32]
    )
    (r,) = report.results
    assert r.status == "warning", report.markdown()
    assert "as given: Dynamo raised InternalTorchDynamoError: simulated internal error" in r.note
    assert "as Cls.apply from the calling frame: Dynamo raised InternalTorchDynamoError" in r.note


def test_strict_counts_warnings_as_failures():
    args = (GradientNobodyAskedFor.apply, lambda x, w: x @ w, make_x_w)
    assert check_function(*args, checks=["input_subsets"]).ok
    strict = check_function(*args, checks=["input_subsets"], strict=True)
    assert not strict.ok and {r.status for r in strict.results} == {"warning"}
    with pytest.raises(AssertionError, match="warnings: input_subsets"):
        strict.assert_ok()


def test_without_a_reference_the_checks_that_need_none_run_and_the_others_say_so():
    report = check_function(OldStyleCube.apply, None, make_x, profile="quick")
    status = {(r.check, r.dtype): (r.status, r.note) for r in report.results}
    for check in ("forward", "backward", "same_tensor_twice", "autocast"):
        assert status[(check, "float64")] == ("n/a", "needs a reference"), check
    for check in ("gradcheck", "gradgradcheck", "noncontiguous", "checkpoint", "deterministic"):
        assert status[(check, "float64")][0] == "passed", check
    assert report.ok
    wrong = check_function(TransposedGrad.apply, None, make_x_w, checks=["gradcheck"], dtypes=[torch.float64])
    assert not wrong.ok  # finite differences need no reference to find a wrong backward


def test_a_gradcheck_failure_carries_gradchecks_own_message():
    report = check_function(GradsInWrongOrder.apply, lambda a, b: 2 * a + 3 * b, make_a_b, checks=["gradcheck"])
    (r,) = report.failed()
    assert "GradcheckError: Jacobian mismatch for output 0 with respect to input 0" in r.note


def test_a_kink_sample_accepts_either_one_sided_derivative_and_only_those():
    # relu'(0) = 1 is the right-hand derivative: valid where the sample is named in kinks, wrong where it is not.
    named = check_function(ReluWrongAtKink.apply, torch.relu, make_with_kink, profile="quick", kinks=("kink",))
    assert named.ok, named.markdown()
    assert not check_function(ReluWrongAtKink.apply, torch.relu, make_with_kink, checks=["backward"]).ok

    class ReluTimesThreeAtKink(SavesInputs):  # 3 at 0 is no one-sided derivative of relu
        @staticmethod
        def forward(x):
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ((x > 0) + 3 * (x == 0))

    report = check_function(
        ReluTimesThreeAtKink.apply, torch.relu, make_with_kink, checks=["backward"], kinks=("kink",)
    )
    assert not report.ok


def test_the_tolerance_rule_passes_rounding_within_k_times_the_references_own_error_and_reports_both():
    # fn computes x^3 as exp(3 log x) (other rounding), on a sample where both err in float32
    class CubeByLogs(SavesInputs):
        @staticmethod
        def forward(x):
            return torch.exp(3 * torch.log(x))

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * torch.exp(2 * torch.log(x))

    def positive(dtype, device, gen):
        return (torch.rand(50, dtype=dtype, device=device, generator=gen) * 100 + 1,)

    report = check_function(CubeByLogs.apply, lambda x: x**3, positive, checks=["forward", "backward"])
    assert report.ok, report.markdown()
    for r in report.results:
        assert r.max_rel is not None and r.ref_rel is not None
        assert r.max_rel <= K * r.ref_rel + FLOOR[getattr(torch, r.dtype)]


# ----------------------------------------------------------------------------------------------------- bad input


def cube(x):
    return x**3


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fn": 3}, TypeError, r"^fn: expected a callable \(a function, MyFn.apply, an nn.Module or .*\), got int"),
        ({"reference": 3}, TypeError, r"^reference: expected a callable \(.*\) or None, got int"),
        (
            {"make_inputs": lambda d, v, g: [torch.ones(2)]},
            TypeError,
            r"expected a tuple, a Sample or a dict of them, got list",
        ),
        ({"make_inputs": lambda d, v, g: ()}, ValueError, r"expected at least one floating tensor .*, got \[\]"),
        ({"make_inputs": lambda d, v, g: (torch.arange(3),)}, ValueError, "expected at least one floating tensor"),
        (
            {"make_inputs": lambda d, v, g: (torch.ones(2, dtype=torch.float16),)},
            TypeError,
            "got torch.float16 at input 0",
        ),
        ({"reference": lambda x: x[:1]}, ValueError, r"^reference: expected outputs of fn's shapes \[\(4, 3\)\]"),
        ({"checks": ["backward", "gradchek"]}, ValueError, r"^checks: expected names from .*got \['gradchek'\]"),
        ({"devices": ["cuda:7"]}, ValueError, r"^devices: expected a device present here \(cpu.*got 'cuda:7'"),
        ({"devices": ["tpu"]}, ValueError, r"^devices: expected device names such as"),
        ({"dtypes": [torch.int64]}, TypeError, r"^dtypes: expected floating torch dtypes .*got torch.int64"),
        ({"functions": [cube]}, TypeError, r"^functions: expected torch.autograd.Function subclasses"),
        (
            {"kinks": ["edge"]},
            ValueError,
            r"^kinks: expected names of samples from make_inputs \['sample'\], got 'edge'",
        ),
        ({"batch_args": [5]}, ValueError, r"^batch_args: expected positions of tensor inputs"),
    ],
)
def test_bad_arguments_raise_naming_the_argument_before_any_check_runs(kwargs, error, message):
    calls = []

    def counting_cube(x):
        calls.append(x)
        return x**3

    args = {"fn": OldStyleCube.apply, "reference": counting_cube, "make_inputs": make_x} | kwargs
    with pytest.raises(error, match=message):
        check_function(args.pop("fn"), args.pop("reference"), args.pop("make_inputs"), **args)
    assert len(calls) <= 2  # at most the forward used to compare output shapes ran: no check


def test_a_reference_module_with_other_parameter_names_is_refused_before_any_check():
    fn, ref = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(
        ValueError, match=r"^reference: expected a module with fn's parameter names \['bias', 'weight'\]"
    ):
        check_function(fn, ref, make_x)


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match=r"^profile: expected one of \['full', 'quick'\], got 'fast'"):
        check_function(cube, cube, make_x, profile="fast")


def test_make_inputs_on_another_device_than_asked_is_refused():
    with pytest.raises(ValueError, match=r"expected tensors on cpu, got one on meta at input 0"):
        check_function(cube, cube, lambda d, v, g: (torch.ones(2, dtype=d, device="meta"),))


# -------------------------------------------------------------------------- docs/crosscheck.md quotes the code


DOC = Path(__file__).resolve().parents[1] / "docs" / "crosscheck.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_docs_and_readme_examples_run_and_each_pattern_gets_the_verdict_the_docs_state():
    namespace = {}
    for block in python_blocks(DOC):
        exec(block, namespace)  # the Function, the ten-line check (asserts ok), each pattern (asserts its verdict)
    fixture = lambda *args, **options: check_function(*args, **options).assert_ok()  # noqa: E731
    namespace["test_tanh_linear"](fixture)
    (quickstart,) = [b for b in python_blocks(DOC.parents[1] / "README.md") if "check_function" in b]
    namespace["MyFn"] = namespace["TanhLinear"]
    exec(quickstart, namespace)
    namespace["test_my_fn"](fixture)


def test_docs_tables_list_every_check_in_the_report_order_and_the_tolerances_of_the_code():
    text = DOC.read_text()
    checks_table = text.split("\n## The checks\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", checks_table, re.M) == list(CHECKS)
    rows = dict(re.findall(r"^\| (float64|float32|bfloat16|float16) \| ([0-9.e-]+) \|", text, re.M))
    assert {getattr(torch, dtype): float(floor) for dtype, floor in rows.items()} == FLOOR
    assert f"with K = {K:g} " in text
    assert f"`fast_mode` above\n{FAST_MODE_NUMEL} input elements" in text
    assert f"the project's own zoo ({len(ZOO)} deliberately wrong Functions)" in text
