"""Sweep a grid of manualnet-train overrides: one run folder per trial, resumable, a results table; the winner is chosen
by validation accuracy and only the winner is evaluated on the test split, once.

    python scripts/sweep.py --out runs/sweep/fashion-mnist --set model.hidden=1024,2048 --set data.flip=true,false \
        -- --data.dataset fashion-mnist --data.root /usr/share/datasets/fashion-mnist

The grid is every combination of the --set axes (KEY=V1,V2,...: a manualnet-train option without its leading --, and
the values as the command line takes them). Each trial runs `manualnet-train fit BASE OVERRIDES` (BASE: the arguments
after --; no --config, so the data set's recipe) in a fresh process, with `--trainer.limit_test_batches 0` (a trial
never looks at the test split) and its own run folder OUT/<trial>/version_<k>/ (trial.json there says its overrides).
Seeds are the recipe's unless an axis sets them, so trials differ only by their overrides.

A trial with a metrics.json is done: a rerun skips it, so an interrupted sweep resumes where it stopped (a trial cut
off midway runs again, in a new version folder beside the cut one). Running again into the same OUT with other --set
axes adds their trials to the same table (BASE must be the same).

After the grid, OUT/results.md and OUT/results.csv list every done trial in OUT, best val_acc first: its overrides
(blank: the recipe's value), impl, epochs, val_acc and training wall time. The winner is the first (ties: the
earlier trial). With --test-winner (give it on the last run of a sweep done in stages, so that no stage's interim
winner is tested) its best checkpoint is tested once with `manualnet-train test` (OUT/<trial>/test.json; never
repeated) and the tables show that test accuracy, for the winner only.

A plain grid, not a search library: the trials here are a few dozen at most, each a whole CLI run, and a grid with
resume needs nothing beyond the CLI. Bad input (no axis, an axis without values or repeated, a key the CLI does not
know or a value it cannot parse, an OUT holding trials of another BASE) exits 2 with one line before any trial runs.
"""

import argparse
import contextlib
import csv
import hashlib
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from lightning_ref.cli import main; main()"]


class SweepError(Exception):
    """Bad input to the sweep: one line, exit code 2."""


def parse_axes(sets: list[str]) -> dict[str, list[str]]:
    """--set KEY=V1,V2 ... -> {KEY: [V1, V2]}, in the order given."""
    if not sets:
        raise SweepError("--set: expected at least one axis KEY=V1,V2,..., got none (the sweep space is empty)")
    axes: dict[str, list[str]] = {}
    for s in sets:
        key, sep, values = s.partition("=")
        key = key.removeprefix("--")
        vals = [v for v in values.split(",") if v != ""] if sep else []
        if not key or not vals:
            raise SweepError(f"--set: expected KEY=V1,V2,... with at least one value, got {s!r}")
        if key in axes:
            raise SweepError(f"--set: expected each key once, got {key!r} twice")
        axes[key] = vals
    return axes


def trials(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def trial_id(base: list[str], overrides: dict[str, str]) -> str:
    """A folder name fixed by the base arguments and the overrides (sorted), so a rerun finds its trials again."""
    text = json.dumps({"base": base, "overrides": sorted(overrides.items())})
    return "t-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def fit_args(base: list[str], overrides: dict[str, str], out: Path, tid: str) -> list[str]:
    """The manualnet-train arguments of one trial."""
    args = ["fit", *base]
    for key, value in overrides.items():
        args += [f"--{key}", value]
    return args + [
        "--trainer.logger.init_args.save_dir",
        str(out),
        "--trainer.logger.init_args.name",
        tid,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.limit_test_batches",
        "0",
    ]


def check_parses(args: list[str]) -> None:
    """SweepError with the CLI's own line unless manualnet-train parses `args` (unknown keys, unparsable values)."""
    from lightning_ref.cli import main

    err, argv = io.StringIO(), sys.argv
    try:
        sys.argv = ["manualnet-train"]  # main() parses its args; LightningCLI warns when sys.argv holds others too
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main([*args, "--print_config"])
    except SystemExit as e:
        if e.code in (0, None):
            return
        lines = err.getvalue().strip().splitlines()
        raise SweepError(f"--set: a trial's options are refused: {lines[-1] if lines else e.code}") from None
    finally:
        sys.argv = argv


def done_metrics(folder: Path) -> dict | None:
    """The metrics.json of the trial's finished run, if it has one."""
    found = sorted(folder.glob("version_*/metrics.json"))
    return json.loads(found[-1].read_text()) if found else None


def run_trial(out: Path, tid: str, base: list[str], overrides: dict[str, str]) -> dict:
    """Run one trial's fit in a fresh process (its output appended to OUT/<trial>/log.txt); its metrics."""
    folder = out / tid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps({"base": base, "overrides": overrides}, indent=2) + "\n")
    with open(folder / "log.txt", "a") as log:
        proc = subprocess.run([*CLI, *fit_args(base, overrides, out, tid)], stdout=log, stderr=subprocess.STDOUT)
    metrics = done_metrics(folder)
    if proc.returncode != 0 or metrics is None:
        tail = (folder / "log.txt").read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"trial {tid} {overrides} failed (exit {proc.returncode}): {' '.join(tail)}")
    return metrics


