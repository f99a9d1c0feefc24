"""check_function on custom ops (tests/zoo_ops.py): each op, correct or wrong, gets no false alarm or its intended
catch, and exactly its verdict over the full battery in float32 and float64 (its block in tests/golden/verdicts.txt);
a correct op passes with no warning; the report names the op `ns::op`; what PyTorch cannot do with every op of a kind
(torch.func over register_autograd, pytorch #179652) is n/a with the reason; the compile checks see the op in the
captured graph; the probe counts the op's backward; the diagnosis points at the backward the user registered;
opcheck's tests carry opcheck's own message; an fn that is no callable, Module or op is refused before any check
runs."""

import inspect
import re
from pathlib import Path

import golden
import pytest
import torch
import zoo_ops
from cube import Cube

from manualnet.crosscheck import CHECKS, PROFILES, check_function
from manualnet.crosscheck.case import compile_traced

OPCHECKS = [c for c in CHECKS if c.startswith("opcheck_")]
FUNC_CHECKS = ["func_grad", "func_vjp", "jacrev", "vmap_grad", "compile_func_grad"]
LINEAR_TANH = (zoo_ops.linear_tanh, zoo_ops.linear_tanh_reference, zoo_ops.linear_tanh_inputs)  # the correct op
LINEAR_TANH_BIAS_MEAN = (zoo_ops.linear_tanh_bias_mean, *LINEAR_TANH[1:])


def by_check(report, dtype="float64") -> dict:
    return {r.check: r for r in report.results if r.dtype == dtype}


@pytest.mark.parametrize("name", zoo_ops.OPS)
def test_each_zoo_op_gets_no_false_alarm_or_its_intended_catch_and_exactly_its_golden_verdict_in_the_full_battery(
    name,
):
    case = zoo_ops.OPS[name]
    golden.assert_verdict(f"ops/{name}", case.check(profile="full"), case.intended)


def test_the_golden_file_holds_a_verdict_for_each_zoo_op_and_no_other():
    golden.assert_corpus("ops", zoo_ops.OPS)


def test_the_zoo_holds_a_wrong_op_for_each_fault_class_and_correct_ops_that_must_pass_silently():
    intended = {n: c.intended for n, c in zoo_ops.OPS.items()}
    assert {"backward", "incoming_grad_inplace", "opcheck_faketensor", "opcheck_schema"} <= set(intended.values())
    assert {"linear_tanh_grad_missing", "linear_tanh_no_backward", "linear_tanh_no_fake", "scale_or_input"} <= {
        n for n, i in intended.items() if i
    }
    assert intended["linear_tanh"] is None and intended["cube"] is None


# ------------------------------------------------------------------------------ names, n/a reasons, the probe


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        (zoo_ops.linear_tanh, "manualnet_zoo::linear_tanh"),
        (torch.ops.manualnet_zoo.linear_tanh.default, "manualnet_zoo::linear_tanh"),
        (torch.ops.manualnet_zoo.linear_tanh, "manualnet_zoo::linear_tanh"),
        (torch.ops.manualnet_zoo.twice.scaled, "manualnet_zoo::twice.scaled"),
    ],
)
def test_the_report_names_an_op_by_its_qualified_name(fn, name):
    report = check_function(fn, None, zoo_ops.linear_tanh_inputs, checks=["forward"], dtypes=[torch.float64])
    assert report.name == name and report.markdown().startswith(f"### {name}: ok")


def test_torch_func_refuses_a_register_autograd_op_in_this_torch_so_the_harness_says_not_applicable():
    # The premise of the n/a: torch.func.grad over the op raises here (if PyTorch lifts it, this fails first).
    x, w, b = zoo_ops.linear_tanh_inputs(torch.float64, "cpu", torch.Generator().manual_seed(0))["general"]
    with pytest.raises(RuntimeError, match="must override the setup_context staticmethod"):
        torch.func.grad(lambda x: zoo_ops.linear_tanh(x, w, b).sum())(x)
    rows = by_check(check_function(*LINEAR_TANH, checks=[*FUNC_CHECKS, "jvp", "compile_jvp"]))
    for check in (*FUNC_CHECKS, "jvp", "compile_jvp"):
        assert rows[check].status == "n/a", check
        assert rows[check].note.startswith("manualnet_zoo::linear_tanh: torch.func cannot transform a custom op")
        assert "register_autograd" in rows[check].note and "pytorch #179652" in rows[check].note


