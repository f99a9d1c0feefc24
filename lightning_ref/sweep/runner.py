"""Sweep a grid of manualnet-train overrides over seeds: one run folder per trial, resumable, tables of each
configuration's mean and spread over its seeds; the winner is chosen by validation accuracy, and the test split is
looked at only when asked.

    python -m lightning_ref.sweep --out runs/sweep/fashion-mnist --seeds 0-2 --set model.hidden=1024,2048 \
        --set data.flip=true,false -- --data.dataset fashion-mnist --data.root /usr/share/datasets/fashion-mnist

The grid is every combination of the --set axes (KEY=V1,V2,...: a manualnet-train option without its leading --, and
the values as the command line takes them) and of the --seeds (0-4, 5,7,9 or 3: each is --seed_everything S, which
sets the init, the validation split and the batch order). Each trial runs `manualnet-train fit BASE OVERRIDES` (BASE:
the arguments after --; no --config, so the data set's recipe) in a fresh process, one after another, with
`--trainer.limit_test_batches 0` (a trial never looks at the test split) and its own run folder
OUT/<trial>/version_<k>/ (trial.json there says its overrides). Without --seeds, the recipe's seed.

A trial with a metrics.json is done: a rerun skips it, so an interrupted sweep resumes where it stopped (a trial cut
off midway runs again, in a new version folder beside the cut one). Running again into the same OUT with other --set
axes or seeds adds their trials to the same tables (BASE must be the same).

After the grid, OUT/results.md and OUT/results.csv aggregate every done trial in OUT by configuration (its overrides
and impl): mean, standard deviation, min and max over its seeds of val_best (the best-validation checkpoint's
val_acc), val_last (the last epoch's), test_best and test_last (where tested) and the training time; and, for each
configuration run with both impls, the paired difference manual - autograd per seed. OUT/trials.csv has a row per
trial. The winner is the configuration with the best mean val_last (ties: the one run first): the last epoch's
checkpoint is the one manualnet-train fit tests, and its val_acc, unlike val_best, is not the maximum of a run's
curve (lightning_ref.sweep.checkpoint_policy). Testing runs
`manualnet-train test` on a trial's best-validation checkpoint and on its last.ckpt, once (OUT/<trial>/test.json;
never repeated): --test-winner tests the winner's trials (give it on the last run of a sweep done in stages, so that
no stage's interim winner is tested); --test-all tests every trial of this run's grid (a report on fresh seeds, after
the choice is made).

A plain grid, not a search library: the trials here are a few dozen at most, each a whole CLI run, and a grid with
resume needs nothing beyond the CLI. Bad input (no axis and no seeds, an axis without values or repeated, bad seeds, a
key the CLI does not know or a value it cannot parse, an OUT holding trials of another BASE) exits 2 with one line
before any trial runs.
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
import time
from pathlib import Path

from lightning_ref.sweep.tables import SEED, aggregate, trial_row, write_tables

CLI = [sys.executable, "-c", "from lightning_ref.cli import main; main()"]


class SweepError(Exception):
    """Bad input to the sweep: one line, exit code 2."""


def parse_seeds(text: str | None) -> list[int]:
    """--seeds 0-4 / 5,7,9 / 3 -> [0, 1, 2, 3, 4] / [5, 7, 9] / [3]; None -> [] (the recipe's seed)."""
    if text is None:
        return []
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not (low.isdigit() and (high.isdigit() if dash else True)) or (dash and int(high) < int(low)):
            raise SweepError(f"--seeds: expected seeds like 0-4, 5,7,9 or 3 (integers >= 0), got {text!r}")
        seeds += range(int(low), int(high) + 1) if dash else [int(low)]
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds: expected each seed once, got {text!r}")
    return seeds


def parse_axes(sets: list[str], seeds: list[int]) -> dict[str, list[str]]:
    """--set KEY=V1,V2 ... -> {KEY: [V1, V2]}, in the order given, after the seeds as the first axis."""
    if not sets and not seeds:
        raise SweepError("--set: expected an axis KEY=V1,V2,... or --seeds, got neither (the sweep space is empty)")
    axes: dict[str, list[str]] = {}
    for s in sets:
        key, sep, values = s.partition("=")
        key = key.removeprefix("--")
        vals = [v for v in values.split(",") if v != ""] if sep else []
        if not key or not vals:
            raise SweepError(f"--set: expected KEY=V1,V2,... with at least one value, got {s!r}")
        if key in axes:
            raise SweepError(f"--set: expected each key once, got {key!r} twice")
        if key == SEED:
            raise SweepError(f"--set: expected the seeds as --seeds, got the axis {key!r}")
        axes[key] = vals
    # Seeds first, varying slowest: each seed runs every configuration before the next seed starts, so that the
    # configurations' trials interleave in time (a machine that slows down mid-sweep slows them alike).
    return ({SEED: [str(seed) for seed in seeds]} if seeds else {}) | axes


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
        start = time.perf_counter()
        proc = subprocess.run([*CLI, *fit_args(base, overrides, out, tid)], stdout=log, stderr=subprocess.STDOUT)
        print(f"process time: {time.perf_counter() - start:.1f} s", file=log)
    metrics = done_metrics(folder)
    if proc.returncode != 0 or metrics is None:
        tail = (folder / "log.txt").read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"trial {tid} {overrides} failed (exit {proc.returncode}): {' '.join(tail)}")
    return metrics


