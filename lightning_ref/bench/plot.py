"""Plot step time against H from the benchmark's JSON (python -m lightning_ref.bench --json): the four variants, with
the GEMM floor drawn in (each large product in its fastest layout).

python -m lightning_ref.bench.plot runs/bench/benchmark.json runs/bench/step_time.png
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from lightning_ref.bench.step import VARIANTS  # noqa: E402


def plot_step_times(results: dict, png: str | Path) -> None:
    """Median forward+backward time (bars: quartiles) against H for the shapes sharing the most common (N, D, C),
    one panel per TF32 setting on CUDA; the floor (s1 = x w1 and dW1 = x^T dS1 alone, each in its fastest layout) as a
    dashed black line."""
    rows = results["steps"]
    if not rows:
        raise ValueError("results: no step rows to plot")
    key = lambda r: (r["shape"]["N"], r["shape"]["D"], r["shape"]["C"])  # noqa: E731
    keys = [key(r) for r in rows]
    n, d, c = max(set(keys), key=keys.count)
    settings = sorted({r.get("tf32") for r in rows}, key=str)
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.5), squeeze=False)
    for ax, tf32 in zip(axes[0], settings, strict=True):
        sel = sorted((r for r in rows if key(r) == (n, d, c) and r.get("tf32") == tf32), key=lambda r: r["shape"]["H"])
        hs = [r["shape"]["H"] for r in sel]
        for name in VARIANTS:
            st = [r["spread_ms"][name] for r in sel]
            med = [s["median"] for s in st]
            bars = [[s["median"] - s["q1"] for s in st], [s["q3"] - s["median"] for s in st]]
            ax.errorbar(hs, med, yerr=bars, marker="o", markersize=4, capsize=3, label=name)
        ax.plot(hs, [r["floor_ms"] for r in sel], "k--", marker="x", label="GEMM floor (s1, dW1: fastest layouts)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden units H")
        ax.set_ylabel("forward + backward, ms (median, bars: quartiles)")
        title = f"N={n}, D={d}, C={c}"
        ax.set_title(title if tf32 is None else f"{title}, TF32 {'on' if tf32 else 'off'}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    env = results.get("env", {})
    fig.suptitle(
        f"step time on {results['device']}: {env.get('device_name', '?')}, {env.get('threads', '?')} threads, "
        f"torch {env.get('torch', '?')}"
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description="Plot step time against H from benchmark.py's JSON.")
    p.add_argument("json", type=Path, help="the results written by python -m lightning_ref.bench --json")
    p.add_argument("png", type=Path, help="the picture to write")
    args = p.parse_args()
    plot_step_times(json.loads(args.json.read_text()), args.png)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
