"""The sweep's tables: each trial's row, and each configuration aggregated over its seeds (mean, standard deviation,
min, max), with the paired difference manual - autograd per seed where a configuration ran with both impls."""

import csv
import json
import statistics
from pathlib import Path

SEED = "seed_everything"  # the override that --seeds sets
# A trial's measured columns: the last epoch's val_acc (the checkpoint fit tests), the best-validation checkpoint's,
# both tested ones, the training time.
MEASURES = ("val_last", "val_best", "test_last", "test_best", "wall_s")
PAIRED = ("val_last", "val_best", "test_last", "test_best")


def trial_row(trial_json: Path, metrics: dict) -> dict:
    """One done trial: its overrides (seed apart), seed, impl, epochs, best-validation epoch (1-based), and MEASURES
    (None: not measured)."""
    overrides = json.loads(trial_json.read_text())["overrides"]
    tested = trial_json.with_name("test.json")
    tests = json.loads(tested.read_text()) if tested.exists() else {}
    history = metrics["history"]
    return {
        "trial": trial_json.parent.name,
        "overrides": {k: v for k, v in overrides.items() if k != SEED},
        "seed": int(overrides[SEED]) if SEED in overrides else None,
        "impl": metrics["impl"],
        "epochs": metrics["epochs"],
        "best_epoch": best_epoch([h["val_acc"] for h in history]) if history else None,
        "val_best": metrics["val_acc"],
        "val_last": history[-1]["val_acc"] if history else None,
        "test_best": tests.get("best", {}).get("test_acc"),
        "test_last": tests.get("last", {}).get("test_acc"),
        "wall_s": metrics["wall_s"],
    }


def best_epoch(curve: list[float]) -> int:
    """The best-validation epoch of a val_acc curve, 1-based as in "epoch 58 of 60" (Lightning's epoch and the
    checkpoint names count from 0); the earliest of ties, as ModelCheckpoint keeps it."""
    return max(range(len(curve)), key=lambda e: (curve[e], -e)) + 1


def config_of(row: dict) -> tuple:
    """A configuration: the overrides (seed apart) and the impl."""
    return (tuple(sorted(row["overrides"].items())), row["impl"])


