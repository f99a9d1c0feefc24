"""The gradient comparison tools catch what they claim to: compare (manualnet.crosscheck.compare, re-exported by
manualnet.crosscheck), manualnet.gradient_report, manualnet.crosscheck_seeds and lightning_ref.crosscheck_train."""

import pytest
import torch

from lightning_ref import crosscheck_train
from manualnet import crosscheck_seeds, gradient_report
from manualnet.crosscheck import compare, compare_all, format_table
from manualnet.functional import TwoLayerNetFn

# ------------------------------------------------------------------------------------------------------ compare


def test_compare_measures_error_relative_to_the_reference_largest_magnitude():
    ref = torch.tensor([[4.0, -2.0], [0.5, 0.0]])
    wrong = ref.clone()
    wrong[1, 1] = 0.01  # an error of 0.01 where the reference is 0: relative to max |ref| = 4, not to 0
    d = compare("w", wrong, ref)
    assert d.max_abs == pytest.approx(0.01) and d.max_rel == pytest.approx(0.01 / 4)
    assert not d.bitwise and not d.within(1e-3) and d.within(1e-2)


def test_compare_detects_a_deliberately_wrong_gradient():
    ref = torch.randn(5, 3, dtype=torch.float64)
    d = compare("w1", ref * 1.0001, ref)
    assert d.max_rel == pytest.approx(1e-4, rel=1e-6) and not d.within(1e-5) and not d.bitwise


def test_compare_reports_bitwise_equality_only_for_identical_bits():
    a = torch.randn(4, 4)
    assert compare("a", a.clone(), a).bitwise
    assert compare("a", a.T.contiguous().T, a).bitwise  # layout does not matter, bits do
    one_ulp = torch.nextafter(a, torch.full_like(a, float("inf")))
    d = compare("a", one_ulp, a)
    assert not d.bitwise and 0 < d.max_rel < 1e-6
    assert not compare("a", a.double(), a).bitwise  # same values, different dtype
    assert not compare("z", torch.tensor([-0.0]), torch.tensor([0.0])).bitwise  # equal values, different bits


def test_compare_flags_nan_as_out_of_any_tolerance():
    ref = torch.ones(3)
    d = compare("b1", torch.tensor([1.0, float("nan"), 1.0]), ref)
    assert not d.within(1e10) and not d.bitwise


def test_compare_of_two_zero_gradients_is_exact():
    d = compare("w1", torch.zeros(3, 2), torch.zeros(3, 2))
    assert d.max_abs == 0 and d.max_rel == 0 and d.bitwise and d.within(0)


def test_compare_rejects_shape_mismatch_naming_the_gradient():
    with pytest.raises(ValueError, match=r"^w2: expected the reference's shape \(3, 2\), got \(2, 3\)"):
        compare("w2", torch.zeros(2, 3), torch.zeros(3, 2))


def test_compare_all_and_format_table_give_one_row_per_parameter():
    ref = {"w1": torch.ones(2, 2), "b1": torch.ones(2)}
    diffs = compare_all({"b1": torch.ones(2), "w1": torch.ones(2, 2) * 2}, ref)
    assert [d.name for d in diffs] == ["w1", "b1"]
    table = format_table(diffs, title="cpu, float32")
    assert table.splitlines()[0] == "### cpu, float32"
    assert "| w1 | 1.000e+00 | 1.000e+00 | no |" in table and "| b1 | 0.000e+00 | 0.000e+00 | yes |" in table


# ------------------------------------------------------------------------------------- manualnet.gradient_report


TINY = ["--n", "6", "--d", "12", "--hidden", "5", "--classes", "3", "--seed", "1"]


def test_gradient_report_passes_and_prints_one_row_per_check_and_dtype(capsys):
    report = gradient_report
    assert report.main(TINY) == 0
    out = capsys.readouterr().out
    assert "### net_loss: ok" in out
    for check in report.CHECKS:
        for dtype in ("float32", "float64"):
            assert f"| {check} | {dtype} | cpu | passed |" in out, (check, dtype)
    assert out.rstrip().endswith("result: all checks within tolerance")


