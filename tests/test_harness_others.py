"""The harness on Functions written the way other people write them (tests/zoo_others.py): every correct one passes
with no false alarm (no failure but its reference failing, no warning but the legal-but-costly kinds), every wrong one
is caught by the check meant for it, and each gets exactly its verdict in tests/golden/verdicts.txt, in the quick
profile (no compile checks)."""

import golden
import pytest
import zoo_others


@pytest.mark.parametrize("name", zoo_others.OTHERS)
def test_function_written_by_others_gets_no_false_alarm_or_its_intended_catch_and_exactly_its_golden_verdict(name):
    case = zoo_others.OTHERS[name]
    golden.assert_verdict(f"others/{name}", case.check(profile="quick", name=name), case.intended)


def test_the_golden_file_holds_a_verdict_for_each_function_written_by_others_and_no_other():
    golden.assert_corpus("others", zoo_others.OTHERS)
