"""The docs cannot drift from the code: docs/derivation.md's code quotes are still in manualnet/functional.py, and
every command README.md and docs/*.md quote still parses (the README's Python blocks run in test_harness.py and
test_plain_script.py).

A quote is a `backticked` span that is code, not an equation: a span in a table's "code" column, a span right after
"`Place`: ", or a span with an attribute call or transpose (`x.T`, `torch.addmm(`); of those, the ones with an
assignment or a call (not a bare name like `TwoLayerNet.__init__`). Compared with all whitespace removed.
"""

import argparse
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest

from lightning_ref.cli import main
from lightning_ref.sweep import runner

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


# ----------------------------------------------------------------------------------------- the commands the docs quote

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# a quoted command starts with one of these; "train" commands are manualnet-train's, however started
KINDS = {
    "manualnet-train ": "train",
    ".venv/bin/manualnet-train ": "train",
    "python scripts/train.py ": "train",
    "srun python scripts/train.py ": "train",
    "torchrun ": "train",
    "python -m ": "module",
    "make ": "make",
    "bash scripts/": "file",
    "sudo apt-get install ": "apt",
}


def quoted_commands(markdown: str) -> list[str]:
    """The shell commands a markdown text quotes: the lines of its code blocks (fenced or indented) and its inline
    `spans`, continuation lines joined and comments dropped, that start as one of KINDS."""
    lines, prose, fence = [], [], None
    for line in re.sub(r"\s*\\\n\s*", " ", markdown).splitlines():
        if line.startswith("```"):
            fence = line[3:] if fence is None else None
        elif fence is not None or line.startswith("    "):
            lines += [line.strip()] if fence in (None, "", "bash") else []
        else:
            prose.append(line)
    found = [c.split("  #")[0].split(" # ")[0].strip() for c in lines + re.findall(r"`([^`]+)`", " ".join(prose))]
    return [c for c in dict.fromkeys(found) if c.startswith(tuple(KINDS))]


def train_args(command: str) -> list[str]:
    """manualnet-train's arguments in a command, placeholders (<k>, $VAR) filled in and --ckpt_path left out (the
    checkpoints named are a user's)."""
    words = shlex.split(re.sub(r"<[^>]*>|\$\w+", "x", command))
    args = words[words.index("scripts/train.py") + 1 :] if "scripts/train.py" in words else words[1:]
    while "--ckpt_path" in args:
        del args[args.index("--ckpt_path") : args.index("--ckpt_path") + 2]
    return args


class Parsed(Exception):
    """Raised by argparse.ArgumentParser.parse_args once it parsed: the tool stops before any work."""


def parse_module_command(module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `python -m module argv` in this process up to its argparse parse, which must succeed: the main() that the
    module (or a package's __main__) runs, with sys.argv as `python -m` sets it."""
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        parse(self, args, namespace)
        raise Parsed

    entry = importlib.import_module(module)
    if hasattr(entry, "__path__"):  # a package: what its __main__ runs
        entry = importlib.import_module(f"{module}.__main__")
    with monkeypatch.context() as patch, pytest.raises(SystemExit if "--help" in argv else Parsed) as stopped:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", [module, *argv])
        entry.main()
    assert stopped.type is Parsed or stopped.value.code == 0


def test_the_command_finder_joins_continuations_and_drops_comments():
    text = "Run `make demo` or\n\n    manualnet-train fit \\\n        --model.hidden 8   # a comment\n    ls\n"
    assert quoted_commands(text) == ["manualnet-train fit --model.hidden 8", "make demo"]


def test_every_command_the_docs_quote_parses(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)  # the commands' paths are relative to the repository
    makefile = (REPO / "Makefile").read_text()
    commands = {c: path.name for path in DOCS for c in quoted_commands(path.read_text())}
    kinds = [KINDS[next(k for k in KINDS if c.startswith(k))] for c in commands]
    assert {"train", "module", "make", "file"} <= set(kinds) and kinds.count("train") >= 8  # the finder finds them
    for command, doc in commands.items():
        kind, words = KINDS[next(k for k in KINDS if command.startswith(k))], shlex.split(command.replace("$", ""))
        where = f"{doc}: {command}"
        if kind == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.M), f"{where}: no such Makefile target"
        elif kind == "file":
            assert (REPO / words[1]).is_file(), f"{where}: no such file"
        elif kind == "train":
            monkeypatch.setattr(sys, "argv", ["manualnet-train"])  # main() parses its args list, not pytest's
            with pytest.raises(SystemExit) as exit_:
                main([*train_args(command), "--print_config"])
            assert exit_.value.code in (0, None), f"{where}: {capsys.readouterr().err[-500:]}"
        elif kind == "module" and words[2] == "lightning_ref.sweep" and "--out" in words:
            argv = words[3:]
            argv[argv.index("--out") + 1] = str(tmp_path / "out")
            args, base, grid = runner.plan(argv)  # every trial's options parse, too
            assert grid, where
        elif kind == "module":
            try:
                parse_module_command(words[2], words[3:], monkeypatch)
            except SystemExit as e:  # argparse refused the arguments
                pytest.fail(f"{where}: exit {e.code}: {capsys.readouterr().err[-500:]}")
        capsys.readouterr()


def test_the_readmes_python_blocks_run():
    # The check_function block needs a Function to check (tests/test_harness.py gives it one) and the plain Lightning
    # script trains (tests/test_plain_script.py runs it smaller); every other block runs as it is.
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    standalone = [b for b in blocks if "check_function" not in b and "import lightning" not in b]
    assert len(blocks) == len(standalone) + 2 and standalone
    for block in standalone:
        exec(block, {})
