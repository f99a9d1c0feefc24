"""Benchmarks: the manual backward against autograd, torch.compile and the GEMM floor; the data path against the usual
DataLoader. Results as a markdown table on stdout, JSON with --json, a plot with --plot (docs/performance.md).

    python -m lightning_ref.bench --json runs/bench/benchmark.json --plot runs/bench/step_time.png
    python -m lightning_ref.bench --quick   # the same shapes (every one has a goal), the epochs; fewer repetitions

The rooms (lightning_ref.bench): timing (CUDA events or perf_counter, interleaved repetitions after warm-up, the
median with quartiles and range), step (one training step per variant, the compiled step, the GEMM floor, saved
bytes), epoch (one epoch: Lightning fit as manualnet-train builds it, a bare loop, a DataLoader), report (environment,
the goals of goals.yaml judged, the tables), plot (step time against H).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from lightning_ref.bench.epoch import EPOCH_BATCH, EPOCH_HIDDEN, EPOCH_IMAGES, bench_epoch, epoch_data, lightning_fit
from lightning_ref.bench.report import environment, goals, markdown
from lightning_ref.bench.step import bench_shape, set_tf32

# The shapes users run (CS231n's two-layer net on CIFAR-10 at N=200 and 64, an MNIST-sized net, a wide hidden layer
# on MNIST) and the benchmark's wide shapes (N=512, D=3072, H from 100 to 2048), and N=D=H=64, where the step is all
# overhead. Every shape has a goal (goals.yaml), so --quick keeps them all and takes fewer repetitions.
SHAPES = [
    (200, 3072, 100, 10),
    (64, 3072, 100, 10),
    (128, 784, 100, 10),
    (256, 784, 1024, 10),
    (512, 3072, 100, 10),
    (512, 3072, 512, 10),
    (512, 3072, 2048, 10),
    (64, 64, 64, 10),
]
QUICK_SHAPES = SHAPES


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """'N,D,H,C;N,D,H,C' -> [(N, D, H, C), ...]."""
    shapes = []
    for part in text.split(";"):
        dims = part.split(",")
        if len(dims) != 4 or not all(d.strip().isdigit() and int(d) > 0 for d in dims):
            raise argparse.ArgumentTypeError(f"expected 'N,D,H,C' of positive integers, got {part!r}")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def option_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions (every shape has a goal: all are kept), DataLoader subsampled",
    )
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    p.add_argument("--plot", type=Path, help="write a PNG of step time against H (N=512 shapes) to this file")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: as many as torch takes, the cores)")
    p.add_argument("--reps", type=int, help="timed repetitions per callable (default 21, quick 7)")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch comparison")
    p.add_argument("--epoch-images", type=int, default=EPOCH_IMAGES, help="training images per epoch (50000)")
    p.add_argument("--epoch-hidden", type=int, default=EPOCH_HIDDEN, help="hidden units H of the epochs (512)")
    p.add_argument("--epoch-repeats", type=int, default=3, help="timed runs of each epoch kind, interleaved (3)")
    p.add_argument(
        "--fit-epochs", type=int, help="instead of the benchmarks, time this many epochs of the Lightning fit"
    )
    p.add_argument("--fit-compile", action="store_true", help="with --fit-epochs: the compiled step (compile=True)")
    # For the smoke test and quick experiments; not part of the documented benchmark.
    p.add_argument("--shapes", type=parse_shapes, help=argparse.SUPPRESS)
    p.add_argument("--dataloader-batches", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    return p


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked before any work (argparse's exit 2 naming the option), with the derived settings:
    device, reps, warmup, shapes, dataloader_batches."""
    p = option_parser()
    args = p.parse_args(argv)

    if args.device not in ("auto", "cpu", "cuda"):
        p.error(f"--device: expected auto, cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device: cuda asked for, but torch sees no CUDA device")
    args.device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    args.reps = reps = args.reps if args.reps is not None else (7 if args.quick else 21)
    args.warmup = warmup = args.warmup if args.warmup is not None else 3
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads: expected an integer >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    for name, value in (
        ("--reps", reps),
        ("--warmup", warmup),
        ("--epoch-hidden", args.epoch_hidden),
        ("--epoch-repeats", args.epoch_repeats),
    ):
        if value < 1:
            p.error(f"{name}: expected an integer >= 1, got {value}")
    if args.epoch_images < EPOCH_BATCH:
        p.error(f"--epoch-images: expected at least one batch ({EPOCH_BATCH}), got {args.epoch_images}")
    if args.fit_epochs is not None and args.fit_epochs < 1:
        p.error(f"--fit-epochs: expected an integer >= 1, got {args.fit_epochs}")
    args.shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    args.dataloader_batches = (
        args.dataloader_batches if args.dataloader_batches is not None else (20 if args.quick else None)
    )
    for path in (args.json, args.plot):  # fail before the work, not after it
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_options(argv)
    device = args.device
    results = {"device": device.type, "env": environment(device), "steps": [], "epoch": None}
    results["env"].update({"quick": args.quick, "reps": args.reps, "warmup": args.warmup, "argv": sys.argv[1:]})

    def save() -> None:
        """Write what is measured so far (a run stopped by a time limit keeps its finished parts)."""
        if args.json is not None:
            results["goals"] = goals(results)
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            os.replace(tmp, args.json)

    if args.fit_epochs is not None:
        results["fit"] = lightning_fit(
            epoch_data(args.epoch_images, device), device, args.epoch_hidden, args.fit_epochs, args.fit_compile
        )
    tf32s = (False, True) if device.type == "cuda" else (None,)  # None: no TF32 on a CPU
    for shape in args.shapes if args.fit_epochs is None else ():
        for row in bench_shape(shape, device, args.reps, args.warmup, tf32s):
            results["steps"].append(row)
            print(
                f"# step {shape} tf32={row['tf32']}: manual {row['manual_ms']:.3f} ms, "
                f"autograd {row['autograd_ms']:.3f} ms",
                file=sys.stderr,
                flush=True,
            )
        save()
    if device.type == "cuda":
        set_tf32(False)
    if not args.no_epoch and args.fit_epochs is None:
        results["epoch"] = bench_epoch(
            args.epoch_images, device, args.epoch_hidden, args.dataloader_batches, args.epoch_repeats
        )

    results["goals"] = goals(results)
    save()
    print(markdown(results))
    if args.json is not None:
        print(f"json: {args.json}")
    if args.plot is not None and results["steps"]:
        from lightning_ref.bench.plot import plot_step_times

        plot_step_times(results, args.plot)
        print(f"plot: {args.plot}")
    return results
