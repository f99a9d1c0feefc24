"""Which checkpoint to test, from validation only: per configuration of a sweep over seeds, where each seed's
best-validation epoch falls, and the validation accuracy per epoch averaged over the seeds.

    python -m lightning_ref.sweep.checkpoint_policy runs/sweep/fmnist-seeds

A run's best-validation checkpoint is the maximum of its validation curve, so its val_acc is biased up and cannot be
compared with the last epoch's on the same images. A fixed epoch can: averaged over seeds, the validation curve
estimates each epoch's expected accuracy, and the epoch where that average peaks is the best fixed choice. If it
peaks at the end (within the seeds' spread), testing the last checkpoint gives up nothing on validation and has no
selection bias; the per-seed best epochs show how far the best-validation pick wanders. The test split is not read.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from lightning_ref.sweep.runner import done_rows
from lightning_ref.sweep.tables import best_epoch, config_of, overrides_text


def curves(out: Path) -> dict[tuple, list[list[float]]]:
    """configuration -> each done trial's validation accuracy per epoch."""
    found: dict[tuple, list[list[float]]] = {}
    for row in done_rows(out):
        metrics = json.loads(next(out.glob(f"{row['trial']}/version_*/metrics.json")).read_text())
        found.setdefault(config_of(row), []).append([h["val_acc"] for h in metrics["history"]])
    return found


def policy_rows(found: dict[tuple, list[list[float]]]) -> list[dict]:
    """Per configuration with equal-length curves: seeds, the best epochs (1-based), the seed-mean curve's peak epoch
    and value, its last value, and the spread of (last - peak of each seed) over seeds."""
    rows = []
    for (overrides, impl), runs in found.items():
        if len({len(r) for r in runs}) != 1:
            continue
        mean = [statistics.fmean(epoch) for epoch in zip(*runs, strict=True)]
        peak = max(range(len(mean)), key=lambda e: (mean[e], e))
        rows.append({
            "config": overrides_text(dict(overrides)), "impl": impl, "seeds": len(runs),
            "best_epochs": [best_epoch(r) for r in runs],
            "peak_epoch": peak + 1, "peak": mean[peak], "last": mean[-1], "epochs": len(mean),
            "best_minus_last": statistics.fmean(max(r) - r[-1] for r in runs),
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a sweep's folder (python -m lightning_ref.sweep --out)")
    args = parser.parse_args(argv)
    rows = policy_rows(curves(args.out))
    if not rows:
        print(f"error: out: no done trials in {args.out}", file=sys.stderr)
        return 2
    print("| config | impl | seeds | epochs | best-validation epoch per seed | mean curve's peak: epoch, val_acc "
          "| mean val_acc at the last epoch | mean (best - last) per seed |")  # fmt: skip
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['config']} | {r['impl']} | {r['seeds']} | {r['epochs']} | {', '.join(map(str, r['best_epochs']))} "
              f"| {r['peak_epoch']}, {r['peak']:.4f} | {r['last']:.4f} | {r['best_minus_last']:.4f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