def spread(values: list) -> dict:
    """mean, std (sample, n-1; None for one value), min, max and n of the values that were measured."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    std = statistics.stdev(xs) if len(xs) > 1 else None
    return {"n": len(xs), "mean": statistics.fmean(xs), "std": std, "min": min(xs), "max": max(xs)}


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per configuration, best mean val_last first (ties: the configuration seen first): its seeds and the
    spread of each measure over them."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(config_of(r), []).append(r)
    out = []
    for (_, impl), members in groups.items():
        agg = {"overrides": members[0]["overrides"], "impl": impl, "seeds": sorted_seeds(members)}
        agg["trials"] = [m["trial"] for m in members]
        agg |= {m: spread([r[m] for r in members]) for m in MEASURES}
        out.append(agg)
    out.sort(key=lambda a: -(a["val_last"]["mean"] if a["val_last"]["mean"] is not None else -1))
    return out


def paired(rows: list[dict]) -> list[dict]:
    """For each configuration run with both impls: per seed found in both, manual - autograd of each PAIRED measure,
    and its spread over those seeds."""
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["impl"] in ("manual", "autograd"):
            key = tuple(sorted((k, v) for k, v in r["overrides"].items() if k != "model.impl"))
            by_key.setdefault(key, {}).setdefault(r["impl"], {})[r["seed"]] = r
    out = []
    for key, impls in by_key.items():
        seeds = sorted(set(impls.get("manual", {})) & set(impls.get("autograd", {})), key=lambda s: (s is None, s))
        if not seeds:
            continue
        diffs = {m: [diff(impls["manual"][s][m], impls["autograd"][s][m]) for s in seeds] for m in PAIRED}
        out.append({"overrides": dict(key), "seeds": seeds, "per_seed": diffs} | {m: spread(diffs[m]) for m in PAIRED})
    return out


def is_winner(agg: dict, winner: dict | None) -> bool:
    return winner is not None and agg["trials"] == winner["trials"]


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def sorted_seeds(members: list[dict]) -> list:
    return sorted((m["seed"] for m in members), key=lambda s: (s is None, s))


def stats_cells(s: dict) -> list:
    """n, mean, std, min, max as CSV cells (six decimals; blank where not measured)."""
    return [s["n"], *(fmt(s[k], 6) for k in ("mean", "std", "min", "max"))]


def fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def cell(s: dict, digits: int = 4) -> str:
    """mean ± std [min, max] (n=...), or the one value."""
    if s["n"] == 0:
        return ""
    if s["n"] == 1:
        return fmt(s["mean"], digits)
    return f"{fmt(s['mean'], digits)} ± {fmt(s['std'], digits)} [{fmt(s['min'], digits)}, {fmt(s['max'], digits)}]"


def overrides_text(overrides: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items() if k != "model.impl") or "(the recipe)"


def write_tables(out: Path, rows: list[dict], winner: dict | None) -> None:
    """OUT/results.csv (a row per configuration and measure), OUT/trials.csv (a row per trial) and OUT/results.md."""
    aggs, pairs = aggregate(rows), paired(rows)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "impl", "seeds", "measure", "n", "mean", "std", "min", "max", "winner"])
        for a in aggs:
            head = [overrides_text(a["overrides"]), a["impl"], " ".join(map(str, a["seeds"]))]
            for m in MEASURES:
                w.writerow([*head, m, *stats_cells(a[m]), int(is_winner(a, winner))])
        for p in pairs:
            head = [overrides_text(p["overrides"]), "manual-autograd", " ".join(map(str, p["seeds"]))]
            for m in PAIRED:
                w.writerow([*head, m, *stats_cells(p[m]), 0])
    columns = ["trial", "config", "seed", "impl", "epochs", "best_epoch", *MEASURES]
    with open(out / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in sorted(rows, key=lambda r: (overrides_text(r["overrides"]), r["impl"], str(r["seed"]))):
            w.writerow([r["trial"], overrides_text(r["overrides"]), "" if r["seed"] is None else r["seed"], r["impl"]]
                       + [r["epochs"], r["best_epoch"]] + [fmt(r[m], 6) for m in MEASURES])  # fmt: skip
    (out / "results.md").write_text(markdown(out, aggs, pairs, winner))


def markdown(out: Path, aggs: list[dict], pairs: list[dict], winner: dict | None) -> str:
    """results.md: the configurations (mean ± std [min, max] over their seeds) and the paired differences."""
    name = overrides_text(winner["overrides"]) + f" ({winner['impl']})" if winner else "none"
    lines = [
        f"Sweep in {out}: {len(aggs)} configurations, best mean val_last first. Each cell: mean ± std [min, max] over "
        "the seeds (the sample standard deviation), or the one value. val_last: the last epoch's val_acc, the "
        "checkpoint manualnet-train fit tests; val_best: the best-validation checkpoint's (biased up: it is the "
        "maximum over the epochs). test_*: measured only where tested (--test-winner, --test-all), never used to "
        f"choose. Winner by mean val_last: **{name}**.",
        "",
        "| config | impl | seeds | val_last | val_best | test_last | test_best | wall_s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in aggs:
        seeds = ",".join("-" if s is None else str(s) for s in a["seeds"])
        cells = [cell(a[m]) for m in MEASURES[:-1]] + [cell(a["wall_s"], 1)]
        first = overrides_text(a["overrides"]) + (" (winner)" if is_winner(a, winner) else "")
        lines.append(f"| {first} | {a['impl']} | {seeds} | " + " | ".join(cells) + " |")
    if pairs:
        lines += ["", "Paired difference manual - autograd, per seed run with both (mean ± std [min, max]):", ""]
        lines += [
            "| config | seeds | val_last | val_best | test_last | test_best |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for p in pairs:
            seeds = ",".join("-" if s is None else str(s) for s in p["seeds"])
            lines.append(
                f"| {overrides_text(p['overrides'])} | {seeds} | " + " | ".join(cell(p[m]) for m in PAIRED) + " |"
            )
    return "\n".join(lines) + "\n"
