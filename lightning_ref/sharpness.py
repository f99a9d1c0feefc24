"""Sharpness of a trained net: the largest eigenvalue of the Hessian of the full-batch training loss with respect to
the parameters, by Lanczos on Hessian-vector products through the hand-written Functions (manualnet.hvp).

    python -m lightning_ref.sharpness      # H=100, 5 epochs of SGD on 5,000 generated CIFAR-sized images
    python -m lightning_ref.sharpness --hidden 512 --epochs 10 --lr 0.02

Trains TwoLayerNet (seeded) with SGD (momentum 0.9) on the generated data set of lightning_ref.data ("synthetic":
class colour patterns plus noise, normalised per channel), without Lightning's Trainer, then prints the loss, the
training accuracy and the sharpness at the end, and at initialisation for comparison. The Hessian is that of the mean
loss over the whole training set, in float64 (the weights and images cast), to a relative residual of 1e-6.
"""

import argparse

import torch

from lightning_ref.data import ImageDataModule, TensorBatches
from manualnet import TwoLayerNet
from manualnet.argtypes import positive_int
from manualnet.hvp import sharpness


def full_batch(dm: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training image, normalised as in training (no augmentation), flattened: x (N, 3072), y (N,)."""
    batches = TensorBatches(dm.x_train, dm.y_train, 1024, dm.mean, dm.std, train=False)
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs).flatten(1), torch.cat(ys)


def measure(model: TwoLayerNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """(loss, accuracy, sharpness) of the model on (x, y); the sharpness in float64."""
    with torch.no_grad():
        scores = model(x)
        loss = torch.nn.functional.cross_entropy(scores, y).item()
        accuracy = (scores.argmax(1) == y).float().mean().item()
    params = tuple(p.detach().double() for p in (model.w1, model.b1, model.w2, model.b2))
    return loss, accuracy, sharpness(params, x.double(), y, tol=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=positive_int, default=100)
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--images", type=positive_int, default=5000, help="generated training images")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dm = ImageDataModule(
        "synthetic", batch_size=args.batch_size, val_size=0, synthetic_train=args.images, seed=args.seed
    )
    dm.setup("fit")
    x, y = full_batch(dm)
    model = TwoLayerNet(x.shape[1], args.hidden, dm.num_classes, seed=args.seed)
    loss, accuracy, top = measure(model, x, y)
    print(f"at init:  loss {loss:.4f}  train acc {accuracy:.3f}  sharpness {top:.4g}")

    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        dm.set_epoch(epoch)
        for xb, yb in dm.train_dataloader():
            opt.zero_grad()
            model.loss(xb, yb).backward()
            opt.step()
    loss, accuracy, top = measure(model, x, y)
    print(f"trained:  loss {loss:.4f}  train acc {accuracy:.3f}  sharpness {top:.4g}")
    print(
        f"({args.epochs} epochs of SGD, lr {args.lr}, momentum 0.9, batch {args.batch_size}, H={args.hidden}, "
        f"{args.images} images; for scale: plain full-batch gradient descent at this lr is stable while "
        f"sharpness < 2/lr = "
        f"{2 / args.lr:.4g})"
    )


if __name__ == "__main__":
    main()
