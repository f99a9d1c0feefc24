"""Sweeps over a grid of manualnet-train options and seeds, and the tables that aggregate them (docs/results.md).

    python -m lightning_ref.sweep --out runs/sweep/NAME --seeds 0-2 --set KEY=V1,V2 -- BASE OPTIONS
    python -m lightning_ref.sweep.checkpoint_policy runs/sweep/NAME   # which checkpoint to test, from validation

Modules: runner (the grid, one manualnet-train process per trial, resume, the tests of the winner), tables (each
configuration over its seeds, the paired difference manual - autograd), checkpoint_policy.
"""