def test_once(out: Path, tid: str, metrics: dict) -> float:
    """The test accuracy of the trial's best checkpoint: measured by `manualnet-train test` the first time, then read
    back from OUT/<trial>/test.json."""
    path = out / tid / "test.json"
    if path.exists():
        return json.loads(path.read_text())["test_acc"]
    run = Path(metrics["best_ckpt"]).parents[1]
    args = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", metrics["best_ckpt"]]
    args += ["--trainer.limit_test_batches", "1.0", "--trainer.logger.init_args.name", f"{tid}-test"]
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True)
    tested = sorted((out / f"{tid}-test").glob("version_*/metrics.csv"))
    if proc.returncode != 0 or not tested:
        raise RuntimeError(f"testing {tid} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    rows = [r for r in csv.DictReader(tested[-1].open()) if r.get("test_acc")]
    acc = float(rows[-1]["test_acc"])
    path.write_text(json.dumps({"test_acc": acc, "ckpt": metrics["best_ckpt"], "run": str(tested[-1].parent)}) + "\n")
    return acc


def table(out: Path) -> tuple[list[str], list[dict], str | None]:
    """Every done trial in OUT as a row (best val_acc first), the columns, and the winner's id."""
    rows, keys = [], []
    for trial in sorted(out.glob("t-*/trial.json")):
        metrics = done_metrics(trial.parent)
        if metrics is None:
            continue
        overrides = json.loads(trial.read_text())["overrides"]
        keys += [k for k in overrides if k not in keys]
        rows.append({"trial": trial.parent.name, **overrides, "impl": metrics["impl"], "epochs": metrics["epochs"],
                     "val_acc": metrics["val_acc"], "wall_s": metrics["wall_s"], "metrics": metrics})  # fmt: skip
    rows.sort(key=lambda r: -(r["val_acc"] if r["val_acc"] is not None else -1))
    columns = ["trial", *keys, "impl", "epochs", "val_acc", "test_acc", "wall_s"]
    return columns, rows, rows[0]["trial"] if rows else None


def write_tables(out: Path, columns: list[str], rows: list[dict], winner: str, test_acc: float | None) -> None:
    """OUT/results.md and OUT/results.csv."""

    def cell(row: dict, c: str) -> str:
        v = (test_acc if row["trial"] == winner and test_acc is not None else "") if c == "test_acc" else row.get(c, "")
        return f"{v:.4f}" if isinstance(v, float) and c.endswith("acc") else str(v)

    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*columns, "winner"])
        for r in rows:
            w.writerow([cell(r, c) for c in columns] + [int(r["trial"] == winner)])
    tested = "not tested (--test-winner)" if test_acc is None else f"test accuracy {test_acc:.4f} (measured once)"
    others = [(p.parent.name, json.loads(p.read_text())["test_acc"]) for p in sorted(out.glob("t-*/test.json"))]
    others = ", ".join(f"{t} {acc:.4f}" for t, acc in others if t != winner)
    lines = [
        f"Sweep in {out}: {len(rows)} trials, best validation accuracy first. Blank: the recipe's value. Winner by "
        f"validation accuracy: **{winner}**, {tested}; "
        + (f"also tested before, as the winners of earlier stages: {others}." if others else "no other trial tested."),
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" if c == "trial" or "." in c else "---:" for c in columns) + " |",
    ]
    for r in rows:
        cells = [cell(r, c) for c in columns]
        if r["trial"] == winner:
            cells[0] = f"**{cells[0]}** (winner)"
        lines.append("| " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; 0 when done, 2 for bad input (one line on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    base = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder (trials, results.md/.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2", help="one axis of the grid")
    parser.add_argument("--test-winner", action="store_true", help="test the winner's best checkpoint, once")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        axes = parse_axes(args.set)
        grid = trials(axes)
        for old in args.out.glob("t-*/trial.json"):
            if json.loads(old.read_text())["base"] != base:
                raise SweepError(f"--out: {args.out} holds trials of other base arguments ({old}); use another folder")
        for overrides in grid:
            check_parses(fit_args(base, overrides, args.out, "check"))
    except SweepError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    for i, overrides in enumerate(grid, 1):
        tid = trial_id(base, overrides)
        metrics = done_metrics(args.out / tid)
        status = "done before" if metrics is not None else "running"
        print(f"[{i}/{len(grid)}] {tid} {overrides}: {status}", flush=True)
        if metrics is None:
            metrics = run_trial(args.out, tid, base, overrides)
        print(
            f"    val_acc {metrics['val_acc']:.4f}, {metrics['epochs']} epochs, {metrics['wall_s']:.0f} s", flush=True
        )
    columns, rows, winner = table(args.out)
    test_acc = test_once(args.out, winner, rows[0]["metrics"]) if args.test_winner else None
    write_tables(args.out, columns, rows, winner, test_acc)
    print((args.out / "results.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
