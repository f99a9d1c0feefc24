"""scripts/sweep.py on a tiny grid (generated data, one epoch): one run folder per trial through manualnet-train, the
results tables against each trial's own metrics.json, the winner by validation accuracy tested once and only it
(only when asked),
resume (done trials and the test are not run again; a cut-off trial runs again beside its cut folder), and bad input
refused with one line and exit 2 before any trial runs."""

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import sweep  # noqa: E402

BASE = ["--data.dataset", "synthetic", "--data.synthetic_train", "300", "--data.synthetic_test", "60",
        "--data.val_size", "60", "--data.batch_size", "60", "--trainer.max_epochs", "1"]  # fmt: skip
AXES = ["--set", "model.hidden=2,64"]


def run_sweep(out: Path, *args: str) -> int:
    return sweep.main(["--out", str(out), *args, "--", *BASE])


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    assert run_sweep(out, *AXES) == 0
    assert not list(out.glob("t-*/test.json"))  # nothing tested without --test-winner
    assert run_sweep(out, *AXES, "--test-winner") == 0
    return out


def trial_metrics(out: Path) -> dict[str, dict]:
    """hidden -> the metrics.json of its trial, found through trial.json (not through the tables)."""
    found = {}
    for t in out.glob("t-*/trial.json"):
        found[json.loads(t.read_text())["overrides"]["model.hidden"]] = json.loads(
            next(t.parent.glob("version_*/metrics.json")).read_text()
        ) | {"trial": t.parent.name}
    return found


def test_each_trial_has_its_own_run_folder_and_never_looked_at_the_test_split(swept):
    metrics = trial_metrics(swept)
    assert sorted(metrics) == ["2", "64"]
    assert {m["hidden"] for m in metrics.values()} == {2, 64}
    assert len({m["trial"] for m in metrics.values()}) == 2
    assert all(m["test_acc"] is None and m["epochs"] == 1 for m in metrics.values())


def test_the_tables_list_every_trial_and_the_winner_by_val_acc_with_its_test_accuracy_only(swept):
    metrics = trial_metrics(swept)
    winner = max(metrics.values(), key=lambda m: m["val_acc"])
    rows = list(csv.DictReader((swept / "results.csv").open()))
    assert [r["model.hidden"] for r in rows] == sorted(metrics, key=lambda h: -metrics[h]["val_acc"])
    for r in rows:
        m = metrics[r["model.hidden"]]
        assert float(r["val_acc"]) == pytest.approx(m["val_acc"], abs=5e-5) and r["epochs"] == "1"
        assert float(r["wall_s"]) == m["wall_s"] and r["impl"] == "manual"
        assert r["winner"] == str(int(r["trial"] == winner["trial"]))
        assert (r["test_acc"] != "") == (r["trial"] == winner["trial"])
    tested = json.loads((swept / winner["trial"] / "test.json").read_text())
    logged = [r["test_acc"] for r in csv.DictReader((Path(tested["run"]) / "metrics.csv").open()) if r["test_acc"]]
    assert len(logged) == 1 and float(logged[0]) == tested["test_acc"]  # one test run, read back as logged
    assert float(rows[0]["test_acc"]) == pytest.approx(tested["test_acc"], abs=5e-5)
    assert tested["ckpt"] == winner["best_ckpt"]
    md = (swept / "results.md").read_text()
    assert f"**{winner['trial']}** (winner)" in md and f"test accuracy {tested['test_acc']:.4f}" in md


def test_a_rerun_skips_done_trials_and_the_test_and_reruns_a_cut_off_one(swept, capsys):
    metrics = trial_metrics(swept)
    loser = min(metrics.values(), key=lambda m: m["val_acc"])["trial"]
    winner = max(metrics.values(), key=lambda m: m["val_acc"])["trial"]
    cut = swept / loser / "version_0" / "metrics.json"
    cut.unlink()  # as if the trial had been stopped before it finished
    kept = {p: p.stat().st_mtime_ns for p in [swept / winner / "test.json", *swept.glob(f"{winner}/version_*/*")]}
    assert run_sweep(swept, *AXES, "--test-winner") == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 1 and out.count(": running") == 1
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (swept / loser / "version_0").is_dir() and (swept / loser / "version_1" / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--set: expected at least one axis KEY=V1,V2,..., got none (the sweep space is empty)"),
        (["--set", "model.hidden="], "--set: expected KEY=V1,V2,... with at least one value, got 'model.hidden='"),
        (["--set", "model.hidden=2", "--set", "model.hidden=3"], "--set: expected each key once, got 'model.hidden'"),
        (["--set", "model.hiden=2,4"], "model.hiden"),
        (["--set", "model.hidden=two"], "model.hidden"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_before_any_trial(tmp_path, capsys, args, message):
    assert run_sweep(tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep: error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_an_out_folder_of_other_base_arguments_is_refused(swept, capsys):
    assert sweep.main(["--out", str(swept), *AXES, "--", *BASE, "--model.lr", "0.1"]) == 2
    assert "holds trials of other base arguments" in capsys.readouterr().err
