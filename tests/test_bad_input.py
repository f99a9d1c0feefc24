"""Every bad input raises ValueError or TypeError naming the argument, the expected and the given, before any work.

An autouse fixture makes both Functions' `apply` fail if reached, so each error here is proven to come from the
checks that run before the Functions (no graph is built, nothing is computed).
"""

import re

import pytest
import torch
from torch.overrides import TorchFunctionMode

from manualnet import TwoLayerNet, dropout_mask, softmax_cross_entropy, two_layer_net
from manualnet.functional import SoftmaxCrossEntropyFn, TwoLayerNetFn

N, D, H, C = 4, 5, 3, 2


class AppliedError(AssertionError):
    """Raised when a Function was applied although its inputs were bad."""


@pytest.fixture(autouse=True)
def functions_must_not_run(monkeypatch):
    def fail(*args, **kwargs):
        raise AppliedError("a Function was applied")

    monkeypatch.setattr(TwoLayerNetFn, "apply", fail)
    monkeypatch.setattr(SoftmaxCrossEntropyFn, "apply", fail)


def good(**changes):
    """Valid x, w1, b1, w2, b2 (requiring gradients), with some replaced."""
    t = {
        "x": torch.randn(N, D, requires_grad=True),
        "w1": torch.randn(D, H, requires_grad=True),
        "b1": torch.randn(H, requires_grad=True),
        "w2": torch.randn(H, C, requires_grad=True),
        "b2": torch.randn(C, requires_grad=True),
    }
    t.update(changes)
    return t


