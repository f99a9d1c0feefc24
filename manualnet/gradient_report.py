"""Cross-check the hand-written gradients of the net's loss against plain torch on one seeded batch, for every device
and dtype at hand, through the harness (manualnet.crosscheck.check_function).

The batch (N, D, H, C from the command line) goes through both Functions (two_layer_net, then softmax_cross_entropy)
and through the reference (nn.Linear's and F.cross_entropy's math). The checks: forward, every gradient (x, w1, b1,
w2, b2), non-contiguous inputs and incoming gradients, autocast (bf16 on CPU; fp16 and bf16 on CUDA), and bitwise
repeatable backward on CPU, in float32 and float64. It prints the report's Markdown table (the relative errors of
manual and of the reference against a float64 truth, per check, dtype and device, with the tolerance) and exits 1
when a check failed.
"""

import argparse
import sys
from dataclasses import replace

import torch

from manualnet import TwoLayerNet
from manualnet.argtypes import positive_int
from manualnet.crosscheck import FLOOR, K
from manualnet.net_crosscheck import NET_LOSS

CHECKS = ["forward", "backward", "noncontiguous", "autocast", "deterministic"]


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def batch_maker(n: int, d: int, hidden: int, classes: int, seed: int):
    """make_inputs for check_function: x (N,D) and y (N,) drawn from the generator, the weights of a seeded
    TwoLayerNet (its own initialisation, biases included)."""

    def make_inputs(dtype, device, generator):
        model = TwoLayerNet(d, hidden, classes, seed=seed, device=device, dtype=dtype)
        x = torch.randn(n, d, dtype=dtype, device=device, generator=generator)
        y = torch.randint(0, classes, (n,), device=device, generator=generator)
        return (x, *(getattr(model, name).detach() for name in ("w1", "b1", "w2", "b2")), y)

    return make_inputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    floors = ", ".join(f"{str(dt).removeprefix('torch.')} {tol:g}" for dt, tol in FLOOR.items())
    parser = argparse.ArgumentParser(
        description=(
            "Cross-check manualnet's hand-written gradients against plain torch on one seeded random batch, "
            f"through manualnet.crosscheck: checks {', '.join(CHECKS)} in float32 and float64 on every device "
            "here (cpu; cuda if available). Prints the Markdown table (per check, the relative error of manual and "
            "of the reference in the same dtype against a float64 truth, max |err| / max |truth|) and exits 1 when "
            f"manual's error is over {K:g} times the reference's own plus a floor ({floors})."
        )
    )
    parser.add_argument("--n", type=positive_int, default=64, help="batch size N (default: 64)")
    parser.add_argument("--d", type=positive_int, default=3072, help="input features D (default: 3072)")
    parser.add_argument("--hidden", type=positive_int, default=100, help="hidden units H (default: 100)")
    parser.add_argument("--classes", type=positive_int, default=10, help="classes C (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch and the weights (default: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the report; return 0 when every check passed, 1 otherwise."""
    args = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here, not TF32's 10-bit mantissa
    batch = replace(
        NET_LOSS,
        make_inputs=batch_maker(args.n, args.d, args.hidden, args.classes, args.seed),
        options={k: v for k, v in NET_LOSS.options.items() if k != "kinks"},  # one random batch, no kink sample
    )
    report = batch.check(devices=devices(), checks=CHECKS, seed=args.seed)
    print(
        f"# Gradient report: manual vs plain torch\n\n"
        f"torch {torch.__version__}; N={args.n}, D={args.d}, H={args.hidden}, C={args.classes}, seed={args.seed}; "
        f"relative error = max |value - float64 truth| / max |truth|, for manual and the reference.\n"
    )
    print(report.markdown())
    failed = sorted({f"{r.device} {r.dtype} {r.check}" for r in report.failed()})
    print(f"\nresult: {'FAIL (' + '; '.join(failed) + ')' if failed else 'all checks within tolerance'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
