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

from manualnet.crosscheck import CHECKS as CHECKS_ALL  # noqa: E402
from manualnet.crosscheck import Sample, check_function  # noqa: E402


def scaled_grad(x):
    """x with gradient 3.14, in plain torch ops: the reference of a Function with that custom gradient."""
    s = ScaleGradGenVmap.scale
    return x * s - (x * (s - 1)).detach()


def sort_with_inverse(x, dim):
    values, ind = x.sort(dim=dim)
    return values, ind, ind.argsort(dim=dim)


# name: (reference, checks expected to fail). Without a failure, the Function must pass every check.
REFERENCES = {
    "NumpyCubeAutogradFunction": (lambda x: (x**3, 3 * x**2), set()),
    "NumpyExpMarkDirtyAutogradFunction": (lambda x: x.exp(), set()),
    "NumpyMulAutogradFunction": (lambda x, y: x * y, set()),
    "NumpyCubeNotComposableAutogradFunction": (lambda x: x**3, {"backward", "checkpoint", "noncontiguous"}),
    "NumpySortAutogradFunction": (sort_with_inverse, {"forward", "noncontiguous", "checkpoint"}),
    "NumpyTakeAutogradFunction": (lambda x, ind, ind_inv, dim: torch.take_along_dim(x, ind, dim), set()),
    "SelectAutogradFunction": (lambda x, idx: x[idx], set()),
    "CubeGenVmapAutogradFunction": (lambda x: (x**3, 3 * x**2), {"backward"}),
    "MulGenVmapAutogradFunction": (lambda x, y: x * y, set()),
    "SortGenVmapAutogradFunction": (sort_with_inverse, set()),
    "SelectGenVmapAutogradFunction": (lambda x, idx: x[idx], set()),
    "ScaleGradGenVmapAutogradFunction": (scaled_grad, set()),
    "ZeroGradientsGenVmapAutogradFunction": (lambda x, y: (x.clone(), y.clone()), {"backward"}),
    "ForwardHasDefaultArgsAutogradFunction": (lambda x, idx=(2,): x[idx], set()),
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
    assert set(REFERENCES) == set(DB)


@pytest.mark.parametrize("name", sorted(DB))
def test_corpus_function_gets_its_written_verdict_on_every_non_compile_check(name):
    reference, fails = REFERENCES[name]
    report = check_function(DB[name].op, reference, samples_of(DB[name]), profile="quick", name=name)
    failed = {r.check for r in report.failed()}
    assert fails <= failed and report.ok == (not fails), report.markdown()
    if not fails:
        assert report.warnings() == [], report.markdown()
