"""The crosscheck fixture (manualnet.crosscheck.pytest_plugin, installed through the pytest11 entry point): a user's
test is one line, a failing check fails it with the table, and --crosscheck-report writes every Function's matrix."""

import subprocess
import sys
import textwrap

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
        return g * 3 * x**FACTOR


def make_inputs(dtype, device, generator):
    return (torch.randn(4, 3, dtype=dtype, device=device, generator=generator),)


def test_right_cube(crosscheck):
    crosscheck(Cube.apply, lambda x: x**3, make_inputs, checks=["forward", "backward", "gradcheck"])


def test_wrong_cube(crosscheck, monkeypatch):
    monkeypatch.setitem(globals(), "FACTOR", 3)
    crosscheck(Cube.apply, lambda x: x**3, make_inputs, checks=["backward"], name="wrong cube")


FACTOR = 2
"""


def test_fixture_passes_a_right_function_fails_a_wrong_one_with_the_table_and_writes_the_report(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    report = tmp_path / "crosscheck.md"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--crosscheck-report", str(report)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "FAILED test_user.py::test_wrong_cube" in run.stdout
    assert "| backward | float32 | cpu | **FAILED** |" in run.stdout  # the table is the failure message
    written = report.read_text()
    assert "`test_user.py::test_right_cube`" in written and "### Cube.apply: ok" in written
    assert "### wrong cube: FAILED: backward" in written
