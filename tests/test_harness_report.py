"""The report a person acts on (manualnet.crosscheck.diagnosis and report): each distinct symptom once, before the
matrix; inputs by name; the tolerance applied; exceptions at the user's line; the pytest failure's first line; the
options no_grad, k, floors and raise_exception, and their bad input."""

import inspect
import linecache
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from cube import Cube

from manualnet.crosscheck import FLOOR, Result, Sample, Symptom, check_function
from manualnet.crosscheck.diagnosis import diagnose

DOC = Path(__file__).resolve().parents[1] / "docs" / "crosscheck.md"


def make_x_w_b(dtype, device, generator):
    return tuple(torch.randn(*s, dtype=dtype, device=device, generator=generator) for s in ((5, 3), (3, 2), (2,)))


def linear(x, w, b):
    return x @ w + b


class BiasOnePercentOff(torch.autograd.Function):
    """y = x @ w + b; the bias gradient is 1% too large, the others are right."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, b):
        return x @ w + b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = g @ w.T if ctx.needs_input_grad[0] else None
        dw = x.T @ g if ctx.needs_input_grad[1] else None
        db = 1.01 * g.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


class OldStyleBiasOff(torch.autograd.Function):
    """BiasOnePercentOff written as forward(ctx, ...)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, 1.01 * g.sum(0)


class ViewOnGradient(torch.autograd.Function):
    """y = 2x; backward flattens the incoming gradient with .view, which needs a contiguous one."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return 2 * g.view(-1).view(g.shape)


def make_x(dtype, device, generator):
    return (torch.randn(4, 3, dtype=dtype, device=device, generator=generator),)


def line_of(obj, text: str) -> int:
    lines, start = inspect.getsourcelines(obj)
    return start + next(i for i, line in enumerate(lines) if text in line)


# ----------------------------------------------------------------------------------------------------- diagnosis


def test_a_bias_gradient_one_percent_off_is_one_diagnosis_line_naming_b_and_every_check_that_computes_it():
    report = check_function(BiasOnePercentOff.apply, linear, make_x_w_b, profile="quick")
    failed = {r.check for r in report.failed()}
    assert len(report.failed()) >= 8  # the same symptom in every check that computes d(b)
    (line,) = report.diagnosis()  # and said once
    where = f"look at BiasOnePercentOff.backward (test_harness_report.py:{line_of(BiasOnePercentOff, 'def backward')})"
    assert line == (
        "d(b): 1.0e-02 relative off the reference in float32 and float64, in backward, gradcheck, noncontiguous, "
        f"func_grad, func_vjp, jacrev, vmap_grad, vmap_vjp, checkpoint, autocast; {where}"
    )
    assert failed == {"backward", "gradcheck", "noncontiguous", "func_grad", "func_vjp", "jacrev", "vmap_grad"} | {
        "vmap_vjp",
        "checkpoint",
        "autocast",
    }
    text = report.markdown()
    assert text.index(f"- {line}") < text.index("| check |")  # read before the matrix


def test_a_correct_function_has_no_diagnosis_and_the_report_starts_with_the_table():
    correct = check_function(ViewOnGradient.apply, lambda x: 2 * x, make_x, checks=["forward", "backward"])
    assert correct.ok and correct.diagnosis() == []
    assert correct.markdown().splitlines()[:3] == [
        "### ViewOnGradient.apply: ok",
        "",
        correct.markdown().splitlines()[2],
    ]
    assert correct.markdown().splitlines()[2].startswith("| check |")


def test_an_exception_points_at_the_users_line_with_its_source_and_a_hint_not_at_torchs_frames():
    report = check_function(ViewOnGradient.apply, lambda x: 2 * x, make_x, profile="quick")
    assert {r.check for r in report.failed()} == {"noncontiguous"}
    (line,) = report.diagnosis()
    at = f"at test_harness_report.py:{line_of(ViewOnGradient, 'g.view(-1)')} in backward:"
    assert line.startswith("raises RuntimeError: view size is not compatible with input tensor's size and stride")
    assert f"{at} `return 2 * g.view(-1).view(g.shape)`" in line
    assert line.endswith(
        "; in float32 and float64, in noncontiguous; use .reshape (or .contiguous() first): inputs and "
        "incoming gradients may be non-contiguous"
    )
    assert at in report.failed()[0].note and "torch/" not in report.failed()[0].note


class SplitsWrongly(torch.autograd.Function):
    """y = 2x; backward splits the gradient into sizes that do not add up, an error raised inside torch's Python."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        head, tail = g.split([1, 100])
        return 2 * torch.cat([head, tail])


