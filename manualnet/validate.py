"""Argument checks for the Functions and the module: each error names the argument, the expected and the given.

They run before any work is done. Nothing is broadcast or cast to make a bad input fit.
"""

import torch
from torch import Tensor

# The floating dtypes autocast casts to its lower precision (float64 is left alone, as torch does).
AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def _is_tracing() -> bool:
    """True under torch.compile or a torch.func transform, where a check that reads tensor values cannot run."""
    return torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()


def autocast_dtype_of(t: Tensor, autocast: torch.dtype | None) -> torch.dtype:
    """The dtype t has once autocast (to `autocast`, or None for off) has cast it."""
    return autocast if autocast is not None and t.dtype in AUTOCAST_ELIGIBLE else t.dtype


def check_int(name: str, value: object, low: int) -> None:
    """`name` must be an int (not a bool) >= low (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def check_tensor(name: str, t: object, dim: int) -> None:
    """`name` must be a floating torch.Tensor with `dim` dimensions."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if t.dim() != dim:
        raise ValueError(f"{name}: expected {dim} dimensions, got {t.dim()} (shape {tuple(t.shape)})")


def check_fraction(name: str, value: object) -> None:
    """`name` must be a real number (not a bool) in [0, 1)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")


def check_net_inputs(
    x: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    autocast: torch.dtype | None = None,
    m: Tensor | None = None,
) -> None:
    """Check x (N,D), w1 (D,H), b1 (H,), w2 (H,C), b2 (C,) and the dropout mask m (N,H) when given: dims, sizes,
    floating dtypes, one dtype, one device; m requires no gradient and holds no negative value.

    Under autocast (its dtype given) the dtypes are compared after the cast autocast would make.
    """
    named = {"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2} | ({} if m is None else {"m": m})
    for name, t in named.items():
        check_tensor(name, t, dim=1 if name.startswith("b") else 2)
    n, d = x.shape
    if n == 0:
        raise ValueError(f"x: expected a non-empty batch (N >= 1), got shape {tuple(x.shape)}")
    if w1.shape[0] != d:
        raise ValueError(f"w1: expected shape (D, H) with D = x.shape[1] = {d}, got {tuple(w1.shape)}")
    h = w1.shape[1]
    if b1.shape != (h,):
        raise ValueError(f"b1: expected shape (H,) = ({h},) from w1, got {tuple(b1.shape)}")
    if w2.shape[0] != h:
        raise ValueError(f"w2: expected shape (H, C) with H = w1.shape[1] = {h}, got {tuple(w2.shape)}")
    c = w2.shape[1]
    if b2.shape != (c,):
        raise ValueError(f"b2: expected shape (C,) = ({c},) from w2, got {tuple(b2.shape)}")
    if m is not None and m.shape != (n, h):
        raise ValueError(
            f"m: expected the dropout mask's shape (N, H) = ({n}, {h}) from x and w1, got {tuple(m.shape)}"
        )
    if m is not None:
        check_mask_grad(m)
    for name, t in named.items():
        if t.device != x.device:
            raise ValueError(f"{name}: expected a tensor on x's device {x.device}, got one on {t.device}")
    want = autocast_dtype_of(x, autocast)
    for name, t in named.items():
        got = autocast_dtype_of(t, autocast)
        if got != want:
            raise TypeError(f"{name}: expected dtype {want} (that of x), got {got}")
    if m is not None and not _is_tracing():
        assert_mask_nonnegative(m)


def check_scores(s2: Tensor) -> None:
    """s2 must be floating scores of shape (N,C) with N >= 1 and C >= 1."""
    check_tensor("s2", s2, dim=2)
    if s2.shape[0] == 0 or s2.shape[1] == 0:
        raise ValueError(f"s2: expected scores of shape (N, C) with N, C >= 1, got {tuple(s2.shape)}")


def check_labels(y: object, n: int, num_classes: int, device: torch.device, name: str = "y") -> None:
    """y must be an int64 tensor of shape (n,) on `device` with every value in [0, num_classes).

    The range is checked on y's device without reading the values to the host (no sync on CUDA; see
    assert_labels_in_range). Under torch.compile or a torch.func transform it is skipped, and an out-of-range label
    fails inside gather instead. `name` is the argument named in the errors.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of int64 class indices, got {type(y).__name__}")
    if y.dtype != torch.int64:
        raise TypeError(f"{name}: expected int64 class indices, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name}: expected shape (N,) = ({n},), got {tuple(y.shape)}")
    if y.device != device:
        raise ValueError(f"{name}: expected a tensor on the scores' device {device}, got one on {y.device}")
    if not _is_tracing():
        assert_labels_in_range(y, num_classes, name)


def assert_labels_in_range(y: Tensor, num_classes: int, name: str = "y") -> None:
    """Every value of the int64 tensor y is in [0, num_classes), checked on y's device with no host read.

    On CUDA the check is queued like any kernel (torch._assert_async): a failure stops the process at the next
    synchronisation, with this message. On the CPU it is immediate and raises ValueError with the values' range.
    """
    msg = f"{name}: expected class indices in [0, {num_classes})"
    try:
        # y equals itself clamped to [0, C - 1] exactly when every value is in range: three small operations
        torch._assert_async(y.clamp(0, num_classes - 1).eq(y).all(), msg)
    except RuntimeError:  # only on the CPU, where the assert is synchronous: name the range the values span
        lo, hi = torch.aminmax(y)
        raise ValueError(f"{msg}, got values from {lo.item()} to {hi.item()}") from None


def check_mask_grad(m: Tensor) -> None:
    """The dropout mask m must not require grad: it is not differentiated."""
    if m.requires_grad:
        raise ValueError("m: expected a dropout mask that does not require grad (it is not differentiated), got one")


def assert_mask_nonnegative(m: Tensor) -> None:
    """Every value of the dropout mask m is >= 0 (the backward reads the ReLU's mask [s1 > 0] off x2 = max(0, s1) * m,
    which needs m >= 0), checked on m's device with no host read (as assert_labels_in_range)."""
    try:
        torch._assert_async((m >= 0).all(), "m: expected a dropout mask with entries >= 0")
    except RuntimeError:  # only on the CPU, where the assert is synchronous
        raise ValueError(f"m: expected a dropout mask with entries >= 0, got a minimum of {m.min().item()}") from None