def test_gradient_report_exits_nonzero_when_a_gradient_is_wrong(capsys, wrong_dw1):
    report = gradient_report
    assert report.main(TINY) == 1
    out = capsys.readouterr().out
    assert "| backward | float64 | cpu | **FAILED** |" in out and "d(w1): rel err" in out  # by its parameter name
    # bf16 autocast tolerates 1.6e-2 in float32: a 1e-3 error is below what bf16 can resolve.
    failed = "float32 backward; cpu float32 noncontiguous; cpu float64 autocast; cpu float64 backward; cpu float64 "
    assert f"result: FAIL (cpu {failed}noncontiguous)" in out


def test_gradient_report_rejects_sizes_below_1(capsys):
    report = gradient_report
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--hidden", "0"])
    assert exit_info.value.code == 2
    assert "--hidden: expected an integer >= 1, got 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ manualnet.crosscheck_seeds


def test_crosscheck_seeds_is_quiet_on_the_net_and_exits_nonzero_on_a_wrong_gradient(capsys, monkeypatch):
    seeds = crosscheck_seeds
    assert seeds.main(["--seeds", "2", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "two_layer_net seed 1: failed -, warned -" in out and out.rstrip().endswith(
        "0 of 4 runs with a failure or a warning"
    )
    right = TwoLayerNetFn.backward

    def wrong(ctx, ds2, dx2_out):
        dx, dw1, db1, dw2, db2, dm = right(ctx, ds2, dx2_out)
        return dx, None if dw1 is None else dw1 * 1.001, db1, dw2, db2, dm

    monkeypatch.setattr(TwoLayerNetFn, "backward", staticmethod(wrong))
    assert seeds.main(["--seeds", "1", "--profile", "quick"]) == 1
    out = capsys.readouterr().out
    assert "'backward (float32)', 'backward (float64)'" in out.splitlines()[0] and "1 of 2 runs" in out


# -------------------------------------------------------------------------------- lightning_ref.crosscheck_train

TINY_TRAINING = ["--train-size", "500", "--epochs", "2", "--hidden", "8", "--batch-size", "50", "--lr", "0.05"]


def test_crosscheck_train_keeps_both_implementations_together(capsys):
    train = crosscheck_train
    assert train.main(TINY_TRAINING) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2  # one row per epoch
    drifts = [float(cell) for cell in rows[-1].strip("|").split("|")[3:]]
    assert len(drifts) == 5 and max(drifts) < 1e-5  # loss and w1, b1, w2, b2
    assert "test accuracy: manual " in out and out.rstrip().splitlines()[-1].startswith("result: ok")


def test_crosscheck_train_exits_nonzero_when_a_gradient_is_wrong(capsys, wrong_dw1):
    train = crosscheck_train
    assert train.main(TINY_TRAINING) == 1
    assert "result: FAIL" in capsys.readouterr().out


def test_crosscheck_train_reports_bad_options_in_one_line(capsys):
    train = crosscheck_train
    assert train.main(["--dataset", "imagenet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset: expected one of") and "'imagenet'" in err and "\n" not in err


RECIPE_TRAINING = ["--recipe", "--train-size", "1500"]  # 1200 for training: 4 batches of the default 256 per epoch


def test_crosscheck_train_with_the_recipe_runs_its_epochs_with_the_modules_schedule_and_reports_without_judging(capsys):
    train = crosscheck_train
    assert train.main(RECIPE_TRAINING) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 5  # the synthetic recipe's trainer.max_epochs
    # One-cycle climbs from lr / 25 and anneals to lr / 25 / 1e4 (the module's default lr 0.05): it was stepped.
    lrs = [float(r.split("|")[2]) for r in rows]
    assert lrs[0] > 0.05 / 25 and lrs[-1] < 0.05 / 25 / 100
    assert "the recipe (data.dataset=synthetic data.flip=True trainer.max_epochs=5" in out
    assert out.rstrip().splitlines()[-1].startswith("result: measured, largest difference ")


def test_crosscheck_train_refuses_a_plain_setting_beside_the_recipe(capsys):
    train = crosscheck_train
    with pytest.raises(SystemExit) as exit_:
        train.main([*RECIPE_TRAINING, "--hidden", "8"])
    assert exit_.value.code == 2
    assert "--hidden: the recipe sets it" in capsys.readouterr().err
