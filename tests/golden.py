"""The corpora's expected verdicts, in one golden file: tests/golden/verdicts.txt holds one block per Function (the
project's zoos of bugs, tests/zoo_others.py, the custom ops of tests/zoo_ops.py and PyTorch's autograd_function_db),
each the Function's name and every check that did not pass, by status. A corpus test computes its Function's block
and compares it with the file's; `EXPECTTEST_ACCEPT=1 pytest ...` (expecttest's convention) writes the computed
blocks into the file instead.

A block, with a check's dtypes named where its status holds in some of them only:

    zoo/transposed_grad (intended: backward)
      failed: backward, gradcheck (float64), ...
      warning: input_subsets
      n/a: gradcheck (float32), ...
"""

import difflib
import os
from collections import Counter
from pathlib import Path

from manualnet.crosscheck import Report

PATH = Path(__file__).resolve().parent / "golden" / "verdicts.txt"
ACCEPT = bool(os.environ.get("EXPECTTEST_ACCEPT"))
CORPUS_TESTS = (
    "tests/test_harness.py",
    "tests/test_harness_checks.py",
    "tests/test_harness_others.py",
    "tests/test_harness_ops.py",
    "tests/test_autograd_function_db.py",
)
HEADER = f"""\
# The expected verdict of every Function in the project's corpora: its name (and, for a deliberate bug, the check
# meant to catch it), then each check that did not pass, by status; a check's dtypes are named where the status
# holds in some of them only. Each corpus in its test's profile: ops/ (tests/zoo_ops.py) over the full battery, the
# others in the quick one (checks/ and zoo/ adding the checks their bugs are for). Written by the corpus tests
# (docs/crosscheck.md, "Adding a check"):
# EXPECTTEST_ACCEPT=1 python -m pytest {" ".join(CORPUS_TESTS)}
"""
STATUSES = ("failed", "warning", "n/a")
LEGAL_BUT_COSTLY = {"input_subsets", "saved_tensors"}  # what a correct Function may be warned of (quick profile)


def block(name: str, report: Report, intended: str | None = None) -> str:
    """The golden block of one Function: its heading, then one line per status that some check got."""
    lines = [name + (f" (intended: {intended})" if intended else "")]
    cells = Counter(r.check for r in report.results)  # (dtype, device) cells per check
    multi_device = len({r.device for r in report.results}) > 1
    for status in STATUSES:
        at: dict[str, list[str]] = {}
        for r in report.results:
            if r.status == status:
                at.setdefault(r.check, []).append(f"{r.device} {r.dtype}" if multi_device else r.dtype)
        named = [c if len(where) == cells[c] else f"{c} ({', '.join(where)})" for c, where in at.items()]
        if named:
            lines.append(f"  {status}: {', '.join(named)}")
    return "\n".join(lines)


def assert_verdict(name: str, report: Report, intended: str | None) -> None:
    """What holds whatever the golden file says, then the golden block (so that a regenerated file cannot bless a
    false alarm). intended=None: a correct Function: no failure but the reference failing, no warning but the legal
    but costly kinds. Else the intended check fails or warns. Either way the verdict line agrees."""
    failed, warned = {r.check for r in report.failed()}, {r.check for r in report.warnings()}
    if intended is None:
        blamed = [f"{r.check}: {r.note}" for r in report.failed() if not r.note.startswith("the reference raised")]
        assert not blamed and warned <= LEGAL_BUT_COSTLY, report.markdown()
    else:
        assert intended in failed | warned and intended in report.markdown().splitlines()[0], report.markdown()
    assert report.ok == (not failed)
    assert_golden(name, block(name, report, intended))


def read() -> dict[str, str]:
    """{name: block} from the golden file (empty when there is none)."""
    if not PATH.exists():
        return {}
    parts = [p.strip("\n") for p in PATH.read_text().split("\n\n")]
    blocks = [p for p in parts if p and not p.startswith("#")]
    return {b.split("\n", 1)[0].split(" ", 1)[0]: b for b in blocks}


def write(blocks: dict[str, str]) -> None:
    """The file: the header, then the blocks in the order of their names."""
    text = HEADER + "".join(f"\n{blocks[name]}\n" for name in sorted(blocks))
    if not PATH.exists() or PATH.read_text() != text:
        PATH.parent.mkdir(exist_ok=True)
        PATH.write_text(text)


def assert_golden(name: str, got: str) -> None:
    """got equals the golden block of `name`, or (EXPECTTEST_ACCEPT set) replaces it in the file."""
    blocks = read()
    if ACCEPT:
        write(blocks | {name: got})
        return
    want = blocks.get(name)
    if want != got:
        diff = "\n".join(
            difflib.unified_diff((want or "").splitlines(), got.splitlines(), "golden", "now", lineterm="")
        )
        hint = "no block for it" if want is None else "the verdict differs"
        raise AssertionError(f"{name}: {hint} in {PATH.name} (EXPECTTEST_ACCEPT=1 rewrites it)\n{diff}")


def assert_corpus(prefix: str, names) -> None:
    """The golden file holds a block for each of `names` under prefix/ and no other (EXPECTTEST_ACCEPT set: blocks
    of Functions no longer in the corpus are removed)."""
    blocks = read()
    have = {n for n in blocks if n.startswith(prefix + "/")}
    want = {f"{prefix}/{n}" for n in names}
    if ACCEPT:  # the corpus tests write the missing blocks
        write({n: b for n, b in blocks.items() if n not in have - want})
        return
    assert have == want, (
        f"{PATH.name}: blocks of no {prefix} Function {sorted(have - want)}, none for {sorted(want - have)}"
    )
