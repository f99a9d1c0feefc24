"""The pytest plugin of manualnet (registered through the pytest11 entry point): the `crosscheck` fixture.

    def test_my_fn(crosscheck):
        crosscheck(MyFn.apply, reference, make_inputs)   # options of check_function as keyword arguments
        crosscheck(subject, profile="quick")             # a FunctionUnderTest, with options over its own

A failing check fails the test with Report.assert_ok's message: a first line naming the failed checks and the first
symptom, then the diagnosis and the table. `pytest --crosscheck-report PATH` writes the
Markdown matrix of every Function checked in the session to PATH.
"""

from pathlib import Path

import pytest

REPORTS = pytest.StashKey[list]()


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--crosscheck-report",
        metavar="PATH",
        default=None,
        help="write the Markdown matrix of every Function checked through the crosscheck fixture to PATH",
    )


def pytest_configure(config) -> None:
    config.stash[REPORTS] = []


@pytest.fixture
def crosscheck(request):
    """check_function(fn, reference, make_inputs, **options), or FunctionUnderTest.check(**options) given one,
    failing the test with the table when a check fails; returns the Report."""
    from manualnet.crosscheck import FunctionUnderTest, check_function  # torch only in tests that use the fixture

    def run(fn, *args, **options):
        __tracebackhide__ = True  # the failure points at the user's test, not at this plugin
        report = (
            fn.check(*args, **options) if isinstance(fn, FunctionUnderTest) else check_function(fn, *args, **options)
        )
        request.config.stash[REPORTS].append((request.node.nodeid, report))
        report.assert_ok()
        return report

    return run


def pytest_sessionfinish(session) -> None:
    path = session.config.getoption("--crosscheck-report")
    reports = session.config.stash.get(REPORTS, [])
    if path is None or not reports:
        return
    parts = ["# Cross-check report", ""]
    for nodeid, report in reports:
        parts += [f"`{nodeid}`", "", report.markdown(), ""]
    Path(path).write_text("\n".join(parts))
