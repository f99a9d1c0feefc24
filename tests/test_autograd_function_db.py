"""The harness on PyTorch's own corpus of custom Functions (torch.testing._internal.autograd_function_db): every
Function in it runs through check_function with a plain-torch reference, and gets the verdict written here.

The corpus holds correct Functions in many styles (NumPy inside, mark_dirty, integer outputs, non-tensor arguments,
default arguments, custom vmap rules, a scaled gradient) and four with real defects, found by the harness:
- NumpyCubeNotComposable: backward returns 3x^2 without multiplying by the incoming gradient;
- NumpySort: forward returns x unsorted, while its backward and jvp are those of the sort;
- CubeGenVmap: backward adds 6 * 3x^2 where the second output's term is 6 x * grad_saved (it ignores grad_saved);
- ZeroGradientsGenVmap: zero gradients (of a 3x4 too-large shape, which autograd sums away) for a clone.
"""

import pytest
import torch

pytest.importorskip("expecttest")  # the corpus imports it (a dev extra)
from torch.testing._internal.autograd_function_db import (  # noqa: E402
    ScaleGradGenVmap,
    autograd_function_db,
)

from manualnet.crosscheck import Sample, check_function  # noqa: E402


def scaled_grad(x):
    """x with gradient 3.14, in plain torch ops: the reference of a Function with that custom gradient."""
    s = ScaleGradGenVmap.scale
    return x * s - (x * (s - 1)).detach()


def sort_with_inverse(x, dim):
    values, ind = x.sort(dim=dim)
    return values, ind, ind.argsort(dim=dim)


# The checks that compare gradients with the reference's: a wrong backward fails them all.
GRADIENTS = {"autocast", "backward", "checkpoint", "noncontiguous", "gradcheck"}
TRANSFORMS = {"func_grad", "func_vjp", "jacrev", "vmap_grad", "vmap_vjp"}

# name: (reference, checks expected to fail, checks expected to warn) in the quick profile.
VERDICTS = {
    "NumpyCubeAutogradFunction": (lambda x: (x**3, 3 * x**2), set(), set()),
    "NumpyExpMarkDirtyAutogradFunction": (lambda x: x.exp(), set(), set()),
    "NumpyMulAutogradFunction": (lambda x, y: x * y, set(), set()),
    # backward returns 3x^2 without the incoming gradient
    "NumpyCubeNotComposableAutogradFunction": (
        lambda x: x**3,
        GRADIENTS | {"gradgradcheck", "func_grad", "func_vjp", "vmap_vjp"},
        set(),
    ),
    # forward returns x unsorted (its jvp, the sort's, disagrees with finite differences of it); saving ind_inv
    # beside ind is legal but costly
    "NumpySortAutogradFunction": (
        sort_with_inverse,
        {"autocast", "batched_fwd_grad", "checkpoint", "forward", "func_vjp", "gradcheck", "noncontiguous"},
        {"saved_tensors"},
    ),
    "NumpyTakeAutogradFunction": (lambda x, ind, ind_inv, dim: torch.take_along_dim(x, ind, dim), set(), set()),
    "SelectAutogradFunction": (lambda x, idx: x[idx], set(), set()),
    # backward ignores grad_saved (the second output's incoming gradient); so does its Hessian (fwd_over_rev)
    "CubeGenVmapAutogradFunction": (
        lambda x: (x**3, 3 * x**2),
        GRADIENTS | TRANSFORMS | {"fwd_over_rev", "gradgradcheck", "unused_outputs"},
        set(),
    ),
    "MulGenVmapAutogradFunction": (lambda x, y: x * y, set(), set()),
    "SortGenVmapAutogradFunction": (sort_with_inverse, set(), {"saved_tensors"}),
    "SelectGenVmapAutogradFunction": (lambda x, idx: x[idx], set(), set()),
    "ScaleGradGenVmapAutogradFunction": (scaled_grad, set(), set()),
    # zero gradients for a clone, and returned for inputs that did not ask
    "ZeroGradientsGenVmapAutogradFunction": (
        lambda x, y: (x.clone(), y.clone()),
        GRADIENTS | TRANSFORMS | {"batched_fwd_grad", "jvp", "unused_outputs"},
        {"input_subsets"},
    ),
    "ForwardHasDefaultArgsAutogradFunction": (lambda x, idx=(2,): x[idx], set(), set()),
}
DB = {op.name: op for op in autograd_function_db}


def samples_of(op):
    """make_inputs from the OpInfo's own sample inputs (its SampleInput: input, args, kwargs)."""

    def make_inputs(dtype, device, generator):
        torch.manual_seed(generator.initial_seed())  # make_tensor draws from the global generator
        return {
            f"sample {i}": Sample(s.input, *s.args, **s.kwargs)
            for i, s in enumerate(op.sample_inputs(device, dtype, requires_grad=False))
        }

    return make_inputs


def test_every_function_of_the_corpus_has_a_reference_and_a_verdict_here():
    assert set(VERDICTS) == set(DB)


@pytest.mark.parametrize("name", sorted(DB))
def test_corpus_function_gets_exactly_its_written_verdict_without_compile(name):
    reference, fails, warns = VERDICTS[name]
    report = check_function(DB[name].op, reference, samples_of(DB[name]), profile="quick", name=name)
    failed, warned = {r.check for r in report.failed()}, {r.check for r in report.warnings()}
    assert (failed, warned) == (fails, warns), report.markdown()


COMPILE = ["compile", "compile_func_grad", "compile_jvp"]


def test_a_correct_corpus_function_dynamo_cannot_trace_is_not_applicable_with_dynamos_reason_never_passed():
    # MulGenVmap lives in torch's own package (Dynamo skips it as given) and defines jvp (Dynamo refuses to trace
    # any such Function as Cls.apply): nothing compiled, so nothing may pass; the refusal is PyTorch's for every
    # Function with a jvp, so n/a rather than a warning. Under torch.func Dynamo traces it, dropping its backward.
    name = "MulGenVmapAutogradFunction"
    report = check_function(
        DB[name].op, VERDICTS[name][0], samples_of(DB[name]), checks=COMPILE, dtypes=[torch.float32], name=name
    )
    by_check = {r.check: r for r in report.results}
    assert by_check["compile"].status == "n/a", report.markdown()
    assert "Unsupported custom jvp" in by_check["compile"].note and "marked as skipped" in by_check["compile"].note
    assert by_check["compile_func_grad"].status == "warning" and "never ran" in by_check["compile_func_grad"].note


def test_a_custom_gradient_in_a_skipped_module_is_traced_as_cls_apply_and_fails_under_compile_func_grad():
    # Given as ScaleGradGenVmap.apply it runs eagerly inside torch.compile (the old harness then said "passed");
    # called as Cls.apply it is traced, and torch.compile drops its custom gradient (pytorch #193279, #192985).
    name = "ScaleGradGenVmapAutogradFunction"
    report = check_function(
        DB[name].op, VERDICTS[name][0], samples_of(DB[name]), checks=COMPILE, dtypes=[torch.float32], name=name
    )
    by_check = {r.check: r for r in report.results}
    for check in ("compile_func_grad", "compile_jvp"):
        assert by_check[check].status == "failed", report.markdown()
        assert "traced as Cls.apply from the calling frame" in by_check[check].note
    assert by_check["compile"].status == "n/a", report.markdown()
