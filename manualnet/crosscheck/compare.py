"""Compare two sets of gradients, parameter by parameter (the `cmp` of Karpathy's "backprop ninja").

The relative error is scale-relative: max |a - b| / max |b|, the error measured against the reference gradient's
largest magnitude, so that entries near zero do not blow it up.
"""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GradDiff:
    """How far one manual gradient is from its reference."""

    name: str
    max_abs: float
    max_rel: float
    bitwise: bool

    def within(self, rtol: float) -> bool:
        """True when max_rel <= rtol."""
        return self.max_rel <= rtol


def compare(name: str, manual: Tensor, reference: Tensor) -> GradDiff:
    """GradDiff of `manual` against `reference` (same shape), computed in float64."""
    if manual.shape != reference.shape:
        raise ValueError(f"{name}: expected the reference's shape {tuple(reference.shape)}, got {tuple(manual.shape)}")
    a, b = manual.detach().double(), reference.detach().double()
    max_abs = (a - b).abs().max().item()
    scale = b.abs().max().item()
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    # torch.equal compares values after type promotion and takes -0.0 == 0.0: bitwise also needs the same dtype and
    # the same sign bits.
    bitwise = (
        manual.dtype == reference.dtype
        and torch.equal(manual, reference)
        and torch.equal(manual.signbit(), reference.signbit())
    )
    return GradDiff(name, max_abs, max_rel, bitwise)


def compare_all(manual: dict[str, Tensor], reference: dict[str, Tensor]) -> list[GradDiff]:
    """One GradDiff per name in `reference` (e.g. w1, b1, w2, b2)."""
    return [compare(name, manual[name], reference[name]) for name in reference]


def format_table(diffs: list[GradDiff], title: str = "") -> str:
    """A markdown table of the diffs: parameter, max abs error, max rel error, bitwise equal."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| param | max abs err | max rel err | bitwise equal |", "| --- | ---: | ---: | :---: |"]
    for d in diffs:
        lines.append(f"| {d.name} | {d.max_abs:.3e} | {d.max_rel:.3e} | {'yes' if d.bitwise else 'no'} |")
    return "\n".join(lines)
