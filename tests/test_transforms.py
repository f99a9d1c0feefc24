"""The Functions under torch.func (grad, vjp, jacrev, vmap), torch.compile and torch.autocast give what the plain-torch
reference gives under the same transform: through the cross-check harness (manualnet.crosscheck) on the net's samples,
plus the module under functional_call and an ensemble of weights, against manualnet.reference."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from manualnet import TwoLayerNet, net_crosscheck, softmax_cross_entropy, two_layer_net
from manualnet.crosscheck import CHECKS
from manualnet.reference import reference_from, reference_grads

NAMES = ("w1", "b1", "w2", "b2")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
FUNC_CHECKS = ["func_grad", "func_vjp", "jacrev", "vmap_grad", "jvp"]
COMPILE_CHECKS = [c for c in CHECKS if c.startswith("compile")]  # first sample only (dynamic: two sizes)
# the regularisers: the smoothed loss (vs F.cross_entropy's label_smoothing), the net with a dropout mask, both at once
REGULARISED = ["LOSS_SMOOTHED", "NET_DROPOUT", "NET_LOSS_REGULARISED"]


def data(n=6, d=10, h=7, c=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    model = TwoLayerNet(d, h, c, seed=seed)
    with torch.no_grad():  # non-zero biases, so that their path is tested too
        model.b1.copy_(torch.randn(h, generator=gen) * 0.1)
        model.b2.copy_(torch.randn(c, generator=gen) * 0.1)
    return model, x, y


def reference_loss_grads(model, x, y) -> dict:
    """The autograd reference's gradients of the mean cross-entropy on (x, y), in TwoLayerNet's layout."""
    ref = reference_from(model)
    F.cross_entropy(ref(x), y).backward()
    return reference_grads(ref)


# ---------------------------------------------------------------------------------- the harness: torch.func, compile


@pytest.mark.parametrize("target", ["NET", "LOSS", "NET_LOSS", *REGULARISED])
def test_func_transforms_of_the_functions_equal_plain_torch(crosscheck, target):
    report = crosscheck(getattr(net_crosscheck, target), checks=FUNC_CHECKS)
    # jvp included: the hand-written jvp against forward AD of the reference, eager, compiled and under jacfwd
    assert {(r.check, r.dtype) for r in report.results if r.status == "passed"} == {
        (check, dtype) for check in FUNC_CHECKS for dtype in ("float32", "float64")
    }


@pytest.mark.parametrize("target", ["NET", "LOSS", "LOSS_SMOOTHED", "NET_DROPOUT"])
def test_compiled_functions_equal_plain_torch_and_run_the_hand_written_backward(crosscheck, target):
    # compile_func_grad is pytorch #193279: the probe proves the hand-written backward ran (no warning), which
    # the wrappers' _apply ensures; the values alone could not tell. compile_jvp: Dynamo cannot trace a custom jvp
    # (under forward AD it inlines the forward and drops the jvp, pytorch #192985), so the wrappers run the
    # Functions eagerly there (torch.compiler.disable), a graph break by design that the harness reports as n/a with
    # that reason. That the jvp which then runs is the hand-written one: tests/test_forward_mode.py, with
    # deliberately tripled jvps.
    report = crosscheck(getattr(net_crosscheck, target), checks=COMPILE_CHECKS, dtypes=[torch.float32])
    assert report.warnings() == [], report.markdown()
    (jvp,) = [r for r in report.results if r.check == "compile_jvp"]
    assert jvp.status == "n/a" and "torch.compiler.disable" in jvp.note, report.markdown()
    status = {r.check: r.status for r in report.results}
    assert {c for c, st in status.items() if st == "passed"} >= {"compile", "compile_func_grad", "compile_dynamic"}
    # torch.compile cannot double-backward the plain-torch reference either (aot_autograd): n/a with that reason
    assert status["compile_double_backward"] in ("passed", "n/a"), report.markdown()


def test_bf16_autocast_on_cpu_equals_plain_torch_under_the_same_autocast(crosscheck):
    # Both sides round the same products to bf16 and run the same kernels: against the float64 truth, manual's
    # error is the reference's own on this machine. The honest bound for another CPU is that plus one bf16
    # rounding of the largest entry (2^-8); float64 is left alone by autocast.
    for target in ("NET", "LOSS", "NET_LOSS", *REGULARISED):
        report = crosscheck(getattr(net_crosscheck, target), checks=["autocast"])
        for r in report.results:
            assert r.max_rel <= (r.ref_rel + 2**-8 if r.dtype == "float32" else 1e-12), (target, r)


# ----------------------------------------------------------------------------------- the module under torch.func


def test_vmap_grad_through_functional_call_of_the_module_equals_the_reference_per_sample():
    model, x, y = data(n=3)

    def sample_loss(params, x_i, y_i):
        return softmax_cross_entropy(functional_call(model, params, (x_i[None],)), y_i[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(dict(model.named_parameters()), x, y)
    for i in range(x.shape[0]):
        want = reference_loss_grads(model, x[i : i + 1], y[i : i + 1])
        for name in NAMES:
            torch.testing.assert_close(per_sample[name][i], want[name], rtol=1e-5, atol=1e-7, msg=name)


def test_vmap_over_an_ensemble_of_weights_equals_the_reference_of_each_model():
    models = [data(seed=s)[0] for s in range(3)]
    _, x, y = data(seed=9)
    stacked = {name: torch.stack([getattr(m, name).detach() for m in models]) for name in NAMES}

    def loss_of(params, x, y):
        return softmax_cross_entropy(two_layer_net(x, params["w1"], params["b1"], params["w2"], params["b2"]), y)

    losses = vmap(loss_of, in_dims=(0, None, None))(stacked, x, y)
    grads = vmap(grad(loss_of), in_dims=(0, None, None))(stacked, x, y)
    for k, m in enumerate(models):
        torch.testing.assert_close(losses[k], F.cross_entropy(reference_from(m)(x), y).detach())
        want = reference_loss_grads(m, x, y)
        for name in NAMES:
            torch.testing.assert_close(grads[name][k], want[name], rtol=1e-5, atol=1e-7, msg=name)


# --------------------------------------------------------------------------------------------------------- CUDA


@CUDA
@pytest.mark.parametrize("target", ["NET", "LOSS", "NET_LOSS", *REGULARISED])
def test_cuda_every_check_equals_plain_torch_tf32_off(crosscheck, target, monkeypatch):
    # Every check on the GPU: gradients, gradcheck, torch.func, compile (the two Functions; not again for the loss
    # through both), fp16 and bf16 autocast. TF32 off, so that float32 means float32 (restored by monkeypatch).
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    checks = [c for c in CHECKS if not target.startswith("NET_LOSS") or c not in COMPILE_CHECKS]
    crosscheck(getattr(net_crosscheck, target), devices=["cuda"], checks=checks)
