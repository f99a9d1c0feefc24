"""On-device batches: whole-batch shuffle, crop, flip and normalisation of uint8 image tensors.

The path of one training batch (all whole-batch torch ops, on the device where the images live):

    pos = [i*G + r*B, i*G + (r+1)*B)              this rank's share of global batch i
    u8  = x[perm[pos]]                            (B,C,H,W) uint8
    u8  = crop_flip(u8, corner[pos], flip[pos])   random crop of the zero-padded image, horizontal flip (each optional)
    x   = u8 * scale + offset                     float32, = (u8 / 255 - mean) / std per channel

with perm, corner and flip drawn once per epoch from (seed, epoch), B the per-rank batch, G = B * world_size the
global batch and r the rank, so under DDP the ranks together see exactly the samples and augmentations of one process
with batch G.
"""

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_ref.seeds import EPOCH_STREAM, seeded_generator


def crop_flip(x: Tensor, corner: Tensor, flip: Tensor, pad: int) -> Tensor:
    """Zero-pad x (B,C,H,W) by `pad` on each side, crop an HxW window whose top-left corner is (corner[:,0],
    corner[:,1]) in [0, 2*pad], then mirror the width where flip (B,) is True:
    out[b,c,h,w] = xp[b, c, ch+h, cw + (W-1-w if flip else w)]. One gather for the whole batch."""
    B, C, H, W = x.shape
    Wp = W + 2 * pad
    xp = F.pad(x, (pad, pad, pad, pad))  # (B,C,H+2pad,W+2pad)
    h = torch.arange(H, device=x.device)
    w = torch.arange(W, device=x.device)
    rows = corner[:, 0, None] + h  # (B,H)
    cols = corner[:, 1, None] + torch.where(flip[:, None], W - 1 - w, w)  # (B,W)
    src = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, H * W).expand(B, C, H * W)
    return xp.flatten(2).gather(2, src).view(B, C, H, W)


class TensorBatches:
    """Batches (x, y) over uint8 images x (N,C,H,W) and int64 labels y (N,), built on their device.

    x comes out float32 and normalised: (u8 / 255 - mean) / std, with mean and std (C,) in [0, 1] pixel units.
    train=True: each epoch shuffles and draws, per sample, a crop corner in [0, 2*crop_pad]^2 (when crop_pad > 0; the
    image is zero-padded by crop_pad first) and a coin for a horizontal flip (when flip) from the generator seeded
    by (seed, epoch), where `epoch` is an int or a function returning the current one (read when iteration starts);
    rank `rank` of `world_size` takes its contiguous share of each global batch of batch_size * world_size samples;
    the last incomplete global batch is dropped, so every step has the same size on every rank.
    train=False: all samples in order, the last batch possibly smaller; every rank sees all of them.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        mean: Tensor,
        std: Tensor,
        *,
        train: bool = False,
        crop_pad: int = 0,
        flip: bool = False,
        seed: int = 0,
        epoch: int | Callable[[], int] = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.train, self.crop_pad, self.flip, self.seed, self.epoch = train, crop_pad, flip, seed, epoch
        self.rank, self.world_size = rank, world_size
        # (u8 / 255 - mean) / std = u8 * scale + offset, per channel, shaped (1,C,1,1) to broadcast over the batch.
        std = std.to(torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(x.device)
        self.offset = (-mean.to(torch.float32) / std).view(1, -1, 1, 1).to(x.device)

    def __len__(self) -> int:
        if self.train:
            return len(self.x) // (self.batch_size * self.world_size)
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.train:
            for i in range(0, len(self.x), self.batch_size):
                yield self._normalise(self.x[i : i + self.batch_size]), self.y[i : i + self.batch_size]
            return
        perm, corner, flip = self._draw_epoch()
        augment = corner is not None
        B, G = self.batch_size, self.batch_size * self.world_size
        for i in range(len(self)):
            pos = slice(i * G + self.rank * B, i * G + (self.rank + 1) * B)
            idx = perm[pos]
            u8 = self.x.index_select(0, idx)
            if augment:
                u8 = crop_flip(u8, corner[pos], flip[pos], self.crop_pad)
            yield self._normalise(u8), self.y.index_select(0, idx)

    def _draw_epoch(self) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The epoch's permutation (N,), crop corners (N,2) and flips (N,), on the images' device; corners and flips
        are None without augmentation. One draw on the CPU (the same numbers on every device), indexed by position."""
        n, device = len(self.x), self.x.device
        epoch = self.epoch() if callable(self.epoch) else self.epoch
        gen = seeded_generator(self.seed, EPOCH_STREAM, epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        if not (self.crop_pad > 0 or self.flip):
            return perm, None, None
        pad = self.crop_pad
        corner = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen) if pad else torch.zeros(n, 2, dtype=torch.int64)
        flip = (torch.rand(n, generator=gen) < 0.5) if self.flip else torch.zeros(n, dtype=torch.bool)
        return perm, corner.to(device), flip.to(device)

    def _normalise(self, u8: Tensor) -> Tensor:
        return (u8.to(torch.float32) * self.scale).add_(self.offset)
