"""Hessian-vector products of the net's loss with respect to its parameters, and the loss's sharpness (the largest
eigenvalue of that Hessian), through the hand-written Functions.

H v is forward over reverse: the jvp (forward mode, in direction v) of the gradient (reverse mode). Through the
Functions that is their jvp run over their backward: one forward, one backward and their tangents, about the cost of
two gradients, and no N x P Jacobian or P x P Hessian is ever built (P = D*H + H + H*C + C parameters).
"""

import torch
from torch import Tensor

from manualnet.functional import softmax_cross_entropy, two_layer_net

Params = tuple[Tensor, Tensor, Tensor, Tensor]  # (w1, b1, w2, b2)


def loss_hvp(params: Params, v: Params, x: Tensor, y: Tensor) -> Params:
    """H v for the mean cross-entropy loss on (x, y) at params = (w1, b1, w2, b2), v shaped like params.

    H is the Hessian of the loss with respect to the four parameters (x and y held fixed).
    """

    def grad(*p: Tensor) -> Params:  # dL/d(w1, b1, w2, b2) by the hand-written backward
        return torch.func.grad(lambda *q: softmax_cross_entropy(two_layer_net(x, *q), y), argnums=(0, 1, 2, 3))(*p)

    return torch.func.jvp(grad, tuple(params), tuple(v))[1]


def sharpness(params: Params, x: Tensor, y: Tensor, *, tol: float = 1e-5, max_steps: int = 100, seed: int = 0) -> float:
    """The largest eigenvalue of the loss's Hessian at params on (x, y), by Lanczos on loss_hvp.

    Stops when the Ritz value's residual bound |H u - theta u| is at most tol * |theta|, or after max_steps products
    of H with a vector (or P, when the Krylov space is the whole space and theta is exact up to roundoff).
    """
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]

    def h_times(q: Tensor) -> Tensor:  # H q on the flat vector of all P parameters
        v = tuple(part.view(shape) for part, shape in zip(q.split(sizes), shapes, strict=True))
        return torch.cat([t.reshape(-1) for t in loss_hvp(params, v, x, y)])

    gen = torch.Generator(device=params[0].device).manual_seed(seed)
    q = torch.randn(sum(sizes), generator=gen, dtype=params[0].dtype, device=params[0].device)
    basis = [q / q.norm()]  # q_0 .. q_k, orthonormal: the Krylov space of H from q_0
    alphas, betas = [], []  # T = tridiag(betas, alphas, betas) = Q^T H Q, k+1 x k+1
    for _ in range(min(max_steps, sum(sizes))):
        w = h_times(basis[-1])
        alphas.append(torch.dot(w, basis[-1]).item())  # alpha_k = q_k^T H q_k
        qs = torch.stack(basis)  # (k+1, P)
        # w = H q_k - beta_{k-1} q_{k-1} - alpha_k q_k, written as a projection out of the whole basis (full
        # reorthogonalization, twice: without it roundoff brings back copies of converged eigenvectors).
        for _ in range(2):
            w = w - qs.T @ (qs @ w)
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        thetas, s = torch.linalg.eigh(t)  # Ritz values, ascending, and their vectors in the basis
        beta = w.norm().item()
        # |H u - theta u| = beta_k |s_k|, for the Ritz vector u = Q s of the largest Ritz value theta
        if beta * abs(s[-1, -1].item()) <= tol * abs(thetas[-1].item()) or beta == 0.0:
            break
        betas.append(beta)
        basis.append(w / beta)
    return thetas[-1].item()
