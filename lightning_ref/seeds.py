"""Seeded CPU generators, one stream per use, so that no two uses of one seed draw the same numbers."""

import numpy as np
import torch

# The streams: the validation hold-out, each epoch's shuffle and augmentation, the synthetic data set's class
# patterns, its training images, its test images, each training step's dropout mask.
VAL_STREAM, EPOCH_STREAM, TEMPLATE_STREAM, TRAIN_STREAM, TEST_STREAM, DROPOUT_STREAM = range(6)


def mixed_seed(*words: int) -> int:
    """A 64-bit seed mixed from the integers `words` by numpy's SeedSequence."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0])


def seeded_generator(*words: int) -> torch.Generator:
    """A CPU generator seeded from the integers `words` (e.g. (seed, stream, epoch))."""
    return torch.Generator().manual_seed(mixed_seed(*words))
