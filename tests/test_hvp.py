"""manualnet.hvp: Hessian-vector products of the loss (forward over reverse through the hand-written Functions)
against double backward of the plain-torch reference, and sharpness (Lanczos) against the top eigenvalue of the
reference's full Hessian."""

import pytest
import torch

from manualnet import net_crosscheck
from manualnet.hvp import loss_hvp, sharpness
from manualnet.net_crosscheck import reference_net_loss


def samples(dtype):
    gen = torch.Generator().manual_seed(0)
    return gen, net_crosscheck.net_loss_inputs(dtype, torch.device("cpu"), gen)


def double_backward_hvp(params, v, x, y):
    """H v of the reference by autograd twice: d/dp <dL/dp, v>."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    g = torch.autograd.grad(reference_net_loss(x, *ps, y), ps, create_graph=True)
    return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True)), ps)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_loss_hvp_in_float64_and_float32_equals_double_backward_of_the_reference_in_float64(dtype, rtol):
    # float32 against the float64 truth: the manual path's own error, within 1e-5 of the largest entry.
    gen, all_samples = samples(torch.float64)
    for name, (x, w1, b1, w2, b2, y) in all_samples.items():
        params = (w1, b1, w2, b2)
        v = tuple(torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params)
        want = double_backward_hvp(params, v, x, y)
        got = loss_hvp(tuple(p.to(dtype) for p in params), tuple(t.to(dtype) for t in v), x.to(dtype), y)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g.shape == w.shape and g.dtype == dtype, (name, k)
            err = (g.double() - w).abs().max().item()
            assert err <= rtol * w.abs().max().item(), f"{name}: H v block {k}: {err:.3e}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharpness_equals_the_top_eigenvalue_of_the_references_full_hessian(seed):
    # A small net (P = 6*5 + 5 + 5*3 + 3 = 53 parameters) whose Hessian is indefinite (ReLU nets' are): Lanczos
    # must find the largest eigenvalue, not the largest in magnitude.
    gen = torch.Generator().manual_seed(seed)
    n, d, h, c = 8, 6, 5, 3
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    params = tuple(torch.randn(s, dtype=torch.float64, generator=gen) * 0.5 for s in ((d, h), (h,), (h, c), (c,)))
    sizes = [p.numel() for p in params]

    def loss_of_flat(flat):
        return reference_net_loss(
            x, *(part.view(p.shape) for part, p in zip(flat.split(sizes), params, strict=True)), y
        )

    eigenvalues = torch.linalg.eigvalsh(torch.func.hessian(loss_of_flat)(torch.cat([p.reshape(-1) for p in params])))
    assert eigenvalues[0] < 0 < eigenvalues[-1]
    got = sharpness(params, x, y, tol=1e-10)
    assert abs(got - eigenvalues[-1].item()) <= 1e-8 * eigenvalues[-1].item(), (got, eigenvalues[-1].item())
