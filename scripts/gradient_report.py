"""Compare the hand-written gradients with autograd's on one random batch, for every device and dtype at hand.

For each device (cpu, and cuda when present) and mode (float64, float32, bf16 autocast, and fp16 autocast on CUDA) it
builds a seeded TwoLayerNet, the autograd reference holding the same weights (lightning_ref.reference), runs both on
the same batch through the same loss, and prints one markdown table: per gradient (w1, b1, w2, b2, and the input x)
the max abs error, the max relative error (of the reference gradient's largest magnitude) and whether the two are
bitwise equal. It exits with status 1 when any relative error is past its mode's tolerance.
"""

import argparse
import sys

import torch
import torch.nn.functional as F

from lightning_ref.reference import reference_from, reference_grads
from manualnet import TwoLayerNet
from manualnet.crosscheck import GradDiff, compare_all, format_table

# Max relative error allowed, per mode. float64 and float32: a few hundred units of roundoff (2.2e-16, 6e-8) of the
# gradients' largest entries, for sums over N and D terms. Under autocast both sides round the same matmul inputs
# to 16 bits; what can differ is accumulation order: a few units of bf16 (3.9e-3) / fp16 (4.9e-4) roundoff.
TOLERANCES = {
    "float64": 1e-10,
    "float32": 1e-5,
    "bf16 autocast": 2e-2,
    "fp16 autocast": 5e-3,
}

# mode -> (parameter dtype, autocast dtype or None)
MODES = {
    "float64": (torch.float64, None),
    "float32": (torch.float32, None),
    "bf16 autocast": (torch.float32, torch.bfloat16),
    "fp16 autocast": (torch.float32, torch.float16),
}


def cases() -> list[tuple[str, str]]:
    """(device, mode) pairs available on this machine: fp16 autocast only on CUDA."""
    pairs = [("cpu", m) for m in ("float64", "float32", "bf16 autocast")]
    if torch.cuda.is_available():
        pairs += [("cuda", m) for m in MODES]
    return pairs


def gradient_diffs(device: str, mode: str, n: int, d: int, hidden: int, classes: int, seed: int) -> list[GradDiff]:
    """Manual vs reference gradients of the mean cross-entropy on one seeded random batch."""
    dtype, autocast = MODES[mode]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype).to(device)
    y = torch.randint(0, classes, (n,), generator=gen).to(device)
    model = TwoLayerNet(d, hidden, classes, seed=seed, device=device, dtype=dtype)
    ref = reference_from(model)
    x_m, x_r = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
        loss_m = model.loss(x_m, y)
        loss_r = F.cross_entropy(ref(x_r), y)
    loss_m.backward()
    loss_r.backward()
    manual = {name: getattr(model, name).grad for name in ("w1", "b1", "w2", "b2")} | {"x": x_m.grad}
    return compare_all(manual, reference_grads(ref) | {"x": x_r.grad})


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    tolerances = ", ".join(f"{mode} {tol:g}" for mode, tol in TOLERANCES.items())
    parser = argparse.ArgumentParser(
        description=(
            "Compare manualnet's hand-written gradients with the autograd reference's on one seeded random batch. "
            "Prints one markdown table per device (cpu; cuda if available) and mode (float64, float32, bf16 "
            "autocast; on CUDA also fp16 autocast) with, per gradient (w1, b1, w2, b2, x), the max abs error, the "
            "max relative error (max |manual - reference| / max |reference|) and whether they are bitwise equal. "
            f"Exits 1 when a relative error is past its tolerance ({tolerances}), else 0."
        )
    )
    parser.add_argument("--n", type=positive_int, default=64, help="batch size N (default: 64)")
    parser.add_argument("--d", type=positive_int, default=3072, help="input features D (default: 3072)")
    parser.add_argument("--hidden", type=positive_int, default=100, help="hidden units H (default: 100)")
    parser.add_argument("--classes", type=positive_int, default=10, help="classes C (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch and the weights (default: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the tables; return 0 when every gradient is within tolerance, 1 otherwise."""
    args = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here, not TF32's 10-bit mantissa
    print(
        f"# Gradient report: manual vs autograd reference\n\n"
        f"torch {torch.__version__}; N={args.n}, D={args.d}, H={args.hidden}, C={args.classes}, seed={args.seed}; "
        f"relative error = max |manual - reference| / max |reference|.\n"
    )
    failures = []
    for device, mode in cases():
        diffs = gradient_diffs(device, mode, args.n, args.d, args.hidden, args.classes, args.seed)
        tol = TOLERANCES[mode]
        bad = [d.name for d in diffs if not d.within(tol)]
        print(format_table(diffs, title=f"{device}, {mode} (tolerance: max rel err <= {tol:g})"))
        print(f"\n{'FAIL: ' + ', '.join(bad) if bad else 'ok'}\n")
        failures += [f"{device} {mode} {name}" for name in bad]
    print(f"result: {'FAIL (' + '; '.join(failures) + ')' if failures else 'all gradients within tolerance'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
