"""Where a step's time goes besides the matrix products, per shape of the benchmark's grid (docs/performance.md):

    python -m lightning_ref.bench.profile [--reps 15] [--threads 1]

For each shape, the manual step (TwoLayerNet.loss, forward + backward) and the autograd step (nn.Sequential +
F.cross_entropy, the same weights) are timed interleaved as the benchmark times them (median ms), then each is run
under torch.profiler for `--steps` steps. The products (aten::mm and aten::addmm, their own CPU time per step) come
from the profile; "besides the products" is the profiled steps' wall time per step less their products: the other
operations, the Python around them, the autograd engine, and the profiler's own cost per operation (a few µs each,
so it counts a little more for the path with more operations). The manual step's other operations are listed with
their time per step.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from lightning_ref.bench.benchmark import SHAPES
from lightning_ref.bench.step import make_step
from lightning_ref.bench.timing import interleaved, spread
from manualnet import TwoLayerNet
from manualnet.reference import reference_from

PRODUCTS = ("aten::mm", "aten::addmm")
CPU = torch.device("cpu")


def op_times_us(step, steps: int) -> tuple[dict[str, float], float]:
    """Self CPU time per step (µs) of each operation torch.profiler records over `steps` calls of step, and the
    wall time per step (µs) of those profiled calls."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall_us = (time.perf_counter() - t0) * 1e6 / steps
    return {e.key: e.self_cpu_time_total / steps for e in prof.key_averages() if e.key.startswith("aten::")}, wall_us


def profile_shape(shape: tuple[int, int, int, int], reps: int, steps: int) -> dict:
    """Step times, products and the rest for the manual and the autograd step at one shape."""
    n, d, h, c = shape
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)
    manual = TwoLayerNet(d, h, c, seed=0)
    ref = reference_from(manual)
    steps_ = {
        "manual": make_step(manual.loss, list(manual.parameters()), x, y),
        "autograd": make_step(lambda x, y: F.cross_entropy(ref(x), y), list(ref.parameters()), x, y),
    }
    medians = {k: spread(v)["median"] * 1e3 for k, v in interleaved(steps_, CPU, reps, warmup=3).items()}
    row = {"shape": shape}
    for name, step in steps_.items():
        ops, wall_us = op_times_us(step, steps)
        products = sum(ops.get(p, 0.0) for p in PRODUCTS)
        row[name] = {"step_us": medians[name], "products_us": products, "besides_us": wall_us - products}
        row[name]["other_ops_us"] = dict(
            sorted(((k, v) for k, v in ops.items() if k not in PRODUCTS and v >= 1.0), key=lambda kv: -kv[1])
        )
    return row


def markdown(rows: list[dict]) -> str:
    """The table of docs/performance.md: per shape, the steps, their products and the rest (µs)."""
    lines = [
        "| N,D,H,C | manual µs | autograd µs | manual/autograd | products manual / autograd µs "
        "| besides the products manual / autograd µs | the manual step's other operations, µs per step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        m, a = r["manual"], r["autograd"]
        top = ", ".join(f"{k[6:]} {v:.0f}" for k, v in list(m["other_ops_us"].items())[:6])
        lines.append(
            f"| {','.join(map(str, r['shape']))} | {m['step_us']:.0f} | {a['step_us']:.0f} "
            f"| {m['step_us'] / a['step_us']:.3f} | {m['products_us']:.0f} / {a['products_us']:.0f} "
            f"| {m['besides_us']:.0f} / {a['besides_us']:.0f} | {top} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=15, help="interleaved timings of each step (15)")
    p.add_argument("--steps", type=int, default=20, help="steps profiled per variant and shape (20)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: as many as torch takes)")
    args = p.parse_args(argv)
    for name in ("reps", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name}: expected an integer >= 1, got {value}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = [profile_shape(shape, args.reps, args.steps) for shape in SHAPES]
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
