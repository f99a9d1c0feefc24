"""The sweep (lightning_ref.sweep) on a tiny grid over seeds (generated data, one epoch): one run folder per trial
through manualnet-train with the trial's seed (the grid's processes run in this one, to spare a Lightning import each;
the rerun test runs its trial as a real process), the tables against each trial's own metrics.json aggregated with
Python's statistics module, the winning configuration's trials tested once (best and last checkpoints) and only they
(only when asked), resume (done trials and tests are not run again; a cut-off trial runs again beside its cut folder),
and bad input refused with one line and exit 2 before any trial runs. The aggregation's arithmetic (spread, paired
differences) against numbers worked by hand."""

import contextlib
import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_ref.cli import main
from lightning_ref.sweep import runner as sweep
from lightning_ref.sweep import tables as sweep_tables

BASE = ["--data.dataset", "synthetic", "--data.synthetic_train", "300", "--data.synthetic_test", "60",
        "--data.val_size", "60", "--data.batch_size", "60", "--trainer.max_epochs", "1"]  # fmt: skip
AXES = ["--set", "model.hidden=2,64", "--seeds", "0-1"]


def run_sweep(out: Path, *args: str) -> int:
    return sweep.main(["--out", str(out), *args, "--", *BASE])


def in_this_process(cmd: list[str], stdout=None, stderr=None, capture_output=False, text=False):
    """subprocess.run of the sweep's manualnet-train command, run as main(args) in this process: its output goes
    where the sweep sends a process's (a log file, or captured), and SystemExit gives the exit code."""
    assert cmd[: len(sweep.CLI)] == sweep.CLI, cmd
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(cmd[len(sweep.CLI) :])
            code = 0
        except SystemExit as e:
            code = e.code or 0
    if stdout is not None:
        stdout.write(out.getvalue())
    captured = out.getvalue() if capture_output else None
    return subprocess.CompletedProcess(cmd, code, captured, captured)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as patch, torch.random.fork_rng():  # the fits seed torch's global generator
        patch.setattr(sweep.subprocess, "run", in_this_process)
        patch.setattr(sys, "argv", ["manualnet-train"])  # main(args) parses its args, not pytest's
        assert run_sweep(out, *AXES) == 0
        assert not list(out.glob("t-*/test.json"))  # nothing tested without --test-winner
        assert run_sweep(out, *AXES, "--test-winner") == 0
    return out


def trial_metrics(out: Path) -> dict[tuple[str, int], dict]:
    """(hidden, seed) -> the metrics.json of its trial and its config.yaml, found through trial.json (not the
    tables)."""
    found = {}
    for t in out.glob("t-*/trial.json"):
        overrides = json.loads(t.read_text())["overrides"]
        run = next(t.parent.glob("version_*/metrics.json")).parent
        found[overrides["model.hidden"], int(overrides["seed_everything"])] = json.loads(
            (run / "metrics.json").read_text()
        ) | {"trial": t.parent.name, "config": yaml.safe_load((run / "config.yaml").read_text())}
    return found


def test_each_trial_runs_in_its_own_folder_with_its_seed_and_never_looked_at_the_test_split(swept):
    metrics = trial_metrics(swept)
    assert sorted(metrics) == [("2", 0), ("2", 1), ("64", 0), ("64", 1)]
    assert len({m["trial"] for m in metrics.values()}) == 4
    for (hidden, seed), m in metrics.items():
        assert m["hidden"] == int(hidden) and m["test_acc"] is None and m["epochs"] == 1
        assert (m["config"]["seed_everything"], m["config"]["model"]["seed"], m["config"]["data"]["seed"]) == (
            seed,
        ) * 3


