"""lightning_ref.sweep.checkpoint_policy: the validation evidence for which checkpoint to test, against curves worked
by hand."""

import pytest

from lightning_ref.sweep import checkpoint_policy

CONFIG = ((("data.flip", "true"),), "manual")


def test_the_mean_curve_peaks_where_the_seeds_average_is_highest_not_where_one_seed_spikes():
    runs = [
        [0.80, 0.95, 0.90, 0.91],  # seed a: a spike at epoch 2 is its best-validation pick
        [0.80, 0.85, 0.90, 0.92],
        [0.80, 0.86, 0.91, 0.92],
    ]
    (row,) = checkpoint_policy.policy_rows({CONFIG: runs})
    assert row["best_epochs"] == [2, 4, 4]
    assert row["peak_epoch"] == 4 and row["peak"] == pytest.approx((0.91 + 0.92 + 0.92) / 3)
    assert row["last"] == pytest.approx(row["peak"])
    assert row["best_minus_last"] == pytest.approx((0.95 - 0.91) / 3)
    assert (row["config"], row["impl"], row["seeds"], row["epochs"]) == ("data.flip=true", "manual", 3, 4)


def test_a_tie_in_one_run_picks_its_earliest_epoch_as_modelcheckpoint_does():
    (row,) = checkpoint_policy.policy_rows({CONFIG: [[0.5, 0.9, 0.9]]})
    assert row["best_epochs"] == [2] and row["best_minus_last"] == 0.0


def test_runs_of_different_lengths_are_left_out():
    assert checkpoint_policy.policy_rows({CONFIG: [[0.5, 0.6], [0.5, 0.6, 0.7]]}) == []