def test_an_exception_raised_in_torchs_own_frames_points_at_the_users_call_into_torch():
    report = check_function(SplitsWrongly.apply, lambda x: 2 * x, make_x, checks=["backward"], dtypes=[torch.float32])
    (r,) = report.results
    at = f"at test_harness_report.py:{line_of(SplitsWrongly, 'g.split(')} in backward: `head, tail = g.split([1, 100])`"
    assert r.status == "failed" and at in r.note, r.note
    assert at in report.diagnosis()[0]


def test_a_backward_that_raises_fails_gradcheck_even_where_the_references_own_gradcheck_fails():
    class RaisesSTE(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.round()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("not implemented yet")

    straight_through = lambda x: x + (x.round() - x).detach()  # noqa: E731  gradcheck fails on it: custom gradient
    report = check_function(RaisesSTE.apply, straight_through, make_x, checks=["gradcheck"], dtypes=[torch.float64])
    (r,) = report.results
    assert r.status == "failed" and "raised RuntimeError: not implemented yet" in r.note, r
    right = check_function(lambda x: x + (x.round() - x).detach(), straight_through, make_x, checks=["gradcheck"])
    assert right.status("gradcheck", "float64") == {"n/a"}  # the custom gradient itself is not a failure


def test_exceptions_that_differ_only_in_numbers_and_tensor_types_are_one_symptom_listing_both_dtypes():
    def result(dtype, tensor, version):
        message = f"RuntimeError: modified by an inplace operation: [torch.{tensor} [6, 5]] is at version {version}"
        return Result(
            "checkpoint",
            dtype,
            "cpu",
            "failed",
            None,
            None,
            None,
            "",
            0.0,
            "",
            (Symptom("raises", message, where="mylib.py:9 in backward"),),
        )

    lines = diagnose([result("float32", "FloatTensor", 1), result("float64", "DoubleTensor", 122)])
    assert lines == [
        "raises RuntimeError: modified by an inplace operation: [torch.FloatTensor [6, 5]] is at version 1 at "
        "mylib.py:9 in backward; in float32 and float64, in checkpoint"
    ]


# ------------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("fn", "reference", "make_inputs", "name"),
    [
        (BiasOnePercentOff.apply, linear, make_x_w_b, "d(b)"),  # the reference's parameter names
        (BiasOnePercentOff.apply, lambda *a: a[0] @ a[1] + a[2], make_x_w_b, "d(b)"),  # else the forward's
        (OldStyleBiasOff.apply, None, make_x_w_b, "d(b)"),  # forward(ctx, x, w, b) without ctx
        (lambda *a: BiasOnePercentOff.apply(*a), None, make_x_w_b, "d(input 2)"),  # no name anywhere
        (
            lambda x, w, bias: BiasOnePercentOff.apply(x, w, bias),
            None,
            lambda d, v, g: Sample(*make_x_w_b(d, v, g)[:2], bias=make_x_w_b(d, v, g)[2]),
            "d(bias)",  # a keyword argument by its keyword
        ),
    ],
)
def test_inputs_are_named_by_the_references_parameters_else_fns_else_by_position(fn, reference, make_inputs, name):
    checks = ["backward", "gradcheck"] if reference is not None else ["gradcheck"]
    report = check_function(fn, reference, make_inputs, checks=checks, dtypes=[torch.float64])
    assert report.diagnosis()[0].startswith(f"{name}: "), report.markdown()
    assert ("d(input 2)" in report.markdown()) == (name == "d(input 2)")


def test_a_modules_parameters_are_named_by_their_names():
    class WrongBiasLinear(torch.nn.Linear):
        def forward(self, x):
            return BiasOnePercentOff.apply(x, self.weight.T, self.bias)

    report = check_function(WrongBiasLinear(3, 2), torch.nn.Linear(3, 2), make_x, checks=["backward"])
    assert report.diagnosis()[0].startswith("d(param bias): 1.0e-02 relative off the reference"), report.markdown()


# ------------------------------------------------------------------------------------------- the tolerance column