def test_valid_inputs_reach_the_functions_so_the_fixture_is_effective():
    with pytest.raises(AppliedError):
        two_layer_net(**good())
    with pytest.raises(AppliedError):
        softmax_cross_entropy(torch.randn(N, C), torch.zeros(N, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------- two_layer_net

NET_CASES = {
    # wrong number of dimensions
    "x 1-d": ({"x": torch.randn(D)}, ValueError, r"^x: expected 2 dimensions, got 1"),
    "x 3-d": ({"x": torch.randn(N, 3, D)}, ValueError, r"^x: expected 2 dimensions, got 3 \(shape \(4, 3, 5\)\)"),
    "w1 1-d": ({"w1": torch.randn(D)}, ValueError, r"^w1: expected 2 dimensions, got 1"),
    "b1 2-d": ({"b1": torch.randn(1, H)}, ValueError, r"^b1: expected 1 dimensions, got 2 \(shape \(1, 3\)\)"),
    "w2 3-d": ({"w2": torch.randn(1, H, C)}, ValueError, r"^w2: expected 2 dimensions, got 3"),
    "b2 0-d": ({"b2": torch.tensor(0.0)}, ValueError, r"^b2: expected 1 dimensions, got 0"),
    # sizes that do not match (nothing is broadcast)
    "D mismatch": (
        {"w1": torch.randn(D + 1, H)},
        ValueError,
        r"^w1: expected shape \(D, H\) with D = .* = 5, got \(6, 3\)",
    ),
    "H mismatch in b1": ({"b1": torch.randn(H + 1)}, ValueError, r"^b1: expected shape \(H,\) = \(3,\) .*got \(4,\)"),
    "b1 of size 1": ({"b1": torch.randn(1)}, ValueError, r"^b1: expected shape \(H,\) = \(3,\) .*got \(1,\)"),
    "H mismatch in w2": (
        {"w2": torch.randn(H + 1, C)},
        ValueError,
        r"^w2: expected shape \(H, C\) with H = .* = 3, got \(4, 2\)",
    ),
    "C mismatch in b2": ({"b2": torch.randn(C + 1)}, ValueError, r"^b2: expected shape \(C,\) = \(2,\) .*got \(3,\)"),
    # empty batch
    "empty batch": (
        {"x": torch.randn(0, D)},
        ValueError,
        r"^x: expected a non-empty batch \(N >= 1\), got shape \(0, 5\)",
    ),
    # non-floating tensors
    "x int64": (
        {"x": torch.ones(N, D, dtype=torch.int64)},
        TypeError,
        r"^x: expected a floating-point tensor, got dtype torch.int64",
    ),
    "w1 int32": (
        {"w1": torch.ones(D, H, dtype=torch.int32)},
        TypeError,
        r"^w1: expected a floating-point tensor, got dtype torch.int32",
    ),
    "b2 bool": (
        {"b2": torch.ones(C, dtype=torch.bool)},
        TypeError,
        r"^b2: expected a floating-point tensor, got dtype torch.bool",
    ),
    # dtypes that differ (nothing is cast)
    "w1 float64": (
        {"w1": torch.randn(D, H, dtype=torch.float64)},
        TypeError,
        r"^w1: expected dtype torch.float32 \(that of x\), got torch.float64",
    ),
    "b2 bfloat16": (
        {"b2": torch.randn(C, dtype=torch.bfloat16)},
        TypeError,
        r"^b2: expected dtype torch.float32 \(that of x\), got torch.bfloat16",
    ),
    "x float64": (
        {"x": torch.randn(N, D, dtype=torch.float64)},
        TypeError,
        r"^w1: expected dtype torch.float64 \(that of x\), got torch.float32",
    ),
    # not tensors
    "x a list": ({"x": [[0.0] * D] * N}, TypeError, r"^x: expected a torch.Tensor, got list"),
    "w2 a float": ({"w2": 1.0}, TypeError, r"^w2: expected a torch.Tensor, got float"),
    "b1 None": ({"b1": None}, TypeError, r"^b1: expected a torch.Tensor, got NoneType"),
}


@pytest.mark.parametrize("changes, error, message", NET_CASES.values(), ids=NET_CASES.keys())
def test_two_layer_net_rejects_bad_input_naming_argument_expected_and_given(changes, error, message):
    with pytest.raises(error, match=message):
        two_layer_net(**good(**changes))


def test_two_layer_net_rejects_tensors_on_different_devices():
    # The "meta" device stands in for a second device on a CPU-only machine.
    meta = {"w1": torch.randn(D, H, device="meta")}
    with pytest.raises(ValueError, match=r"^w1: expected a tensor on x's device cpu, got one on meta"):
        two_layer_net(**good(**meta))
    with pytest.raises(ValueError, match=r"^w1: expected a tensor on x's device meta, got one on cpu"):
        two_layer_net(**good(x=torch.randn(N, D, device="meta")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_layer_net_rejects_cpu_weights_with_cuda_x():
    with pytest.raises(ValueError, match=r"^w1: expected a tensor on x's device cuda:0, got one on cpu"):
        two_layer_net(**good(x=torch.randn(N, D, device="cuda")))


def test_two_layer_net_under_autocast_still_rejects_float64_beside_float32():
    # autocast casts float32 to bfloat16 but leaves float64 alone, as it does for nn.Linear: they still differ.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=r"^w1: expected dtype torch.bfloat16 \(that of x\), got torch.float64"):
            two_layer_net(**good(w1=torch.randn(D, H, dtype=torch.float64)))


class GraphWatch(TorchFunctionMode):
    """Records every torch function call whose result joined the autograd graph (has a grad_fn)."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            self.built.append(getattr(func, "__name__", str(func)))
        return out


def test_bad_input_with_gradients_required_builds_no_graph():
    t = good(w2=torch.randn(H + 1, C, requires_grad=True))
    with GraphWatch() as watch:
        t["x"] * 2  # the watch sees a graph node being built...
    assert watch.built  # (one multiplication)
    with GraphWatch() as watch, pytest.raises(ValueError, match=r"^w2:"):
        two_layer_net(**t)  # ...and none here: the checks run before any differentiable operation
    assert watch.built == []


# ------------------------------------------------------------------------------------ two_layer_net's dropout mask

MASK_CASES = {
    "mask shape": (
        torch.ones(N, H + 1),
        ValueError,
        r"^m: expected the dropout mask's shape \(N, H\) = \(4, 3\) .*got \(4, 4\)",
    ),
    "mask (H,)": (torch.ones(H), ValueError, r"^m: expected 2 dimensions, got 1"),
    "mask float64 beside float32": (
        torch.ones(N, H, dtype=torch.float64),
        TypeError,
        r"^m: expected dtype torch.float32 \(that of x\), got torch.float64",
    ),
    "mask bool": (torch.ones(N, H, dtype=torch.bool), TypeError, r"^m: expected a floating-point tensor, got dtype"),
    "mask on meta": (torch.ones(N, H, device="meta"), ValueError, r"^m: expected a tensor on x's device cpu, got one"),
    "mask requires grad": (
        torch.ones(N, H, requires_grad=True),
        ValueError,
        r"^m: expected a dropout mask that does not require grad",
    ),
    "mask negative": (
        torch.tensor([[2.0, 0.0, 2.0]] * (N - 1) + [[2.0, -2.0, 0.0]]),
        ValueError,
        r"^m: expected a dropout mask with entries >= 0, got a minimum of -2.0",
    ),
}


@pytest.mark.parametrize("m, error, message", MASK_CASES.values(), ids=MASK_CASES.keys())
def test_two_layer_net_rejects_a_bad_dropout_mask_naming_m(m, error, message):
    with pytest.raises(error, match=message):
        two_layer_net(**good(), m=m)


def test_two_layer_net_rejects_a_float32_mask_with_float64_inputs():
    t = {k: v.detach().double() for k, v in good().items()}
    with pytest.raises(TypeError, match=r"^m: expected dtype torch.float64 \(that of x\), got torch.float32"):
        two_layer_net(**t, m=torch.ones(N, H))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_layer_net_rejects_a_cpu_mask_with_cuda_inputs():
    t = {k: v.detach().cuda() for k, v in good().items()}
    with pytest.raises(ValueError, match=r"^m: expected a tensor on x's device cuda:0, got one on cpu"):
        two_layer_net(**t, m=torch.ones(N, H))


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, True, "0.5", None])
def test_dropout_mask_rejects_p_outside_0_to_1_naming_p(p):
    with pytest.raises(ValueError, match=rf"^p: expected a number in \[0, 1\), got {re.escape(repr(p))}$"):
        dropout_mask((N, H), p)


# ------------------------------------------------------------------------------------------ softmax_cross_entropy

S2 = torch.randn(N, C)
LABEL_CASES = {
    "float labels": (torch.zeros(N), TypeError, r"^y: expected int64 class indices, got dtype torch.float32"),
    "int32 labels": (
        torch.zeros(N, dtype=torch.int32),
        TypeError,
        r"^y: expected int64 class indices, got dtype torch.int32",
    ),
    "bool labels": (
        torch.zeros(N, dtype=torch.bool),
        TypeError,
        r"^y: expected int64 class indices, got dtype torch.bool",
    ),
    "labels a list": ([0] * N, TypeError, r"^y: expected a torch.Tensor of int64 class indices, got list"),
    "labels (N,1)": (
        torch.zeros(N, 1, dtype=torch.int64),
        ValueError,
        r"^y: expected shape \(N,\) = \(4,\), got \(4, 1\)",
    ),
    "labels too short": (
        torch.zeros(N - 1, dtype=torch.int64),
        ValueError,
        r"^y: expected shape \(N,\) = \(4,\), got \(3,\)",
    ),
    "labels one-hot": (
        torch.zeros(N, C, dtype=torch.int64),
        ValueError,
        r"^y: expected shape \(N,\) = \(4,\), got \(4, 2\)",
    ),
    "label -1": (
        torch.tensor([0, 1, -1, 0]),
        ValueError,
        r"^y: expected class indices in \[0, 2\), got values from -1 to 1",
    ),
    "label C": (
        torch.tensor([0, 1, 2, 0]),
        ValueError,
        r"^y: expected class indices in \[0, 2\), got values from 0 to 2",
    ),
    "labels on meta": (
        torch.zeros(N, dtype=torch.int64, device="meta"),
        ValueError,
        r"^y: expected a tensor on the scores' device cpu, got one on meta",
    ),
}


@pytest.mark.parametrize("y, error, message", LABEL_CASES.values(), ids=LABEL_CASES.keys())
def test_softmax_cross_entropy_rejects_bad_labels(y, error, message):
    with pytest.raises(error, match=message):
        softmax_cross_entropy(S2, y)


SCORE_CASES = {
    "scores 1-d": (torch.randn(C), ValueError, r"^s2: expected 2 dimensions, got 1"),
    "scores int": (
        torch.ones(N, C, dtype=torch.int64),
        TypeError,
        r"^s2: expected a floating-point tensor, got dtype torch.int64",
    ),
    "scores empty batch": (
        torch.randn(0, C),
        ValueError,
        r"^s2: expected scores of shape \(N, C\) with N, C >= 1, got \(0, 2\)",
    ),
    "scores no classes": (
        torch.randn(N, 0),
        ValueError,
        r"^s2: expected scores of shape \(N, C\) with N, C >= 1, got \(4, 0\)",
    ),
    "scores a list": ([[0.0] * C] * N, TypeError, r"^s2: expected a torch.Tensor, got list"),
}


@pytest.mark.parametrize("s2, error, message", SCORE_CASES.values(), ids=SCORE_CASES.keys())
def test_softmax_cross_entropy_rejects_bad_scores(s2, error, message):
    with pytest.raises(error, match=message):
        softmax_cross_entropy(s2, torch.zeros(N, dtype=torch.int64))


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, "0.1", True, None, float("nan")])
def test_softmax_cross_entropy_rejects_label_smoothing_outside_0_to_1_naming_it(eps):
    with pytest.raises(
        ValueError, match=rf"^label_smoothing: expected a number in \[0, 1\), got {re.escape(repr(eps))}$"
    ):
        softmax_cross_entropy(S2, torch.zeros(N, dtype=torch.int64), eps)


# ------------------------------------------------------------------------------------------------------ the module


@pytest.mark.parametrize("name", ["in_features", "hidden", "num_classes"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3"])
def test_module_rejects_sizes_that_are_not_integers_of_at_least_1(name, value):
    sizes = {"in_features": D, "hidden": H, "num_classes": C, name: value}
    with pytest.raises(ValueError, match=rf"^{name}: expected an integer >= 1, got {value!r}") as e:
        TwoLayerNet(**sizes)
    assert type(e.value) is ValueError  # manualnet's own, not a subclass of a caller's (the CLI maps it)


MODULE_CASES = {
    "trailing size": (
        torch.randn(N, 2, 3),
        ValueError,
        r"^x: expected shape \(N, \.\.\.\) with 5 values per row, got \(4, 2, 3\)",
    ),
    "1-d x": (torch.randn(D), ValueError, r"^x: expected shape \(N, \.\.\.\) with 5 values per row, got \(5,\)"),
    "empty batch": (torch.randn(0, D), ValueError, r"^x: expected a non-empty batch \(N >= 1\), got shape \(0, 5\)"),
    "integer images": (
        torch.zeros(N, D, dtype=torch.uint8),
        TypeError,
        r"^x: expected a floating-point tensor, got dtype torch.uint8",
    ),
    "float64 x": (
        torch.randn(N, D, dtype=torch.float64),
        TypeError,
        r"^w1: expected dtype torch.float64 \(that of x\), got torch.float32",
    ),
    "numpy-like": ([[0.0] * D], TypeError, r"^x: expected a torch.Tensor, got list"),
}


@pytest.mark.parametrize("x, error, message", MODULE_CASES.values(), ids=MODULE_CASES.keys())
def test_module_forward_rejects_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        TwoLayerNet(D, H, C, seed=0)(x)


def test_module_loss_rejects_out_of_range_labels_before_the_loss_function(monkeypatch):
    monkeypatch.undo()  # the scores are computed first (the net's Function runs): only the loss Function is guarded
    monkeypatch.setattr(SoftmaxCrossEntropyFn, "apply", lambda *a: pytest.fail("loss Function applied"))
    model = TwoLayerNet(D, H, C, seed=0)
    with pytest.raises(ValueError, match=r"^y: expected class indices in \[0, 2\), got values from 0 to 5"):
        model.loss(torch.randn(N, D), torch.tensor([0, 1, 5, 0]))
