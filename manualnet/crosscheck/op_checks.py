"""torch.library.opcheck's tests as named checks, on every sample, when fn is a custom op: test_schema (an input
mutated without mutates_args, an output aliasing an input), test_autograd_registration, test_faketensor (the fake
kernel's shape, strides, dtype and device against the real kernel's; a missing register_fake) and
test_aot_dispatch_dynamic (the op traced by AOT autograd with dynamic shapes, forward and backward). Each failure's
note is opcheck's own message; the differentiable inputs require grad, so the autograd tests run."""

import contextlib
import logging
import warnings

import torch
from torch._ops import OpOverload

from manualnet.crosscheck.case import Case, NotApplicable, Tally, leaves
from manualnet.crosscheck.ops import OP_KINDS, as_op, overload

MESSAGE_CHARS = 400  # opcheck's message in a note, cut here
FAKE_TENSOR_LOG = logging.getLogger("torch._subclasses.fake_tensor")


def require_op(case: Case) -> OpOverload:
    """fn's OpOverload; NotApplicable when fn is not a custom op, or is a packet of several overloads."""
    op = as_op(case.fn)
    if op is None:
        raise NotApplicable(f"fn is not a custom op ({OP_KINDS})")
    op = overload(op)
    if isinstance(op, str):
        raise NotApplicable(op)
    return op


def _opcheck(case: Case, t: Tally, test: str) -> None:
    """One of opcheck's tests on each sample: a failure carries opcheck's message."""
    op = require_op(case)
    t.tolerance = "opcheck's"
    for name, s in case.samples.items():
        ins = leaves(s)
        torch._dynamo.reset()  # AOT's test compiles: each sample on a fresh Dynamo, not the session's cache and limits
        with _quiet():
            result = torch.library.opcheck(op, ins.args, ins.kwargs, test_utils=test, raise_exception=False)[test]
        if result != "SUCCESS":
            message = " ".join(line.strip() for line in str(result).strip().splitlines() if line.strip())
            t.fail(f"{name}: opcheck {test}: {type(result).__name__}: {message[:MESSAGE_CHARS]}")


@contextlib.contextmanager
def _quiet():
    """opcheck's own logs of a failing op (anomaly mode's forward traceback, fake tensor's meta errors) left out:
    its exception, in the note, says what failed."""
    level = FAKE_TENSOR_LOG.level
    FAKE_TENSOR_LOG.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        FAKE_TENSOR_LOG.setLevel(level)


def check_opcheck_schema(case: Case, t: Tally) -> None:
    """opcheck's test_schema: inputs mutated only where the schema says (mutates_args), outputs alias no input."""
    _opcheck(case, t, "test_schema")


def check_opcheck_autograd_registration(case: Case, t: Tally) -> None:
    """opcheck's test_autograd_registration: the op's autograd is registered (register_autograd or an Autograd
    kernel), not left to a backend kernel."""
    _opcheck(case, t, "test_autograd_registration")


def check_opcheck_faketensor(case: Case, t: Tally) -> None:
    """opcheck's test_faketensor: the fake kernel (register_fake) exists and gives the real kernel's shapes,
    strides, dtypes and devices."""
    _opcheck(case, t, "test_faketensor")


def check_opcheck_aot_dispatch_dynamic(case: Case, t: Tally) -> None:
    """opcheck's test_aot_dispatch_dynamic: the op traced by AOT autograd with dynamic shapes gives the eager
    outputs and gradients."""
    _opcheck(case, t, "test_aot_dispatch_dynamic")