def test_the_tolerance_column_states_the_floor_applied_the_bf16_one_on_the_float32_autocast_row():
    report = check_function(BiasOnePercentOff.apply, linear, make_x_w_b, checks=["backward", "autocast"])
    tolerance = {(r.check, r.dtype): r.tolerance for r in report.results}
    assert tolerance == {
        ("backward", "float32"): f"<= 4 x ref + {FLOOR[torch.float32]:g}",
        ("backward", "float64"): f"<= 4 x ref + {FLOOR[torch.float64]:g}",
        ("autocast", "float32"): f"<= 4 x ref + {FLOOR[torch.bfloat16]:g} (bfloat16)",  # float32 inputs, bf16 math
        ("autocast", "float64"): f"<= 4 x ref + {FLOOR[torch.float64]:g}",  # autocast leaves float64 alone
    }
    # and that is the floor the verdict used: the 1e-2 error passes under bf16's 1.6e-2, fails under float32's
    assert report.status("autocast", "float32") == {"passed"} and report.status("backward", "float32") == {"failed"}


def test_k_and_floors_set_the_rule_per_dtype_and_the_column_prints_them():
    off = 5e-4  # a gradient 5e-4 off: over the float32 floor 1e-5, under a floor of 1e-3

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return 2 * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return 2 * (1 + off) * g

    args = (Scaled.apply, lambda x: 2 * x, make_x)
    assert check_function(*args, checks=["backward"]).status("backward") == {"failed"}
    loose = check_function(*args, checks=["backward"], k=2, floors={torch.float32: 1e-3, torch.float64: 1e-3})
    assert loose.ok and {r.tolerance for r in loose.results} == {"<= 2 x ref + 0.001"}
    half = check_function(*args, checks=["backward"], floors={torch.float32: 1e-3})  # float64 keeps its own floor
    assert {r.dtype: r.status for r in half.results} == {"float32": "passed", "float64": "failed"}


def test_raise_exception_raises_with_the_summary_on_failure_and_returns_the_report_otherwise():
    with pytest.raises(AssertionError) as info:
        check_function(BiasOnePercentOff.apply, linear, make_x_w_b, checks=["backward"], raise_exception=True)
    assert (
        str(info.value)
        .splitlines()[0]
        .startswith(
            "BiasOnePercentOff.apply: FAILED: backward: d(b): 1.0e-02 relative off the reference in float32 and float64"
        )
    )
    report = check_function(ViewOnGradient.apply, lambda x: 2 * x, make_x, checks=["backward"], raise_exception=True)
    assert report.ok


# ------------------------------------------------------------------------------------------------------ no_grad


class SquaredError(torch.autograd.Function):
    """loss = mean((x - target)^2); no gradient for the target, on purpose."""

    @staticmethod
    def forward(x, target):
        return ((x - target) ** 2).mean()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        x, target = ctx.saved_tensors
        return g * 2 * (x - target) / x.numel(), None


def squared_error(x, target):
    return ((x - target) ** 2).mean()


def pairs(dtype, device, generator):
    return tuple(torch.randn(4, 3, dtype=dtype, device=device, generator=generator) for _ in range(2))


@pytest.mark.parametrize("no_grad", [["target"], [1], "target"])
def test_no_grad_inputs_are_passed_not_differentiated_and_gradcheck_still_runs_on_the_rest(no_grad):
    report = check_function(SquaredError.apply, squared_error, pairs, profile="quick", no_grad=no_grad)
    assert report.ok and not report.warnings(), report.markdown()
    assert report.status("gradcheck", "float64") == {"passed"} and report.status("backward") == {"passed"}
    assert report.status("input_subsets") == {"n/a"}  # one differentiable input left: x


def test_without_no_grad_the_missing_gradient_is_one_line_that_suggests_it():
    report = check_function(SquaredError.apply, squared_error, pairs, checks=["backward", "noncontiguous"])
    assert report.diagnosis() == [
        "d(target): no gradient (None), the reference has one; in float32 and float64, in backward, noncontiguous; "
        "pass no_grad=['target'] if it gets no gradient on purpose"
    ]


# ---------------------------------------------------------------------------------- quiet on correct code (#193279)


def cube_on_views(x):
    """Cube with the remedy the #193279 warning states: views of the inputs while compiling."""
    if torch.compiler.is_compiling():
        x = x.view_as(x)
    return Cube.apply(x)


def test_the_193279_warning_states_a_remedy_and_the_remedy_keeps_the_backward():
    args = (lambda x: x**3, make_x)
    warned = check_function(Cube.apply, *args, checks=["compile_func_grad"], dtypes=[torch.float32])
    (r,) = warned.results
    assert r.status == "warning" and "x = x.view_as(x)" in r.note and "torch.func.grad(torch.compile(f))" in r.note
    kept = check_function(cube_on_views, *args, checks=["compile_func_grad"], dtypes=[torch.float32], functions=[Cube])
    assert kept.ok and not kept.warnings(), kept.markdown()  # the probe saw Cube.backward run