def test_trial(out: Path, tid: str, metrics: dict) -> dict:
    """Test the trial's best-validation checkpoint and its last.ckpt with `manualnet-train test`, the first time;
    then read back from OUT/<trial>/test.json: {"best": {"test_acc", "ckpt", "run"}, "last": {...}}."""
    path = out / tid / "test.json"
    if path.exists():
        return json.loads(path.read_text())
    run = Path(metrics["best_ckpt"]).parents[1]
    tests = {}
    for which in ("best", "last"):
        ckpt, name = metrics[f"{which}_ckpt"], f"{tid}-test-{which}"
        args = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", ckpt]
        args += ["--trainer.limit_test_batches", "1.0", "--trainer.logger.init_args.name", name]
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True)
        tested = sorted((out / name).glob("version_*/metrics.csv"))
        if proc.returncode != 0 or not tested:
            raise RuntimeError(f"testing {tid} ({which}) failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        rows = [r for r in csv.DictReader(tested[-1].open()) if r.get("test_acc")]
        tests[which] = {"test_acc": float(rows[-1]["test_acc"]), "ckpt": ckpt, "run": str(tested[-1].parent)}
    path.write_text(json.dumps(tests, indent=2) + "\n")
    return tests


def done_rows(out: Path) -> list[dict]:
    """A row (lightning_ref.sweep.tables.trial_row) per done trial in OUT, in the order the trials were first run."""
    rows = []
    for trial in sorted(out.glob("t-*/trial.json"), key=lambda p: p.stat().st_mtime_ns):
        metrics = done_metrics(trial.parent)
        if metrics is not None:
            rows.append(trial_row(trial, metrics))
    return rows


def plan(argv: list[str]) -> tuple[argparse.Namespace, list[str], list[dict[str, str]]]:
    """The sweep's options, BASE and grid, every trial's options checked by the CLI's parser; SweepError if bad."""
    base = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder (trials, results.md/.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2", help="one axis of the grid")
    parser.add_argument("--seeds", metavar="0-4", help="the seeds (--seed_everything) each configuration runs with")
    tests = parser.add_mutually_exclusive_group()
    tests.add_argument("--test-winner", action="store_true", help="test the winning configuration's trials, once")
    tests.add_argument("--test-all", action="store_true", help="test every trial of this grid, once")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    grid = trials(parse_axes(args.set, parse_seeds(args.seeds)))
    for old in args.out.glob("t-*/trial.json"):
        if json.loads(old.read_text())["base"] != base:
            raise SweepError(f"--out: {args.out} holds trials of other base arguments ({old}); use another folder")
    # Once per configuration: a seed is an integer parse_seeds checked, and seed_everything takes any.
    configs = {tuple((k, v) for k, v in o.items() if k != SEED): o for o in grid}
    for overrides in configs.values():
        check_parses(fit_args(base, overrides, args.out, "check"))
    return args, base, grid


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; 0 when done, 2 for bad input (one line on stderr)."""
    try:
        args, base, grid = plan(sys.argv[1:] if argv is None else argv)
    except SweepError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    start, ids, processes = time.perf_counter(), [], 0.0  # processes: the seconds the trials' processes ran
    for i, overrides in enumerate(grid, 1):
        tid = trial_id(base, overrides)
        ids.append(tid)
        metrics = done_metrics(args.out / tid)
        print(f"[{i}/{len(grid)}] {tid} {overrides}: {'done before' if metrics else 'running'}", flush=True)
        if metrics is None:
            began = time.perf_counter()
            metrics = run_trial(args.out, tid, base, overrides)
            processes += time.perf_counter() - began
        val = f"val_last {metrics['history'][-1]['val_acc']:.4f}, val_best {metrics['val_acc']:.4f}"
        print(f"    {val}, {metrics['epochs']} epochs, {metrics['wall_s']:.0f} s of training", flush=True)
    winner = aggregate(done_rows(args.out))[0]["trials"]
    for tid in winner if args.test_winner else ids if args.test_all else []:
        began = time.perf_counter()
        test_trial(args.out, tid, done_metrics(args.out / tid))
        processes += time.perf_counter() - began
    rows = done_rows(args.out)
    write_tables(args.out, rows, next(a for a in aggregate(rows) if a["trials"] == winner))
    print((args.out / "results.md").read_text(), end="")
    # The sweep's own cost: its wall time beyond the processes it ran (parsing, tables).
    print(f"sweep: {time.perf_counter() - start:.0f} s in all, {processes:.0f} s of it in trial and test processes")
    return 0
