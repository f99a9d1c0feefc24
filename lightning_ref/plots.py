"""The two pictures of a run: loss, accuracy and learning-rate curves from the run's history (RunRecorder), and W1
as one small image per hidden unit."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_curves(history: list[dict[str, float]], png: str | Path, test_acc: float | None = None) -> None:
    """Loss (train, val), accuracy (train, val) and the learning rate against epoch, from the run's history (one
    row per epoch: epoch and any of train_loss, val_loss, train_acc, val_acc, lr; see RunRecorder), into `png`."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, keys, ylabel in (
        (axes[0], ("train_loss", "val_loss"), "cross-entropy loss"),
        (axes[1], ("train_acc", "val_acc"), "accuracy"),
        (axes[2], ("lr",), "learning rate (at the epoch's last step)"),
    ):
        for key in keys:
            pts = [(r["epoch"], r[key]) for r in history if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"training curves{f' (test accuracy {test_acc:.4f})' if test_acc is not None else ''}")
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
    if c != 3:  # grey; a channel count other than 1 or 3 is drawn as its channel mean
        imgs = imgs.mean(1, keepdim=True)
    cols = math.ceil(math.sqrt(len(units)))
    rows = math.ceil(len(units) / cols)
    # One mosaic, units row by row with a white line between them: one image to draw, not one axes per unit.
    grid = torch.ones(rows * (h + 1) - 1, cols * (w + 1) - 1, imgs.shape[1])
    for k, img in enumerate(imgs):
        r, q = divmod(k, cols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = img.permute(1, 2, 0)
    fig, ax = plt.subplots(figsize=(max(cols * 0.8, 3.0), rows * 0.8 + 0.8))
    ax.axis("off")
    if c == 3:
        ax.imshow(grid.numpy(), interpolation="nearest")
    else:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    shown = f"the {len(units)} of {n_units} units with the largest ||w1||" if n_units > max_units else "all units"
    # Each tile's own min..max spans black..white: the tiles' patterns compare, their brightness does not.
    fig.suptitle(f"W1, one image per hidden unit ({shown})\neach tile scaled to its own min..max", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