def test_the_tables_aggregate_each_configuration_over_its_seeds_as_the_statistics_module_does(swept):
    metrics = trial_metrics(swept)
    rows = {(r["config"], r["measure"]): r for r in csv.DictReader((swept / "results.csv").open())}
    for hidden in ("2", "64"):
        vals = [metrics[hidden, s]["val_acc"] for s in (0, 1)]
        lasts = [metrics[hidden, s]["history"][-1]["val_acc"] for s in (0, 1)]
        walls = [metrics[hidden, s]["wall_s"] for s in (0, 1)]
        for measure, xs in (("val_best", vals), ("val_last", lasts), ("wall_s", walls)):
            r = rows[f"model.hidden={hidden}", measure]
            assert r["seeds"] == "0 1" and r["n"] == "2" and r["impl"] == "manual"
            assert float(r["mean"]) == pytest.approx(statistics.fmean(xs), abs=1e-6)
            assert float(r["std"]) == pytest.approx(statistics.stdev(xs), abs=1e-6)
            assert (float(r["min"]), float(r["max"])) == pytest.approx((min(xs), max(xs)), abs=1e-6)
    order = [r["config"] for r in csv.DictReader((swept / "results.csv").open()) if r["measure"] == "val_last"]
    means = {h: statistics.fmean(metrics[h, s]["history"][-1]["val_acc"] for s in (0, 1)) for h in ("2", "64")}
    assert order == [f"model.hidden={h}" for h in sorted(means, key=lambda h: -means[h])]
    trials = list(csv.DictReader((swept / "trials.csv").open()))
    assert sorted((t["config"], t["seed"]) for t in trials) == [
        (f"model.hidden={h}", s) for h in ("2", "64") for s in "01"
    ]


def test_the_winning_configurations_trials_are_tested_once_on_their_best_and_last_checkpoints_and_only_they(swept):
    metrics = trial_metrics(swept)
    last = {h: statistics.fmean(metrics[h, s]["history"][-1]["val_acc"] for s in (0, 1)) for h in ("2", "64")}
    winner = max(("2", "64"), key=last.get)
    for (hidden, _), m in metrics.items():
        path = swept / m["trial"] / "test.json"
        assert path.exists() == (hidden == winner)
        if hidden != winner:
            continue
        tested = json.loads(path.read_text())
        assert (tested["best"]["ckpt"], tested["last"]["ckpt"]) == (m["best_ckpt"], m["last_ckpt"])
        for which in ("best", "last"):
            logged = [r["test_acc"] for r in csv.DictReader((Path(tested[which]["run"]) / "metrics.csv").open())]
            logged = [x for x in logged if x]
            assert len(logged) == 1 and float(logged[0]) == tested[which]["test_acc"]  # one test run, as logged
    rows = {(r["config"], r["measure"]): r for r in csv.DictReader((swept / "results.csv").open())}
    assert rows[f"model.hidden={winner}", "val_last"]["winner"] == "1"
    assert rows[f"model.hidden={winner}", "test_best"]["n"] == "2"
    loser = "2" if winner == "64" else "64"
    assert rows[f"model.hidden={loser}", "test_best"]["n"] == "0"
    assert f"model.hidden={winner} (winner)" in (swept / "results.md").read_text()


