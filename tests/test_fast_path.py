"""The fast path around the hand-written Functions (manualnet/dispatch.py, the weights' layout) keeps every promise:
a signature checked once is not checked again, but any change of shape, dtype or device after it is still refused
with the same error; the labels' range is checked on every call; Function.apply's binding gives forward the same
arguments without inspect's general bind; the gradients come back in each weight's own memory layout, with the
values of autograd's."""

import inspect

import pytest
import torch
import torch.nn.functional as F

import manualnet.functional as functional
from manualnet import TwoLayerNet, softmax_cross_entropy, two_layer_net
from manualnet.reference import reference_from, reference_grads

N, D, H, C = 4, 5, 3, 2


def inputs(**changes) -> dict:
    t = {"x": torch.randn(N, D), "w1": torch.randn(D, H), "b1": torch.randn(H), "w2": torch.randn(H, C)}
    t["b2"] = torch.randn(C)
    return {**t, **changes}


@pytest.fixture
def counted_checks(monkeypatch):
    """Calls of the full argument checks, by name, while the wrappers run."""
    calls = []
    for name in ("check_net_inputs", "check_labels"):
        real = getattr(functional, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(functional, name, counting)
    functional._NET_CHECKED.signatures.clear()
    functional._LOSS_CHECKED.signatures.clear()
    return calls


def test_a_signature_checked_once_is_not_checked_again(counted_checks):
    for _ in range(3):
        softmax_cross_entropy(two_layer_net(**inputs()), torch.tensor([0, 1, 1, 0]))
    assert counted_checks == ["check_net_inputs", "check_labels"]  # the first call only: same types, shapes, ...


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"w1": torch.randn(D + 1, H)}, ValueError, r"^w1: expected shape \(D, H\) with D = x.shape\[1\] = 5, got"),
        ({"b2": torch.randn(C, dtype=torch.float64)}, TypeError, r"^b2: expected dtype torch.float32 \(that of x\)"),
        ({"w2": torch.randn(H, C, device="meta")}, ValueError, r"^w2: expected a tensor on x's device cpu, got one"),
        ({"x": torch.randn(N, D).to(torch.int64)}, TypeError, r"^x: expected a floating-point tensor, got dtype"),
        ({"b1": torch.randn(H).tolist()}, TypeError, r"^b1: expected a torch.Tensor, got list"),
    ],
    ids=["shape", "dtype", "device", "integer x", "not a tensor"],
)
def test_a_changed_shape_dtype_or_device_after_a_cached_check_is_still_refused(counted_checks, changes, error, message):
    two_layer_net(**inputs())  # checked and cached
    with pytest.raises(error, match=message):
        two_layer_net(**inputs(**changes))


@pytest.mark.parametrize(
    "y, error, message",
    [
        (torch.tensor([0, 1, 2, 0]), ValueError, r"^y: expected class indices in \[0, 2\), got values from 0 to 2"),
        (torch.tensor([0, -1, 1, 0]), ValueError, r"^y: expected class indices in \[0, 2\), got values from -1 to 1"),
        (torch.tensor([0, 1, 1]), ValueError, r"^y: expected shape \(N,\) = \(4,\), got \(3,\)"),
        (torch.tensor([0, 1, 1, 0], dtype=torch.int32), TypeError, r"^y: expected int64 class indices, got dtype"),
        (torch.tensor([0, 1, 1, 0], device="meta"), ValueError, r"^y: expected a tensor on the scores' device cpu"),
    ],
    ids=["above C", "negative", "length", "dtype", "device"],
)
def test_labels_after_a_cached_check_are_still_refused_values_included(counted_checks, y, error, message):
    s2 = torch.randn(N, C)
    softmax_cross_entropy(s2, torch.tensor([0, 1, 1, 0]))  # checked and cached
    with pytest.raises(error, match=message):
        softmax_cross_entropy(s2, y)


@pytest.mark.parametrize(
    "m, error, message",
    [
        (torch.ones(N, H + 1), ValueError, r"^m: expected the dropout mask's shape \(N, H\) = \(4, 3\)"),
        (torch.ones(N, H, dtype=torch.float64), TypeError, r"^m: expected dtype torch.float32 \(that of x\)"),
        (torch.ones(N, H, device="meta"), ValueError, r"^m: expected a tensor on x's device cpu, got one on meta"),
        (torch.full((N, H), -1.0), ValueError, r"^m: expected a dropout mask with entries >= 0, got a minimum of -1"),
        (torch.ones(N, H).index_fill(1, torch.tensor([2]), -0.5), ValueError, r"^m: .* got a minimum of -0.5"),
    ],
    ids=["shape", "dtype", "device", "all negative", "one column negative"],
)
def test_a_changed_or_negative_mask_after_a_cached_check_is_still_refused(counted_checks, m, error, message):
    two_layer_net(**inputs(), m=torch.full((N, H), 2.0))  # checked and cached, with a mask
    two_layer_net(**inputs(), m=torch.zeros(N, H))  # same signature: the values alone are checked (>= 0)
    assert counted_checks == ["check_net_inputs"]
    with pytest.raises(error, match=message):
        two_layer_net(**inputs(), m=m)