def test_the_compile_checks_count_the_op_as_traced_when_it_is_in_the_captured_graph():
    report = check_function(*LINEAR_TANH, checks=["compile"])
    assert {(r.status, r.note) for r in report.results} == {("passed", "traced as given")}, report.markdown()
    x, w, b = zoo_ops.linear_tanh_inputs(torch.float32, "cpu", torch.Generator().manual_seed(0))["general"]
    run, trace = compile_traced(zoo_ops.linear_tanh)
    run(x, w, b)
    targets = {n.target for g in trace.graphs for n in g.graph.nodes}
    assert torch.ops.manualnet_zoo.linear_tanh.default in targets  # the op itself, no autograd_function_apply
    assert trace.holds_function(frozenset({"manualnet_zoo::linear_tanh"})) and not trace.holds_function()


def test_the_probe_counts_the_ops_backward_and_names_the_op():
    case = zoo_ops.OPS["linear_tanh_all_grads"]
    report = check_function(case.fn, case.reference, case.make_inputs, checks=["input_subsets"])
    # each input is left out of some subset, and the backward returns every gradient whether asked or not
    message = (
        "manualnet_zoo::linear_tanh_all_grads.backward returns gradients for inputs which did not ask "
        "(positions [0, 1, 2] of its forward)"
    )
    assert all(r.status == "warning" and message in r.note for r in report.results), report.markdown()
    right = check_function(*LINEAR_TANH, checks=["input_subsets"])
    assert {(r.status, r.note) for r in right.results} == {("passed", "")}  # probed: no "no Function class known"


def test_the_probe_restores_the_backward_of_the_class_register_autograd_generated():
    x, w, b = (t.requires_grad_() for t in zoo_ops.linear_tanh_inputs(torch.float64, "cpu", None)["general"])
    cls = zoo_ops.linear_tanh(x, w, b).grad_fn._forward_cls
    before = cls.__dict__["backward"]
    check_function(*LINEAR_TANH, checks=["input_subsets"])
    assert cls.__dict__["backward"] is before


# ---------------------------------------------------------------------- the diagnosis points at the user's backward

LIBRARY = torch.library.Library("manualnet_test_ops", "FRAGMENT")
LIBRARY.define("square(Tensor x) -> Tensor")
LIBRARY.impl("square", lambda x: x * x, "CompositeExplicitAutograd")


def square_backward_halved(ctx, g):
    return g * ctx.saved_tensors[0]  # bug: d(x^2)/dx = 2x


torch.library.register_autograd(
    "manualnet_test_ops::square", square_backward_halved, setup_context=zoo_ops.save_input, lib=LIBRARY
)


def defined_at(f) -> str:
    return f"{Path(inspect.getsourcefile(f)).name}:{inspect.getsourcelines(f)[1]}"


@pytest.mark.parametrize(
    ("fn", "reference", "make_inputs", "backward", "op", "param"),
    [
        (*LINEAR_TANH_BIAS_MEAN, zoo_ops.bias_grad_mean, "manualnet_zoo::linear_tanh_bias_mean", "b"),
        (
            torch.ops.manualnet_test_ops.square,
            torch.square,
            zoo_ops.rows_inputs,
            square_backward_halved,
            "manualnet_test_ops::square",
            "x",
        ),
    ],
    ids=["custom_op", "Library op"],
)
def test_a_wrong_gradient_of_an_op_is_diagnosed_at_the_backward_registered_for_it(
    fn, reference, make_inputs, backward, op, param
):
    report = check_function(fn, reference, make_inputs, checks=["backward"], dtypes=[torch.float64])
    (symptom,) = report.diagnosis()
    assert symptom.startswith(f"d({param}): ")  # by its parameter name, the schema's where the reference has none
    want = f"look at {backward.__name__} ({defined_at(backward)}), the backward registered for {op}"
    assert symptom.endswith(want), symptom


# --------------------------------------------------------------------------- the checks of issue 21 item 5 on ops

NEW = ["vmap_vjp", "fwd_over_rev", "batched_fwd_grad", "incoming_grad_inplace", "compile_fresh_inputs", "ddp"]


@pytest.mark.parametrize("name", ["linear_tanh", "calls_linear_tanh", "cube"])
def test_a_correct_op_passes_each_new_check_ddp_included_or_is_not_applicable_for_torch_func(name):
    report = zoo_ops.OPS[name].check(checks=NEW)
    for r in report.results:
        if r.check in ("vmap_vjp", "fwd_over_rev", "batched_fwd_grad"):
            assert r.status == "n/a" and "register_autograd" in r.note and "pytorch #179652" in r.note, r.note
        else:
            assert r.status == "passed", report.markdown()


