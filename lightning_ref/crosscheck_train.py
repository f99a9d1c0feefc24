"""Train the hand-written net and its autograd reference side by side and report how far they drift apart.

Both start from the same seeded weights (the reference is `manualnet.reference.reference_from` of the manual
TwoLayerNet), see the same batches in the same order (lightning_ref.data.ImageDataModule), and take plain SGD steps
with momentum: the only difference between them is the backward pass. After every epoch it prints the largest loss
difference seen in that epoch and, per parameter, the max relative weight difference (max |manual - reference| /
max |reference|); at the end both test accuracies. Exits with status 1 when a drift is past the tolerance.

With --recipe they train as `manualnet-train fit --data.dataset D` does, over the recipe's full length: the data set's
recipe (lightning_ref/recipes/D.yaml) over the classes' defaults sets H, augmentation, batch size and epochs, and each
side is a TwoLayerClassifier (impl manual and autograd, one seed) stepping the optimizer and learning-rate schedule of
its own configure_optimizers (TwoLayerClassifier.optimizer_and_schedule) after every batch. That run is measured, not
judged (exit 0): at the recipe's learning rates SGD amplifies the two backward passes' rounding differences until
the weights part by tens of percent, while both reach the same accuracy (docs/results.md shows a run); the
tolerance holds for the short plain run, and the per-step gradients are compared by the harness and the live check.
"""

import argparse
import sys

import torch
import torch.nn.functional as F

from lightning_ref.cache import DataMissingError
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.recipe import recipe_defaults, recipe_of
from manualnet import TwoLayerNet
from manualnet.argtypes import positive_int
from manualnet.crosscheck import compare
from manualnet.reference import reference_from, reference_weights

NAMES = ("w1", "b1", "w2", "b2")

# Max relative weight difference and max loss difference allowed at the end of any epoch of the plain run. The two
# backward passes round differently (float32: ~1e-7 of each gradient) and SGD carries the differences forward; at the
# plain run's small lr they stay far below 1e-4, while a gradient 1e-3 off moves the weights apart by more than that
# within an epoch (tests/test_crosscheck.py).
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
# The plain run's settings, which --recipe replaces with the recipe's.
PLAIN = {"epochs": 3, "hidden": 64, "batch_size": 128, "lr": 0.01, "momentum": 0.9}


@torch.no_grad()
def accuracy(forward, batches) -> float:
    """Share of samples whose highest score is their label."""
    right = total = 0
    for x, y in batches:
        right += (forward(x).argmax(1) == y).sum().item()
        total += len(y)
    return right / total


def plain_pair(data: ImageDataModule, args: argparse.Namespace) -> tuple[TwoLayerNet, torch.nn.Module, list]:
    """TwoLayerNet and its reference from the same seeded weights, each with plain SGD + momentum (no schedule)."""
    in_features = data.input_shape[0] * data.input_shape[1] * data.input_shape[2]
    model = TwoLayerNet(in_features, args.hidden, data.num_classes, seed=args.seed, dtype=getattr(torch, args.dtype))
    ref = reference_from(model)
    steps = [(torch.optim.SGD(m.parameters(), lr=args.lr, momentum=args.momentum), None) for m in (model, ref)]
    return model, ref, steps


def recipe_pair(data: ImageDataModule, args: argparse.Namespace) -> tuple[TwoLayerNet, torch.nn.Module, list]:
    """The nets of two TwoLayerClassifiers built as the recipe builds them (impl manual and autograd, one seed), each
    with its own optimizer and schedule from optimizer_and_schedule over the run's steps."""
    model_options = {k.removeprefix("model."): v for k, v in args.recipe.items() if k.startswith("model.")}
    steps, nets = [], []
    for impl in ("manual", "autograd"):
        module = TwoLayerClassifier(
            data.input_shape, data.num_classes, **{**model_options, "impl": impl, "seed": args.seed}
        )
        module.net.to(getattr(torch, args.dtype))
        plan = module.optimizer_and_schedule(args.epochs * len(data.train_dataloader()))
        steps.append((plan["optimizer"], plan["lr_scheduler"]["scheduler"]))
        nets.append(module.net)
    return nets[0], nets[1], steps


def train_side_by_side(data: ImageDataModule, args: argparse.Namespace) -> tuple[list[dict], float, float]:
    """Train both; return one row per epoch (loss and weight drifts) and the two final test accuracies."""
    dtype = getattr(torch, args.dtype)
    model, ref, steps = (recipe_pair if args.recipe else plain_pair)(data, args)
    rows = []
    for epoch in range(args.epochs):
        data.set_epoch(epoch)
        loss_diff, loss_sum, steps_done = 0.0, 0.0, 0
        for x, y in data.train_dataloader():
            x = x.to(dtype)
            loss_m = model.loss(x, y)  # the hand-written Functions
            loss_r = F.cross_entropy(ref(x), y)  # autograd
            lr = float(steps[0][0].param_groups[0]["lr"])  # the rate this step uses (both sides share it)
            for (opt, sched), loss in zip(steps, (loss_m, loss_r), strict=True):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
            loss_diff = max(loss_diff, abs(loss_m.item() - loss_r.item()))
            loss_sum, steps_done = loss_sum + loss_m.item(), steps_done + 1
        weights = reference_weights(ref)
        drift = {name: compare(name, getattr(model, name), weights[name]).max_rel for name in NAMES}
        rows.append({"epoch": epoch + 1, "lr": lr, "loss": loss_sum / steps_done, "loss_diff": loss_diff, **drift})
    acc_m = accuracy(lambda x: model(x.to(dtype)), data.test_dataloader())
    acc_r = accuracy(lambda x: ref(x.to(dtype)), data.test_dataloader())
    return rows, acc_m, acc_r


