"""The harness on PyTorch's own corpus of custom Functions (torch.testing._internal.autograd_function_db): every
Function in it runs through check_function with a plain-torch reference, and gets its verdict in
tests/golden/verdicts.txt.

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
import golden  # noqa: E402
from torch.testing._internal.autograd_function_db import (  # noqa: E402
    ScaleGradGenVmap,
    autograd_function_db,
)

from manualnet.crosscheck import FunctionUnderTest, Sample  # noqa: E402


def scaled_grad(x):
    """x with gradient 3.14, in plain torch ops: the reference of a Function with that custom gradient."""
    s = ScaleGradGenVmap.scale
    return x * s - (x * (s - 1)).detach()


def sort_with_inverse(x, dim):
    values, ind = x.sort(dim=dim)
    return values, ind, ind.argsort(dim=dim)


# name: the plain-torch reference of each Function in the corpus.
REFERENCES = {
    "NumpyCubeAutogradFunction": lambda x: (x**3, 3 * x**2),
    "NumpyExpMarkDirtyAutogradFunction": lambda x: x.exp(),
    "NumpyMulAutogradFunction": lambda x, y: x * y,
    "NumpyCubeNotComposableAutogradFunction": lambda x: x**3,
    "NumpySortAutogradFunction": sort_with_inverse,
    "NumpyTakeAutogradFunction": lambda x, ind, ind_inv, dim: torch.take_along_dim(x, ind, dim),
    "SelectAutogradFunction": lambda x, idx: x[idx],
    "CubeGenVmapAutogradFunction": lambda x: (x**3, 3 * x**2),
    "MulGenVmapAutogradFunction": lambda x, y: x * y,
    "SortGenVmapAutogradFunction": sort_with_inverse,
    "SelectGenVmapAutogradFunction": lambda x, idx: x[idx],
    "ScaleGradGenVmapAutogradFunction": scaled_grad,
    "ZeroGradientsGenVmapAutogradFunction": lambda x, y: (x.clone(), y.clone()),
    "ForwardHasDefaultArgsAutogradFunction": lambda x, idx=(2,): x[idx],
}
# The four with real defects and the check meant to catch each; the others are correct (the sorts warn, rightly:
# they save the inverse permutation beside the indices).
INTENDED = {
    "NumpyCubeNotComposableAutogradFunction": "backward",  # backward returns 3x^2 without the incoming gradient
    "NumpySortAutogradFunction": "forward",  # forward returns x unsorted
    "CubeGenVmapAutogradFunction": "unused_outputs",  # backward ignores grad_saved, the second output's gradient
    "ZeroGradientsGenVmapAutogradFunction": "backward",  # zero gradients for a clone
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


def subject(name: str) -> FunctionUnderTest:
    return FunctionUnderTest(DB[name].op, REFERENCES[name], samples_of(DB[name]), {"name": name})


def test_every_function_of_the_corpus_has_a_reference_and_a_golden_verdict():
    assert set(REFERENCES) == set(DB) and set(INTENDED) <= set(DB)
    golden.assert_corpus("torch", DB)


@pytest.mark.parametrize("name", sorted(DB))
def test_corpus_function_gets_no_false_alarm_or_its_intended_catch_and_exactly_its_golden_verdict(name):
    golden.assert_verdict(f"torch/{name}", subject(name).check(profile="quick"), INTENDED.get(name))


COMPILE = ["compile", "compile_func_grad", "compile_jvp"]


def test_a_correct_corpus_function_dynamo_cannot_trace_is_not_applicable_with_dynamos_reason_never_passed():
    # MulGenVmap lives in torch's own package (Dynamo skips it as given) and defines jvp (Dynamo refuses to trace
    # any such Function as Cls.apply): nothing compiled, so nothing may pass; the refusal is PyTorch's for every
    # Function with a jvp, so n/a rather than a warning. Under torch.func Dynamo traces it, dropping its backward.
    name = "MulGenVmapAutogradFunction"
    report = subject(name).check(checks=COMPILE, dtypes=[torch.float32])
    by_check = {r.check: r for r in report.results}
    assert by_check["compile"].status == "n/a", report.markdown()
    assert "Unsupported custom jvp" in by_check["compile"].note and "marked as skipped" in by_check["compile"].note
    assert by_check["compile_func_grad"].status == "warning" and "never ran" in by_check["compile_func_grad"].note


def test_a_custom_gradient_in_a_skipped_module_is_traced_as_cls_apply_and_fails_under_compile_func_grad():
    # Given as ScaleGradGenVmap.apply it runs eagerly inside torch.compile (the old harness then said "passed");
    # called as Cls.apply it is traced, and torch.compile drops its custom gradient (pytorch #193279, #192985).
    name = "ScaleGradGenVmapAutogradFunction"
    report = subject(name).check(checks=COMPILE, dtypes=[torch.float32])
    by_check = {r.check: r for r in report.results}
    for check in ("compile_func_grad", "compile_jvp"):
        assert by_check[check].status == "failed", report.markdown()
        assert "traced as Cls.apply from the calling frame" in by_check[check].note
    assert by_check["compile"].status == "n/a", report.markdown()