def test_a_rerun_skips_done_trials_and_tests_and_reruns_a_cut_off_one(swept, capsys):
    metrics = trial_metrics(swept)
    cut_trial = metrics["2", 1]["trial"]
    tested = [m["trial"] for m in metrics.values() if (swept / m["trial"] / "test.json").exists()]
    cut = swept / cut_trial / "version_0" / "metrics.json"
    cut.unlink()  # as if the trial had been stopped before it finished
    kept = {p: p.stat().st_mtime_ns for t in tested for p in [swept / t / "test.json", *swept.glob(f"{t}/version_*/*")]}
    assert run_sweep(swept, *AXES, "--test-winner") == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 3 and out.count(": running") == 1
    total, processes = (float(w) for w in re.search(r"sweep: (\d+) s in all, (\d+) s of it in trial", out).groups())
    assert 0 < processes <= total  # the one trial run again, and nothing tested again
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (swept / cut_trial / "version_0").is_dir() and (swept / cut_trial / "version_1" / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--set: expected an axis KEY=V1,V2,... or --seeds, got neither (the sweep space is empty)"),
        (["--set", "model.hidden="], "--set: expected KEY=V1,V2,... with at least one value, got 'model.hidden='"),
        (["--set", "model.hidden=2", "--set", "model.hidden=3"], "--set: expected each key once, got 'model.hidden'"),
        (["--set", "seed_everything=1,2"], "--set: expected the seeds as --seeds, got the axis 'seed_everything'"),
        (["--seeds", "3-1"], "--seeds: expected seeds like 0-4, 5,7,9 or 3 (integers >= 0), got '3-1'"),
        (["--seeds", "a"], "--seeds: expected seeds like 0-4, 5,7,9 or 3 (integers >= 0), got 'a'"),
        (["--seeds", "0-2,2"], "--seeds: expected each seed once, got '0-2,2'"),
        (["--set", "model.hiden=2,4"], "model.hiden"),
        (["--set", "model.hidden=two"], "model.hidden"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_before_any_trial(tmp_path, capsys, args, message):
    assert run_sweep(tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep: error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_seeds_expand_ranges_and_lists_in_the_order_given():
    assert sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert sweep.parse_seeds("5,7,9") == [5, 7, 9]
    assert sweep.parse_seeds("3,10-11") == [3, 10, 11]
    assert sweep.parse_seeds(None) == []


def test_an_out_folder_of_other_base_arguments_is_refused(swept, capsys):
    assert sweep.main(["--out", str(swept), *AXES, "--", *BASE, "--model.lr", "0.1"]) == 2
    assert "holds trials of other base arguments" in capsys.readouterr().err


def row(impl: str, seed: int, val: float, test: float | None = None, **overrides: str) -> dict:
    return {"trial": f"{impl}{seed}", "overrides": {"model.impl": impl, **overrides}, "seed": seed, "impl": impl,
            "epochs": 3, "best_epoch": 1, "val_best": val, "val_last": val - 0.01, "test_best": test,
            "test_last": None, "wall_s": 10.0 * (seed + 1)}  # fmt: skip


def test_spread_is_the_sample_mean_std_min_and_max_worked_by_hand():
    s = sweep_tables.spread([0.90, 0.91, 0.92, None])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.91) and s["std"] == pytest.approx(0.01)
    assert (s["min"], s["max"]) == (0.90, 0.92)
    assert sweep_tables.spread([0.5])["std"] is None and sweep_tables.spread([None])["n"] == 0


def test_paired_difference_is_manual_minus_autograd_on_the_seeds_run_with_both():
    rows = [row("manual", 0, 0.90, 0.88), row("manual", 1, 0.92, 0.89), row("manual", 2, 0.95),
            row("autograd", 0, 0.91, 0.87), row("autograd", 1, 0.90, 0.90)]  # fmt: skip
    (p,) = sweep_tables.paired(rows)
    assert p["seeds"] == [0, 1]  # seed 2 ran with manual only
    assert p["per_seed"]["val_best"] == pytest.approx([-0.01, 0.02])
    assert p["val_best"]["mean"] == pytest.approx(0.005) and p["val_best"]["std"] == pytest.approx(0.03 / 2**0.5)
    assert p["test_best"]["mean"] == pytest.approx(0.0) and p["test_last"]["n"] == 0
    aggs = sweep_tables.aggregate(rows)
    assert [(a["impl"], a["seeds"]) for a in aggs] == [("manual", [0, 1, 2]), ("autograd", [0, 1])]
    assert aggs[0]["wall_s"]["mean"] == pytest.approx(20.0)


def test_configurations_differing_in_an_override_are_not_paired_with_each_other():
    rows = [row("manual", 0, 0.9, **{"model.hidden": "8"}), row("autograd", 0, 0.9, **{"model.hidden": "16"})]
    assert sweep_tables.paired(rows) == []
