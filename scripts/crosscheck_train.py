"""Train the hand-written net and its autograd reference side by side and report how far they drift apart.

Both start from the same seeded weights (the reference is `lightning_ref.reference.reference_from` of the manual
TwoLayerNet), see the same batches in the same order (lightning_ref.data.ImageDataModule), and take plain SGD steps
with momentum: the only difference between them is the backward pass. After every epoch it prints the largest loss
difference seen in that epoch and, per parameter, the max relative weight difference (max |manual - reference| /
max |reference|); at the end both test accuracies. Exits with status 1 when a drift is past the tolerance.
"""

import argparse
import sys

import torch
import torch.nn.functional as F
from _args import positive_int

from lightning_ref.cache import DataMissingError
from lightning_ref.data import ImageDataModule
from lightning_ref.reference import reference_from, reference_weights
from manualnet import TwoLayerNet
from manualnet.crosscheck import compare

NAMES = ("w1", "b1", "w2", "b2")

# Max relative weight difference and max loss difference allowed at the end of any epoch. The two backward passes
# round differently (float32: ~1e-7 of each gradient) and SGD carries the differences forward; in the default demo
# they stay near 2e-7 (float32) and 4e-16 (float64) after 3 epochs. 1e-4 leaves room for longer runs, while a
# gradient 1e-3 off moves the weights apart by more than that within an epoch (tests/test_crosscheck.py).
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


@torch.no_grad()
def accuracy(forward, batches) -> float:
    """Share of samples whose highest score is their label."""
    right = total = 0
    for x, y in batches:
        right += (forward(x).argmax(1) == y).sum().item()
        total += len(y)
    return right / total


def train_side_by_side(data: ImageDataModule, args: argparse.Namespace) -> tuple[list[dict], float, float]:
    """Train both; return one row per epoch (loss and weight drifts) and the two final test accuracies."""
    dtype = getattr(torch, args.dtype)
    in_features = data.input_shape[0] * data.input_shape[1] * data.input_shape[2]
    model = TwoLayerNet(in_features, args.hidden, data.num_classes, seed=args.seed, dtype=dtype)
    ref = reference_from(model)
    opt_m = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    opt_r = torch.optim.SGD(ref.parameters(), lr=args.lr, momentum=args.momentum)
    rows = []
    for epoch in range(args.epochs):
        data.set_epoch(epoch)
        loss_diff, loss_sum, steps = 0.0, 0.0, 0
        for x, y in data.train_dataloader():
            x = x.to(dtype)
            loss_m = model.loss(x, y)  # the hand-written Functions
            loss_r = F.cross_entropy(ref(x), y)  # autograd
            for opt, loss in ((opt_m, loss_m), (opt_r, loss_r)):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            loss_diff = max(loss_diff, abs(loss_m.item() - loss_r.item()))
            loss_sum, steps = loss_sum + loss_m.item(), steps + 1
        weights = reference_weights(ref)
        drift = {name: compare(name, getattr(model, name), weights[name]).max_rel for name in NAMES}
        rows.append({"epoch": epoch + 1, "loss": loss_sum / steps, "loss_diff": loss_diff, **drift})
    acc_m = accuracy(lambda x: model(x.to(dtype)), data.test_dataloader())
    acc_r = accuracy(lambda x: ref(x.to(dtype)), data.test_dataloader())
    return rows, acc_m, acc_r


def format_rows(rows: list[dict]) -> str:
    """The per-epoch drift table in markdown."""
    header = ["epoch", "mean train loss (manual)", "max abs loss diff"] + [f"{name} rel diff" for name in NAMES]
    lines = ["| " + " | ".join(header) + " |", "|" + " ---: |" * len(header)]
    for r in rows:
        drifts = " | ".join(f"{r[name]:.2e}" for name in NAMES)
        lines.append(f"| {r['epoch']} | {r['loss']:.4f} | {r['loss_diff']:.2e} | {drifts} |")
    return "\n".join(lines)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Train manualnet's hand-written TwoLayerNet and its autograd reference (nn.Linear/ReLU/nn.Linear with "
            "F.cross_entropy) from the same initial weights on the same batches with SGD+momentum, and report per "
            "epoch the largest loss difference and the max relative weight difference per parameter, then both test "
            "accuracies. Exits 1 when a difference is past the tolerance "
            f"(float32 {TOLERANCE['float32']:g}, float64 {TOLERANCE['float64']:g}), "
            "2 when the data is missing or an option is invalid."
        )
    )
    parser.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (generated, offline; default), cifar10, cifar100, mnist or fashion-mnist",
    )
    parser.add_argument("--root", default="data", help="where real data sets live (default: data)")
    parser.add_argument("--download", action="store_true", help="download a missing real data set")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs (default: 3)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="hidden units H (default: 64)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default: 128)")
    parser.add_argument("--lr", type=positive_float, default=0.01, help="SGD learning rate (default: 0.01)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data and its order (default: 0)")
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=3000,
        help="synthetic only: generated training images, a fifth of them held out for validation; the test split is "
        "as large as that fifth (default: 3000)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the drift table and accuracies; return 0 within tolerance, 1 past it, 2 for missing data or bad options."""
    args = parse_args(argv)
    try:
        data = ImageDataModule(
            dataset=args.dataset,
            root=args.root,
            batch_size=args.batch_size,
            val_size=args.train_size // 5 if args.dataset == "synthetic" else 5000,
            download=args.download,
            seed=args.seed,
            synthetic_train=args.train_size,
            synthetic_test=max(1, args.train_size // 5),
        )
        data.prepare_data()
        data.setup("fit")
        data.train_dataloader()  # checks the batch size against the training set before any training
    except (DataMissingError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tol = TOLERANCE[args.dtype]
    print(
        f"# Manual vs autograd, trained side by side\n\n"
        f"{args.dataset}: {len(data.x_train)} training images, {args.epochs} epochs, batch {args.batch_size}, "
        f"H={args.hidden}, SGD lr={args.lr} momentum={args.momentum}, {args.dtype}, seed {args.seed}; "
        f"tolerance {tol:g} on every difference.\n"
    )
    rows, acc_m, acc_r = train_side_by_side(data, args)
    print(format_rows(rows))
    print(f"\ntest accuracy: manual {acc_m:.4f}, autograd {acc_r:.4f}")
    worst = max(max(r["loss_diff"], *(r[name] for name in NAMES)) for r in rows)
    if not worst <= tol:
        print(f"result: FAIL, largest difference {worst:.2e} > tolerance {tol:g}")
        return 1
    print(f"result: ok, largest difference {worst:.2e} <= tolerance {tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
