"""argparse types shared by the command-line tools (manualnet.gradient_report, lightning_ref.crosscheck_train, ...)."""

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1, or argparse's one-line error naming what was given."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
