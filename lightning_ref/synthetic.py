"""The generated data set: CIFAR-sized images of learnable, overlapping classes, from a seed (no disk)."""

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_ref.seeds import TEMPLATE_STREAM, TEST_STREAM, TRAIN_STREAM, seeded_generator

DISTRACTORS = 16  # smooth patterns mixed into every image, stronger than its class's own
CHUNK = 4096  # images generated at once, to bound the float32 temporaries


def generate(
    n: int, input_shape: tuple[int, int, int], num_classes: int, seed: int, train: bool
) -> tuple[Tensor, Tensor]:
    """uint8 images (n,C,H,W) and int64 labels (n,) of the training (train) or test split.

    Each class is a smooth, left-right symmetric colour pattern (so a flip keeps the class); an image is its class's
    pattern at a random contrast, over a random mixture of DISTRACTORS other smooth patterns, a random brightness and
    pixel noise: learnable, with classes that overlap. The patterns depend on the seed only, so both splits share them.
    """
    C, H, W = input_shape
    coarse = torch.rand(num_classes + DISTRACTORS, C, 4, 4, generator=seeded_generator(seed, TEMPLATE_STREAM)) * 2 - 1
    smooth = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)  # in [-1, 1]
    templates = (smooth[:num_classes] + smooth[:num_classes].flip(-1)) / 2  # a flip keeps the class
    distractors = smooth[num_classes:].flatten(1)  # (DISTRACTORS, C*H*W)
    gen = seeded_generator(seed, TRAIN_STREAM if train else TEST_STREAM)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    x = torch.empty(n, C, H, W, dtype=torch.uint8)
    for i in range(0, n, CHUNK):
        yc = y[i : i + CHUNK]
        m = len(yc)
        contrast = 0.5 + torch.rand(m, 1, 1, 1, generator=gen)
        mixture = (torch.randn(m, len(distractors), generator=gen) / 4) @ distractors
        brightness = torch.randn(m, 1, 1, 1, generator=gen)
        img = torch.randn(m, C, H, W, generator=gen).mul_(40)  # pixel noise
        img.add_(templates[yc].mul_(25 * contrast)).add_(mixture.view(m, C, H, W), alpha=80)
        img.add_(128 + 20 * brightness)
        x[i : i + m] = img.round_().clamp_(0, 255).to(torch.uint8)
    return x, y
