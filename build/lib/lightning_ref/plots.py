"""The two pictures of a run: loss/accuracy curves from the CSV log, and W1 as one small image per hidden unit."""

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402


def _epoch_series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the rows where `key` was logged."""
    pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("epoch")]
    return [e for e, _ in pts], [v for _, v in pts]


def plot_curves(metrics_csv: str | Path, png: str | Path) -> None:
    """Loss (train, val) and accuracy (train, val) against epoch, from a CSVLogger metrics.csv, into `png`."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, keys, ylabel in (
        (ax_loss, ("train_loss_epoch", "val_loss"), "cross-entropy loss"),
        (ax_acc, ("train_acc", "val_acc"), "accuracy"),
    ):
        for key in keys:
            epochs, values = _epoch_series(rows, key)
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3, label=key.removesuffix("_epoch"))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    _, test = _epoch_series(rows, "test_acc")
    fig.suptitle(f"training curves{f' (test accuracy {test[-1]:.4f})' if test else ''}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_w1(
    w1: Tensor,
    input_shape: tuple[int, int, int],
    png: str | Path,
    std: Tensor | None = None,
    max_units: int = 100,
) -> None:
    """W1 (D,H) as H images of input_shape (C,H,W), each scaled to [0,1] on its own (as CS231n shows them).

    The net sees normalised pixels (x - mean) / std, so unit j responds to the raw image through w1[:, j] / std
    (per channel): that is what is drawn when `std` (C,) is given. Colour for C=3, grey otherwise (MNIST's C=1).
    When H > max_units, only the max_units units with the largest ||w1[:, j]|| are drawn, and the title says so.
    """
    c, h, w = input_shape
    w1 = w1.detach().float().cpu()
    n_units = w1.shape[1]
    units = torch.arange(n_units)
    if n_units > max_units:
        units = w1.norm(dim=0).topk(max_units).indices
    imgs = w1[:, units].T.reshape(-1, c, h, w)  # (U, C, H, W): unit j's weights as an image
    if std is not None:
        imgs = imgs / std.detach().float().cpu().view(1, c, 1, 1)
    lo = imgs.amin(dim=(1, 2, 3), keepdim=True)
    hi = imgs.amax(dim=(1, 2, 3), keepdim=True)
    imgs = (imgs - lo) / (hi - lo).clamp_min(1e-12)  # each unit to [0, 1]
    cols = math.ceil(math.sqrt(len(units)))
    rows = math.ceil(len(units) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, imgs, strict=False):
        if c == 3:
            ax.imshow(img.permute(1, 2, 0).numpy())
        else:  # grey; a channel count other than 1 or 3 is drawn as its channel mean
            ax.imshow(img.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
    shown = f"the {len(units)} of {n_units} units with the largest ||w1||" if n_units > max_units else "all units"
    fig.suptitle(f"W1, one image per hidden unit ({shown})", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
