"""How the hand-written Functions are called: the workarounds that keep them exact under torch.compile, and the fast
path that keeps a small step's cost around the matrix products low. The math is in manualnet/functional.py; nothing
here changes a number, and every argument is still checked before any work (manualnet/validate.py).

- torch.compile (`apply`, `no_jvp_twin`): Dynamo inlines a Function's forward, and so differentiates it with autograd
  instead of running the hand-written backward, when its inputs are the very inputs of a torch.func.grad
  (pytorch #193279); it refuses to trace a Function that defines jvp ("Unsupported custom jvp", a graph break) and,
  under forward AD, inlines it and drops the jvp (pytorch #192985).
- Argument binding (`PositionalSignature`): Function.apply binds its arguments to forward's signature on every call
  (torch.autograd.function._bind_default_args: inspect.signature, Signature.bind, apply_defaults) so that
  setup_context sees defaults filled in. The Functions are called with every argument given, positionally: their
  signature binds exactly those directly (a call that leaves a default out takes inspect's general bind).
- Weights' layout (`transposed`, `like`): TwoLayerNet stores w1 and w2 as nn.Linear stores its weights (module.py);
  the backward makes dW1 and dW2 in each weight's own layout, so that AccumulateGrad stores them without a copy.
- Validation once per signature (`Seen`): the argument checks depend only on the arguments' types, shapes, dtypes
  and devices (and the autocast dtype), so a signature that passed them once passes them again; any other signature
  is checked in full. The labels' range depends on their values and is checked on every call.
"""

import inspect

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor


def autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype autocast would give a matmul on x's device, or None when autocast is off there."""
    device_type = x.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def no_jvp_twin(fn: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """fn without its jvp (the same forward, setup_context and backward), which Dynamo traces (see apply)."""
    return type(f"_{fn.__name__}NoJvp", (fn,), {"jvp": staticmethod(torch.autograd.Function.jvp)})


def apply(fn: type[torch.autograd.Function], fn_no_jvp: type[torch.autograd.Function], *args: Tensor | float | None):
    """fn.apply(*args), in the form that keeps fn's hand-written derivatives under torch.compile.

    While compiling: under forward AD, fn runs eagerly (a graph break, and its jvp runs: pytorch #192985); otherwise
    fn_no_jvp, fn without its jvp, is traced, backward and all, on views of the floating inputs, which makes them
    intermediates of the graph (free once compiled), so that Dynamo keeps the hand-written backward (pytorch #193279).
    """
    if not torch.compiler.is_compiling():
        return fn.apply(*args)
    if fwAD._current_level >= 0:  # a dual level is open: tangents may reach fn
        return _eager_apply(fn, *args)
    return fn_no_jvp.apply(*(t.view_as(t) if isinstance(t, Tensor) and t.is_floating_point() else t for t in args))


@torch.compiler.disable
def _eager_apply(fn: type[torch.autograd.Function], *args: Tensor):
    return fn.apply(*args)


class _Bound:
    """What Signature.bind returns, for positional arguments that fill every parameter (so no defaults to apply)."""

    __slots__ = ("signature", "args", "kwargs")

    def __init__(self, signature: inspect.Signature, args: tuple) -> None:
        self.signature, self.args, self.kwargs = signature, args, {}

    @property
    def arguments(self) -> dict:
        return dict(zip(self.signature.parameters, self.args, strict=True))

    def apply_defaults(self) -> None:
        pass


class PositionalSignature(inspect.Signature):
    """A function's signature whose bind takes a call with one positional argument per parameter directly (any other
    call, one leaving a default out for instance, goes through inspect's general bind)."""

    __slots__ = ()

    def bind(self, *args, **kwargs):
        if kwargs or len(args) != len(self.parameters):
            return super().bind(*args, **kwargs)
        return _Bound(self, args)


def bind_positionally(fn: type[torch.autograd.Function]) -> None:
    """Give fn.forward a PositionalSignature, which Function.apply's per-call binding reads (inspect.signature returns
    a function's __signature__)."""
    sig = inspect.signature(fn.forward)
    if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in sig.parameters.values()):
        raise TypeError(f"{fn.__name__}.forward: expected positional-or-keyword parameters only, got {sig}")
    fn.forward.__signature__ = PositionalSignature(list(sig.parameters.values()))


class Seen:
    """The argument signatures that passed their checks: (type, shape, dtype, device) per tensor and extra values.

    Skipped while compiling or under a torch.func transform (a Python set would be traced or see wrapped tensors):
    there every call is checked in full. Holds at most `size` signatures, then starts afresh."""

    def __init__(self, size: int = 64) -> None:
        self.size, self.signatures = size, set()

    def key(self, tensors: tuple, *extra) -> tuple | None:
        """The signature of these arguments; None where one is not a Tensor or where checks must run in full."""
        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return None
        key = list(extra)
        for t in tensors:
            if not isinstance(t, Tensor):
                return None
            key += (type(t), t.shape, t.dtype, t.device)
        return tuple(key)

    def __contains__(self, key: tuple | None) -> bool:
        return key is not None and key in self.signatures

    def add(self, key: tuple | None) -> None:
        if key is None:
            return
        if len(self.signatures) >= self.size:
            self.signatures.clear()
        self.signatures.add(key)


def transposed(w: Tensor) -> bool:
    """Whether the matrix w (R,K) is stored as its transpose: (K,R) row-major, the layout of nn.Linear's weight."""
    return not w.is_contiguous() and w.T.is_contiguous()


def like(w: Tensor, g: Tensor) -> Tensor:
    """g (w's shape) in w's memory layout where w is row-major or transposed (a copy only when they differ)."""
    if transposed(w) == transposed(g):
        return g
    return g.contiguous() if not transposed(w) else g.T.contiguous().T
