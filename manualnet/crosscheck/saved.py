"""What a forward keeps for backward, seen by torch.autograd.graph.saved_tensors_hooks: the one count of saved bytes
that the harness's saved_tensors check and the benchmark (lightning_ref.bench.step) share.

A saved view keeps its whole storage alive, so bytes are counted per distinct storage at its full size; tensors that
the caller holds anyway (the inputs, the parameters) can be left out.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Saved:
    """The tensors one forward packed for backward, each with its version counter at the time it was packed."""

    packed: tuple[tuple[Tensor, int], ...]

    def nbytes(self, held: Iterable[Tensor] = ()) -> int:
        """Bytes of the distinct storages saved, leaving out the storages of the tensors in `held`."""
        held_ptrs = {t.untyped_storage().data_ptr() for t in held if isinstance(t, Tensor)}
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t, _ in self.packed}
        return sum(n for ptr, n in storages.items() if ptr not in held_ptrs)

    def per_pack_nbytes(self) -> int:
        """numel * itemsize summed over every pack (a tensor saved twice counts twice)."""
        return sum(t.numel() * t.element_size() for t, _ in self.packed)

    def modified(self) -> list[str]:
        """A line for each saved tensor whose version counter moved after it was saved (modified in place)."""
        return [
            f"a saved {tuple(t.shape)} tensor modified in place after it was saved (version {v} -> {t._version})"
            for t, v in self.packed
            if t._version != v
        ]


def saved_for_backward(f: Callable, *args, **kwargs) -> tuple[object, Saved]:
    """(f(*args, **kwargs), what that forward saved for backward)."""
    packed = []

    def pack(t: Tensor) -> Tensor:
        packed.append((t, t._version))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = f(*args, **kwargs)
    return out, Saved(tuple(packed))
