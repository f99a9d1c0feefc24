"""Seeded CPU generators, one stream per use, so that no two uses of one seed draw the same numbers."""

import numpy as np
import torch

# The streams: the validation hold-out, each epoch's shuffle and augmentation, the synthetic data set's class
# patterns, its training images, its test images.
VAL_STREAM, EPOCH_STREAM, TEMPLATE_STREAM, TRAIN_STREAM, TEST_STREAM = range(5)


def seeded_generator(*words: int) -> torch.Generator:
    """A CPU generator seeded from the integers `words` (e.g. (seed, stream, epoch)), mixed by numpy's SeedSequence."""
    state = np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
