"""The registry of checks (manualnet.crosscheck.checks.CHECKS): each check's needs decide, before it runs, whether it
applies; an unmet need makes it n/a with that need's reason; a new check is one function and one entry."""

import re
from pathlib import Path

import golden
import pytest
import torch
from cube import Cube

from manualnet.crosscheck import CHECKS, PROFILES, FunctionUnderTest, check_function, checks
from manualnet.crosscheck.needs import NEEDS, Check


def make_x(dtype, device, gen):
    return (torch.randn(4, 3, dtype=dtype, device=device, generator=gen),)


def make_x_w(dtype, device, gen):
    return torch.randn(4, 3, dtype=dtype, device=device, generator=gen), torch.randn(3, 2, dtype=dtype, device=device)


def make_scalar(dtype, device, gen):
    return (torch.randn((), dtype=dtype, device=device, generator=gen),)


class OldStyleCube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x**2


def cube(x):
    return x**3


# (check, the need it lacks here, fn, reference, make_inputs, options, dtype, the reason in the note)
UNMET = [
    ("forward", "reference", Cube.apply, None, make_x, {}, torch.float64, "needs a reference"),
    ("gradcheck", "float64", Cube.apply, cube, make_x, {}, torch.float32, "finite differences run in float64 only"),
    ("gradgradcheck", "smooth_sample", Cube.apply, cube, make_x, {"kinks": ["sample"]}, torch.float64, "every sample"),
    ("input_subsets", "two_inputs", Cube.apply, cube, make_x, {}, torch.float64, "one differentiable input"),
    ("func_grad", "func", OldStyleCube.apply, cube, make_x, {}, torch.float64, "OldStyleCube: old-style"),
    ("vmap_grad", "vmap_rule", Cube.apply, cube, make_x, {}, torch.float64, "no vmap rule (Cube: set"),
    ("jvp", "jvp", Cube.apply, cube, make_x, {}, torch.float64, "no jvp (Cube)"),
    ("compile_dynamic", "two_shapes", Cube.apply, cube, make_x, {}, torch.float64, "one sample shape"),
]


def exploding(case, tally):
    raise RuntimeError("the check ran")


@pytest.mark.parametrize(
    ("check", "need", "fn", "reference", "make_inputs", "options", "dtype", "reason"), UNMET, ids=[u[1] for u in UNMET]
)
def test_a_check_whose_need_is_unmet_is_not_applicable_with_the_needs_reason_before_it_runs(
    monkeypatch, check, need, fn, reference, make_inputs, options, dtype, reason
):
    assert need in CHECKS[check].needs
    # the check's own code replaced by one that raises: the need alone must decide, without running it
    monkeypatch.setitem(CHECKS, check, Check(exploding, needs=CHECKS[check].needs))
    (r,) = check_function(fn, reference, make_inputs, checks=[check], dtypes=[dtype], **options).results
    assert (r.status, r.note.startswith(reason)) == ("n/a", True), r


def test_a_check_whose_needs_are_met_runs(monkeypatch):
    monkeypatch.setitem(CHECKS, "exploding", Check(exploding, needs=("reference", "func")))
    results = check_function(Cube.apply, cube, make_x, checks=["exploding"]).results
    assert [r.status for r in results] == ["failed", "failed"] and "RuntimeError: the check ran" in results[0].note


def test_a_vmap_check_needs_a_batched_input_in_every_sample():
    report = check_function(cube, cube, make_scalar, checks=["vmap_grad"], dtypes=[torch.float64])
    (r,) = report.results
    assert r.status == "n/a" and r.note.startswith("no batched positional input at batch_args [0]"), r


def test_a_new_check_is_one_function_and_one_entry_and_runs_by_name_with_its_need(monkeypatch):
    seen = []

    def check_output_is_finite(case, t):
        for name, s in case.samples.items():
            seen.append((case.dtype, name))
            if not all(torch.isfinite(o).all() for o in [case.call(case.fn, s)]):
                t.fail(f"{name}: non-finite output")

    monkeypatch.setitem(CHECKS, "finite", Check(check_output_is_finite, needs=("float64",)))
    report = check_function(lambda x: 1 / (x - x), None, make_x, checks=["finite"])
    assert [(r.dtype, r.status) for r in report.results] == [("float32", "n/a"), ("float64", "failed")]
    assert seen == [(torch.float64, "sample")]


def test_every_registered_check_is_a_check_with_known_needs_and_the_profiles_list_registered_names():
    assert all(isinstance(c, Check) and set(c.needs) <= set(NEEDS) for c in CHECKS.values())
    assert all(set(p) <= set(CHECKS) for p in PROFILES.values())
    assert PROFILES["full"] == [c for c in CHECKS if c != "ddp"]  # ddp is opt-in: named in checks= only


@pytest.mark.parametrize("needs", [("gpu",), "reference"])
def test_a_check_naming_an_unknown_need_is_refused_naming_the_argument(needs):
    with pytest.raises(ValueError, match=r"^needs: expected a tuple of names from \['reference', "):
        Check(exploding, needs=needs)


# ------------------------------------------------------------------------------------------ a Function under test


def test_a_function_under_test_runs_with_its_own_options_and_a_given_option_wins():
    subject = FunctionUnderTest(Cube.apply, cube, make_x, {"checks": ["backward"], "dtypes": [torch.float64]})
    assert [(r.check, r.dtype) for r in subject.check().results] == [("backward", "float64")]
    assert [(r.check, r.dtype) for r in subject.check(dtypes=[torch.float32]).results] == [("backward", "float32")]
    assert subject.check(name="cube").name == "cube" and subject.options["dtypes"] == [torch.float64]


def test_the_crosscheck_fixture_takes_a_function_under_test(crosscheck):
    report = crosscheck(FunctionUnderTest(Cube.apply, cube, make_x), checks=["forward"])
    assert [r.status for r in report.results] == ["passed", "passed"]


@pytest.mark.parametrize(
    ("options", "given"), [({"kink": ["sample"]}, r"\['kink'\]"), ([("kinks", ["sample"])], "list")]
)
def test_a_function_under_test_with_an_unknown_option_is_refused_naming_it(options, given):
    with pytest.raises(
        ValueError, match=rf"^options: expected a dict of check_function's options \[.*'kinks'.*got {given}$"
    ):
        FunctionUnderTest(Cube.apply, cube, make_x, options)


# ------------------------------------------------------------------------------ docs/crosscheck.md, "Adding a check"

DOC = Path(__file__).resolve().parents[1] / "docs" / "crosscheck.md"


def test_the_docs_on_adding_a_check_quote_the_registry_the_needs_and_the_golden_command_as_they_are():
    section = DOC.read_text().split("## Adding a check\n", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"^    (\".*Check\(.*)$", section, re.M)
    source = Path(checks.__file__).read_text()
    assert quoted and all(f"    {line}\n" in source for line in quoted)
    assert re.findall(r"^\| `(\w+)` \|", section, re.M) == list(NEEDS)
    (command,) = re.findall(r"^    (EXPECTTEST_ACCEPT=1 .*)$", section, re.M)
    assert (
        command == f"EXPECTTEST_ACCEPT=1 python -m pytest {' '.join(golden.CORPUS_TESTS)}" and command in golden.HEADER
    )
    assert all((DOC.parents[1] / f).exists() for f in golden.CORPUS_TESTS)
