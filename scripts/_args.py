"""argparse types shared by the scripts (imported as `from _args import ...`: a script's own folder is on its path)."""

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1, or argparse's one-line error naming what was given."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