def test_an_ops_backward_that_writes_into_its_incoming_gradient_is_caught_and_named_by_the_op():
    report = zoo_ops.OPS["linear_tanh_grad_inplace"].check(checks=["incoming_grad_inplace"])
    message = "manualnet_zoo::linear_tanh_grad_inplace.backward modified its incoming gradient 0 (grad_output) in place"
    assert all(r.status == "failed" and message in r.note for r in report.results), report.markdown()


# ------------------------------------------------------------------------------------------- opcheck's tests


@pytest.mark.parametrize(
    ("name", "check", "message"),
    [
        (
            "linear_tanh_bad_fake",
            "opcheck_faketensor",
            "general: opcheck test_faketensor: MetadataMismatchError: When comparing the output of "
            "manualnet_zoo.linear_tanh_bad_fake.default on FakeTensor and concrete Tensors, found mismatched tensor "
            "metadata: Shapes torch.Size([6, 3]) and torch.Size([6, 4]) are not equal!",
        ),
        (
            "linear_tanh_no_fake",
            "opcheck_faketensor",
            "general: opcheck test_faketensor: RuntimeError: There was no fake impl registered for "
            "<CustomOpDef(manualnet_zoo::linear_tanh_no_fake)>.",
        ),
        (
            "softmax_shifts_input",
            "opcheck_schema",
            "rows: opcheck test_schema: RuntimeError: Argument x is not defined as mutable but was mutated",
        ),
        (
            "scale_or_input",
            "opcheck_schema",
            "scale 1: opcheck test_schema: RuntimeError: Argument x is not defined to alias output but was aliasing",
        ),
        (
            "linear_tanh_grad_missing",
            "opcheck_aot_dispatch_dynamic",
            "general: opcheck test_aot_dispatch_dynamic: RuntimeError: The backward formula for "
            "manualnet_zoo.linear_tanh_grad_missing.default returned an incorrect number of gradients (expected 3, "
            "got 2).",
        ),
    ],
)
def test_an_opcheck_failure_carries_opchecks_own_message(name, check, message):
    case = zoo_ops.OPS[name]
    report = check_function(case.fn, case.reference, case.make_inputs, checks=[check], dtypes=[torch.float64])
    (r,) = report.results
    assert r.status == "failed" and r.note.startswith(message), r.note


def test_opchecks_are_not_applicable_with_the_reason_for_an_fn_that_is_not_one_op():
    function = check_function(zoo_ops.linear_tanh_reference, None, zoo_ops.linear_tanh_inputs, checks=OPCHECKS)
    assert {(r.status, r.note.split(" (")[0]) for r in function.results} == {("n/a", "fn is not a custom op")}
    packet = check_function(torch.ops.manualnet_zoo.twice, None, zoo_ops.twice_inputs, checks=OPCHECKS)
    for r in packet.results:
        assert r.status == "n/a" and r.note.startswith("manualnet_zoo::twice has the overloads ['default', 'scaled']")


def test_the_quick_profile_runs_opchecks_tests_except_the_one_that_compiles():
    assert [c for c in PROFILES["quick"] if c.startswith("opcheck")] == [
        "opcheck_schema",
        "opcheck_autograd_registration",
        "opcheck_faketensor",
    ]
    assert "opcheck_aot_dispatch_dynamic" in PROFILES["full"]


# ------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fn", "given"),
    [
        (3, "got int"),
        (torch.ops.manualnet_zoo, "got _OpNamespace"),
        (Cube, "got the autograd.Function class Cube: pass its apply"),
    ],
)
def test_an_fn_that_is_no_callable_module_or_op_is_refused_naming_fn_the_expected_and_the_given(fn, given):
    calls = []

    def make_inputs(dtype, device, gen):
        calls.append(dtype)
        return (torch.randn(3, dtype=dtype),)

    expected = "a callable (a function, MyFn.apply, an nn.Module or a torch.library.custom_op or triton_op"
    with pytest.raises(TypeError, match=rf"^fn: expected {re.escape(expected)}.*{given}$"):
        check_function(fn, lambda x: x**3, make_inputs)
    assert not calls  # refused before any sample was drawn
