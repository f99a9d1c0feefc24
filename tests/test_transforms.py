"""The Functions under torch.func (vmap, grad), torch.compile and torch.autocast behave as eager autograd does."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from lightning_ref.reference import reference_from, reference_grads
from manualnet import TwoLayerNet, softmax_cross_entropy, two_layer_net
from manualnet.functional import SoftmaxCrossEntropyFn, TwoLayerNetFn

NAMES = ("w1", "b1", "w2", "b2")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]

# bfloat16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3); float16 keeps 11 (4.9e-4). The manual path and
# nn.Linear round the same products, so what is left is a few roundings of accumulation order: 2e-2 of each
# gradient's largest magnitude for bf16, 5e-3 for fp16.
AUTOCAST_RTOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}


def data(n=6, d=10, h=7, c=4, seed=0, device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype).to(device)
    y = torch.randint(0, c, (n,), generator=gen).to(device)
    model = TwoLayerNet(d, h, c, seed=seed, device=device, dtype=dtype)
    with torch.no_grad():  # non-zero biases, so that their path is tested too
        model.b1.copy_(torch.randn(h, generator=gen) * 0.1)
        model.b2.copy_(torch.randn(c, generator=gen) * 0.1)
    return model, x, y


def params_of(model):
    return {name: getattr(model, name).detach() for name in NAMES}


def assert_rel_close(name, a, b, rtol):
    err = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item()
    assert err <= rtol * scale, f"{name}: max abs err {err:.3e} > {rtol:g} * {scale:.3e}"


def loss_of(params, x, y):
    return softmax_cross_entropy(two_layer_net(x, params["w1"], params["b1"], params["w2"], params["b2"]), y)


def assert_equals_single_sample_loop(per_sample: dict, model, x, y) -> None:
    """per_sample[name][i] equals the autograd gradient of model.loss on sample i alone, for every parameter."""
    for i in range(x.shape[0]):
        model.zero_grad()
        model.loss(x[i : i + 1], y[i : i + 1]).backward()
        for name in NAMES:
            torch.testing.assert_close(per_sample[name][i], getattr(model, name).grad, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------------- torch.func


def test_vmap_grad_per_sample_gradients_equal_a_loop_of_autograd_gradients():
    model, x, y = data(n=5)
    params = params_of(model)

    def sample_loss(params, x_i, y_i):  # one sample as a batch of one, through both Functions
        return loss_of(params, x_i.unsqueeze(0), y_i.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    assert_equals_single_sample_loop(per_sample, model, x, y)


def test_vmap_grad_per_sample_input_gradients_equal_a_loop_of_autograd_gradients():
    model, x, y = data(n=4)
    params = params_of(model)
    dx = vmap(grad(lambda x_i, y_i: loss_of(params, x_i[None], y_i[None])))(x, y)
    for i in range(x.shape[0]):
        x_i = x[i : i + 1].clone().requires_grad_(True)
        model.loss(x_i, y[i : i + 1]).backward()
        torch.testing.assert_close(dx[i], x_i.grad[0], rtol=1e-6, atol=1e-7)


def test_vmap_grad_through_functional_call_of_the_module_equals_the_loop():
    model, x, y = data(n=3)

    def sample_loss(params, x_i, y_i):
        return softmax_cross_entropy(functional_call(model, params, (x_i[None],)), y_i[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(dict(model.named_parameters()), x, y)
    assert_equals_single_sample_loop(per_sample, model, x, y)


def test_vmap_over_an_ensemble_of_weights_equals_a_loop_over_models():
    models = [data(seed=s)[0] for s in range(3)]
    _, x, y = data(seed=9)
    stacked = {name: torch.stack([getattr(m, name).detach() for m in models]) for name in NAMES}
    losses = vmap(loss_of, in_dims=(0, None, None))(stacked, x, y)
    grads = vmap(grad(loss_of), in_dims=(0, None, None))(stacked, x, y)
    for k, m in enumerate(models):
        loss = m.loss(x, y)
        loss.backward()
        torch.testing.assert_close(losses[k], loss.detach())
        for name in NAMES:
            torch.testing.assert_close(grads[name][k], getattr(m, name).grad, rtol=1e-6, atol=1e-7)


def test_func_grad_equals_autograd_backward():
    model, x, y = data()
    got = grad(loss_of)(params_of(model), x, y)
    model.loss(x, y).backward()
    for name in NAMES:
        assert torch.equal(got[name], getattr(model, name).grad), name


# -------------------------------------------------------------------------------------------------- torch.compile


def test_compiled_forward_and_backward_equal_eager():
    model, x, y = data(n=8, d=12, h=6, c=3)

    def step(x, y, w1, b1, w2, b2):
        return softmax_cross_entropy(two_layer_net(x, w1, b1, w2, b2), y)

    compiled = torch.compile(step, fullgraph=True)  # inductor, the default backend
    eager_params = [p.detach().clone().requires_grad_(True) for p in params_of(model).values()]
    compiled_params = [p.detach().clone().requires_grad_(True) for p in params_of(model).values()]
    loss_e = step(x, y, *eager_params)
    loss_e.backward()
    loss_c = compiled(x, y, *compiled_params)
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-7)
    for name, pe, pc in zip(NAMES, eager_params, compiled_params, strict=True):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_compiled_func_grad_runs_the_hand_written_backwards(monkeypatch):
    # torch.compile + torch.func.grad once silently replaced a custom backward by autograd of the forward
    # (pytorch #193279), which gives the same numbers. To see which backward ran, both hand-written backwards are
    # patched to double their gradients: the compiled gradients must then be 4x the true ones, as in eager mode.
    net_backward, cross_entropy_backward = TwoLayerNetFn.backward, SoftmaxCrossEntropyFn.backward

    def doubled_net_backward(ctx, ds2, dx2_out):
        return tuple(None if g is None else 2 * g for g in net_backward(ctx, ds2, dx2_out))

    def doubled_cross_entropy_backward(ctx, dloss):
        ds2, _ = cross_entropy_backward(ctx, dloss)
        return 2 * ds2, None

    monkeypatch.setattr(TwoLayerNetFn, "backward", staticmethod(doubled_net_backward))
    monkeypatch.setattr(SoftmaxCrossEntropyFn, "backward", staticmethod(doubled_cross_entropy_backward))
    model, x, y = data(n=8, d=12, h=6, c=3)
    params = params_of(model)
    eager = grad(loss_of)(params, x, y)
    compiled = torch.compile(grad(loss_of), fullgraph=True)(params, x, y)
    ref = reference_from(model)
    F.cross_entropy(ref(x), y).backward()
    true = reference_grads(ref)
    for name in NAMES:
        torch.testing.assert_close(eager[name], 4 * true[name], rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-7, msg=name)


# ------------------------------------------------------------------------------------------------- torch.autocast


def autocast_pair(device, dtype, model_dtype=torch.float32, backward_inside=False):
    """Scores, loss and gradients of the manual path and of the reference, both under the same autocast."""
    model, x, y = data(n=16, d=48, h=24, c=10, device=device, dtype=model_dtype)
    ref = reference_from(model)
    with torch.autocast(device, dtype=dtype):
        s2_m = model(x)
        loss_m = softmax_cross_entropy(s2_m, y)
        s2_r = ref(x)
        loss_r = F.cross_entropy(s2_r, y)
        if backward_inside:
            loss_m.backward()
            loss_r.backward()
    if not backward_inside:
        loss_m.backward()
        loss_r.backward()
    return (s2_m, loss_m, {n: getattr(model, n).grad for n in NAMES}), (s2_r, loss_r, reference_grads(ref))


def check_autocast(device, dtype, backward_inside=False):
    (s2_m, loss_m, gm), (s2_r, loss_r, gr) = autocast_pair(device, dtype, backward_inside=backward_inside)
    assert (s2_m.dtype, loss_m.dtype) == (s2_r.dtype, loss_r.dtype) == (dtype, torch.float32)
    rtol = AUTOCAST_RTOL[dtype]
    assert_rel_close("s2", s2_m, s2_r, rtol)
    assert_rel_close("loss", loss_m, loss_r, rtol)
    for name in NAMES:
        assert gm[name].dtype == gr[name].dtype == torch.float32, name  # gradients in the parameters' dtype
        assert_rel_close(name, gm[name], gr[name], rtol)


def test_bf16_autocast_on_cpu_matches_reference_under_the_same_autocast():
    check_autocast("cpu", torch.bfloat16)


def test_bf16_autocast_on_cpu_with_backward_inside_the_autocast_context():
    check_autocast("cpu", torch.bfloat16, backward_inside=True)


def test_autocast_leaves_float64_alone_as_nn_linear_does():
    (s2_m, loss_m, gm), (s2_r, loss_r, gr) = autocast_pair("cpu", torch.bfloat16, model_dtype=torch.float64)
    assert s2_m.dtype == s2_r.dtype == torch.float64 and loss_m.dtype == loss_r.dtype == torch.float64
    for name in NAMES:
        assert_rel_close(name, gm[name], gr[name], 1e-12)


# --------------------------------------------------------------------------------------------------------- CUDA


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_gradients_match_reference(dtype):
    torch.backends.cuda.matmul.allow_tf32 = False
    model, x, y = data(n=32, d=64, h=40, c=10, device="cuda", dtype=dtype)
    ref = reference_from(model)
    model.loss(x, y).backward()
    F.cross_entropy(ref(x), y).backward()
    gr = reference_grads(ref)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    for name in NAMES:
        assert_rel_close(name, getattr(model, name).grad, gr[name], rtol)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backward_inside", [False, True])
def test_cuda_autocast_matches_reference_under_the_same_autocast(dtype, backward_inside):
    check_autocast("cuda", dtype, backward_inside=backward_inside)


@CUDA
def test_cuda_vmap_per_sample_gradients_equal_the_loop():
    model, x, y = data(n=4, device="cuda")
    params = params_of(model)
    per_sample = vmap(grad(lambda p, x_i, y_i: loss_of(p, x_i[None], y_i[None])), in_dims=(None, 0, 0))(params, x, y)
    for i in range(x.shape[0]):
        model.zero_grad()
        model.loss(x[i : i + 1], y[i : i + 1]).backward()
        for name in NAMES:
            torch.testing.assert_close(per_sample[name][i], getattr(model, name).grad, rtol=1e-5, atol=1e-6)