def format_rows(rows: list[dict]) -> str:
    """The per-epoch drift table in markdown."""
    header = ["epoch", "last lr", "mean train loss (manual)", "max abs loss diff"] + [
        f"{name} rel diff" for name in NAMES
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " ---: |" * len(header)]
    for r in rows:
        drifts = " | ".join(f"{r[name]:.2e}" for name in NAMES)
        lines.append(f"| {r['epoch']} | {r['lr']:.3g} | {r['loss']:.4f} | {r['loss_diff']:.2e} | {drifts} |")
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
    parser.add_argument(
        "--recipe",
        action="store_true",
        help="train as the data set's recipe does (H, augmentation, batch size, epochs, the module's optimizer and "
        "schedule) instead of the plain settings below",
    )
    parser.add_argument("--epochs", type=positive_int, help=f"epochs (default: {PLAIN['epochs']})")
    parser.add_argument("--hidden", type=positive_int, help=f"hidden units H (default: {PLAIN['hidden']})")
    parser.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {PLAIN['batch_size']})")
    parser.add_argument("--lr", type=positive_float, help=f"SGD learning rate (default: {PLAIN['lr']})")
    parser.add_argument("--momentum", type=float, help=f"SGD momentum (default: {PLAIN['momentum']})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data and its order (default: 0)")
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=3000,
        help="synthetic only: generated training images, a fifth of them held out for validation; the test split is "
        "as large as that fifth (default: 3000)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    args = parser.parse_args(argv)
    given = [k for k in PLAIN if getattr(args, k) is not None]
    if args.recipe and given:
        parser.error(f"--{given[0].replace('_', '-')}: the recipe sets it; give --recipe or the plain settings")
    for key, value in PLAIN.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # The data set's recipe as flat options ({"data.flip": True, "model.hidden": 1024, ...}); {} if it has none.
    path = recipe_of(args.dataset) if args.recipe else None
    args.recipe = recipe_defaults(path) if path is not None else {}
    return args


def main(argv: list[str] | None = None) -> int:
    """Print the drift table and accuracies; return 0 within tolerance, 1 past it, 2 for missing data or bad options."""
    args = parse_args(argv)
    data_options = {"batch_size": args.batch_size}
    if args.recipe:  # the recipe's data options over the data module's defaults; its epochs
        data_options = {k.removeprefix("data."): v for k, v in args.recipe.items() if k.startswith("data.")}
        args.epochs = args.recipe["trainer.max_epochs"]
    try:
        data = ImageDataModule(
            **{
                "dataset": args.dataset,
                "root": args.root,
                "val_size": args.train_size // 5 if args.dataset == "synthetic" else 5000,
                "download": args.download,
                "seed": args.seed,
                "synthetic_train": args.train_size,
                "synthetic_test": max(1, args.train_size // 5),
                **data_options,
            }
        )
        data.prepare_data()
        data.setup("fit")
        data.train_dataloader()  # checks the batch size against the training set before any training
    except (DataMissingError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tol = TOLERANCE[args.dtype]
    if args.recipe:
        options = " ".join(f"{k}={v}" for k, v in args.recipe.items())
        training = f"the recipe ({options}; the rest the classes' defaults: manualnet-train fit --print_config)"
    else:
        training = f"batch {args.batch_size}, H={args.hidden}, SGD lr={args.lr} momentum={args.momentum}"
    judged = "no tolerance: a recipe's length is measured, not judged" if args.recipe else f"tolerance {tol:g}"
    print(
        f"# Manual vs autograd, trained side by side\n\n"
        f"{args.dataset}: {len(data.x_train)} training images, {args.epochs} epochs, {training}, {args.dtype}, "
        f"seed {args.seed}; {judged}.\n"
    )
    rows, acc_m, acc_r = train_side_by_side(data, args)
    print(format_rows(rows))
    print(f"\ntest accuracy: manual {acc_m:.4f}, autograd {acc_r:.4f}")
    worst = max(max(r["loss_diff"], *(r[name] for name in NAMES)) for r in rows)
    if args.recipe:
        print(f"result: measured, largest difference {worst:.2e}")
        return 0
    if not worst <= tol:
        print(f"result: FAIL, largest difference {worst:.2e} > tolerance {tol:g}")
        return 1
    print(f"result: ok, largest difference {worst:.2e} <= tolerance {tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