# ------------------------------------------------------------------------------------------------------ pytest


USER_TESTS = """
import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x**3


def test_wrong_cube(crosscheck):
    crosscheck(Cube.apply, lambda x: x**3, lambda d, v, g: (torch.randn(4, 3, dtype=d, generator=g),),
               checks=["forward", "backward"], name="wrong cube")


@torch.library.custom_op("manualnet_user::cube", mutates_args=())
def cube_op(x: torch.Tensor) -> torch.Tensor:
    return x**3


cube_op.register_fake(lambda x: torch.empty_like(x))


def cube_op_backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g * 3 * x**3


cube_op.register_autograd(cube_op_backward, setup_context=lambda ctx, inputs, output: ctx.save_for_backward(*inputs))


def test_wrong_cube_op(crosscheck):
    crosscheck(cube_op, lambda x: x**3, lambda d, v, g: (torch.randn(4, 3, dtype=d, generator=g),),
               checks=["forward", "backward"])
"""


def test_the_pytest_failure_starts_with_the_failed_checks_and_the_first_symptom_without_the_plugins_frames(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "E       AssertionError: wrong cube: FAILED: backward: d(x): " in run.stdout, run.stdout
    # a custom op: named by its qualified name, the symptom at the backward registered for it
    (op_line,) = [line for line in run.stdout.splitlines() if line.startswith("E       AssertionError: manualnet_user")]
    assert op_line.startswith("E       AssertionError: manualnet_user::cube: FAILED: backward: d(x): "), op_line
    line = textwrap.dedent(USER_TESTS).splitlines().index("def cube_op_backward(ctx, g):") + 1
    assert op_line.endswith(
        f"look at cube_op_backward (test_user.py:{line}), the backward registered for manualnet_user::cube"
    ), op_line
    assert "pytest_plugin.py" not in run.stdout and "crosscheck/report.py" not in run.stdout, run.stdout


# --------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0}, ValueError, r"^k: expected a positive number, got 0$"),
        ({"k": -1.0}, ValueError, r"^k: expected a positive number, got -1.0$"),
        ({"k": float("nan")}, ValueError, r"^k: expected a positive number, got nan$"),
        ({"k": "4"}, TypeError, r"^k: expected a positive number, got str '4'$"),
        ({"k": True}, TypeError, r"^k: expected a positive number, got bool True$"),
        ({"floors": 1e-4}, TypeError, r"^floors: expected a dict \{torch dtype: positive number\}, got float 0.0001$"),
        ({"floors": {torch.float32: 0}}, ValueError, r"^floors\[torch.float32\]: expected a positive number, got 0$"),
        ({"floors": {"float32": 1e-4}}, TypeError, r"^floors: expected floating torch dtypes as keys .*got 'float32'$"),
        ({"no_grad": ["y"]}, ValueError, r"^no_grad: expected names of fn's inputs \['x'\] or positions, got 'y'$"),
        ({"no_grad": [3]}, ValueError, r"^no_grad: expected positions of inputs of make_inputs.* \(0 to 0\), got 3$"),
        ({"no_grad": [1.5]}, TypeError, r"^no_grad: expected input names or positions, got float 1.5$"),
        ({"raise_exception": "yes"}, TypeError, r"^raise_exception: expected True or False, got str 'yes'$"),
    ],
)
def test_bad_options_raise_naming_the_argument_the_expected_and_the_given_before_any_check_runs(kwargs, error, message):
    calls = []

    def counting_cube(x):
        calls.append(x)
        return x**3

    with pytest.raises(error, match=message):
        check_function(Cube.apply, counting_cube, make_x, **kwargs)
    assert len(calls) <= 2  # at most the forward used to compare output shapes ran: no check


# -------------------------------------------------------------------------------- docs/crosscheck.md's diagnosis


def test_the_docs_diagnosis_of_a_wrong_function_is_what_the_harness_prints_for_it(capsys):
    text = DOC.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class ScaleShift" in b)
    shown = re.search(re.escape(block) + r"```\n\nprints .*?:\n\n```text\n(.*?)```", text, re.S)[1]
    linecache.cache["mylib.py"] = (len(block), None, block.splitlines(True), "mylib.py")  # the user's file
    try:
        exec(compile(block, "mylib.py", "exec"), {"__name__": "mylib"})
    finally:
        del linecache.cache["mylib.py"]
    assert capsys.readouterr().out == shown
