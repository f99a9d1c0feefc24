"""The harness on Functions written the way other people write them (tests/zoo_others.py): every correct one passes
with exactly its expected warnings (no false alarm), every wrong one fails exactly on its expected checks (no silent
pass), in the quick profile (no compile checks; tests/test_harness_compile.py has those)."""

import pytest
import zoo_others

from manualnet.crosscheck import check_function


@pytest.mark.parametrize("name", zoo_others.OTHERS)
def test_function_written_by_others_gets_exactly_its_expected_verdict(name):
    case = zoo_others.OTHERS[name]
    report = check_function(case.fn, case.reference, case.make_inputs, profile="quick", name=name, **case.options)
    failed, warned = {r.check for r in report.failed()}, {r.check for r in report.warnings()}
    assert (failed, warned) == (case.fails, case.warns), report.markdown()
    assert report.ok == (not case.fails)