def test_a_mask_requiring_grad_after_a_cached_check_is_still_refused(counted_checks):
    two_layer_net(**inputs(), m=torch.ones(N, H))
    with pytest.raises(ValueError, match=r"^m: expected a dropout mask that does not require grad"):
        two_layer_net(**inputs(), m=torch.ones(N, H, requires_grad=True))


@pytest.mark.parametrize("eps", [1.5, -0.1, "0.1"])
def test_a_bad_label_smoothing_after_a_cached_check_is_still_refused(counted_checks, eps):
    s2, y = torch.randn(N, C), torch.tensor([0, 1, 1, 0])
    softmax_cross_entropy(s2, y, 0.1)  # checked and cached
    with pytest.raises(ValueError, match=r"^label_smoothing: expected a number in \[0, 1\)"):
        softmax_cross_entropy(s2, y, eps)


def test_label_smoothing_false_after_a_cached_0_is_still_refused(counted_checks):
    s2, y = torch.randn(N, C), torch.tensor([0, 1, 1, 0])
    softmax_cross_entropy(s2, y, 0.0)  # checked and cached
    with pytest.raises(ValueError, match=r"^label_smoothing: expected a number in \[0, 1\), got False"):
        softmax_cross_entropy(s2, y, False)


def test_function_apply_binds_forwards_arguments_without_inspects_general_bind(monkeypatch):
    bound = []
    real = inspect.Signature.bind
    monkeypatch.setattr(inspect.Signature, "bind", lambda self, *a, **k: (bound.append(self), real(self, *a, **k))[1])
    t = inputs(w1=torch.randn(D, H, requires_grad=True))
    s2, x2 = functional.TwoLayerNetFn.apply(*t.values(), None)  # as two_layer_net calls it: every argument given
    assert bound == []  # the PositionalSignature took the call
    expected = torch.relu(t["x"] @ t["w1"] + t["b1"]) @ t["w2"] + t["b2"]
    torch.testing.assert_close(s2, expected)
    # what apply's binding returns: forward's arguments in order, no keywords; any other call: inspect's bind
    sig = inspect.signature(functional.TwoLayerNetFn.forward)
    fast = sig.bind(*range(6))
    assert (fast.args, fast.kwargs, fast.arguments) == (
        (0, 1, 2, 3, 4, 5),
        {},
        {"x": 0, "w1": 1, "b1": 2, "w2": 3, "b2": 4, "m": 5},
    )
    with pytest.raises(TypeError):
        sig.bind(1, 2)
    assert bound == [sig]
    general = sig.bind(*range(5))  # m left to its default: inspect's bind, which apply_defaults completes
    general.apply_defaults()
    assert general.args == (0, 1, 2, 3, 4, None) and bound == [sig, sig]


def test_the_module_stores_w1_and_w2_as_nn_linear_stores_its_weights():
    net = TwoLayerNet(D, H, C, seed=0)
    assert net.w1.shape == (D, H) and net.w1.T.is_contiguous() and not net.w1.is_contiguous()
    assert net.w2.shape == (H, C) and net.w2.T.is_contiguous() and not net.w2.is_contiguous()


@pytest.mark.parametrize("transposed", [False, True], ids=["row-major weights", "transposed weights"])
def test_gradients_come_back_in_each_weights_layout_with_autograds_values(transposed):
    torch.manual_seed(0)
    net = TwoLayerNet(D, H, C, seed=0, dtype=torch.float64)
    x, y = torch.randn(N, D, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    ref = reference_from(net)
    F.cross_entropy(ref(x), y).backward()
    want = reference_grads(ref)
    weights = {name: p.detach().clone() for name, p in net.named_parameters()}  # clone: row-major copies
    if transposed:
        weights = {name: w.T.contiguous().T if w.dim() == 2 else w for name, w in weights.items()}
    for w in weights.values():
        w.requires_grad_(True)
    loss = softmax_cross_entropy(two_layer_net(x, **weights), y)
    grads = torch.autograd.grad(loss, list(weights.values()))  # as the backward returns them, before AccumulateGrad
    for (name, w), g in zip(weights.items(), grads, strict=True):
        assert g.stride() == w.stride(), name  # made in w's layout: stored as it comes, no copy
        torch.testing.assert_close(g, want[name], rtol=1e-12, atol=1e-12)
