"""docs/derivation.md quotes code from manualnet/functional.py: every quote must still be there, so the document
cannot drift from the code it explains.

A quote is a `backticked` span that is code, not an equation: a span in a table's "code" column, a span right after
"`Place`: ", or a span with an attribute call or transpose (`x.T`, `torch.addmm(`); of those, the ones with an
assignment or a call (not a bare name like `TwoLayerNet.__init__`). Compared with all whitespace removed.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = re.sub(r"\s+", "", (REPO / "manualnet" / "functional.py").read_text())


def quotes(markdown: str) -> list[str]:
    """The code quotes of a markdown text, in order."""
    found, code_column = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if any(c.startswith("code") for c in cells):  # a table header with a code column
                code_column = next(i for i, c in enumerate(cells) if c.startswith("code"))
                continue
            if code_column is not None and code_column < len(cells):
                found += re.findall(r"`([^`]+)`", cells[code_column])
        else:
            code_column = None
            found += re.findall(r"`[\w.]+`: `([^`]+)`", line)
        found += [q for q in re.findall(r"`([^`]+)`", line) if re.search(r"\w\.(\w+\(|T\b)", q)]
    return [q for q in dict.fromkeys(found) if "=" in q or "(" in q]


def test_every_code_quote_in_the_derivation_is_in_functional_py():
    doc = (REPO / "docs" / "derivation.md").read_text()
    found = quotes(doc)
    missing = [q for q in found if re.sub(r"\s+", "", q) not in CODE]
    assert len(found) >= 10  # the quotes are found at all
    assert not missing, f"docs/derivation.md quotes code that manualnet/functional.py no longer has: {missing}"


def test_the_quote_finder_finds_table_text_and_call_quotes():
    text = "| a | code |\n| --- | --- |\n| x | `dw = a @ b` |\n\n`Fn.forward`: `s = f(x)` and `y.sum(0)` and `x + 1`\n"
    assert quotes(text) == ["dw = a @ b", "s = f(x)", "y.sum(0)"]
