"""Custom autograd Functions written the way other people write them (issue 13), each with a reference in plain torch
ops, its make_inputs and the verdict check_function must give: the correct ones must pass (no false alarm), the wrong
ones must fail on the named checks (no silent pass).

Each Function is a short, self-contained re-creation of a well-known one, in its source's style (old-style
`forward(ctx, ...)`, `@classmethod`, `once_differentiable`, non-tensor arguments, unreduced bias gradients, gradients
returned for every input); the docstring names the source. CUDA kernels are replaced by their math in torch ops.

`fails` and `warns` name the checks expected to fail / warn in profile="quick" (no compile checks); every other check
passes or is n/a. `options` are check_function's options for the case.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from manualnet.crosscheck import Sample

# The checks that compare fn's gradients with the reference's: a backward that is wrong for every input fails them all
# (torch.func ones only for Functions torch.func can run; old-style ones make them n/a).
GRADIENT_CHECKS = {"backward", "noncontiguous", "autocast", "checkpoint"}
FUNC_CHECKS = {"func_grad", "func_vjp", "jacrev", "vmap_grad", "vmap_vjp"}


@dataclass
class Case:
    fn: object
    reference: object
    make_inputs: object
    fails: set[str]  # checks expected to fail (empty for a correct Function)
    warns: set[str] = field(default_factory=set)  # checks expected to warn (e.g. input_subsets, saved_tensors)
    options: dict = field(default_factory=dict)  # check_function options (kinks, batch_args, functions, ...)
    why: str = ""  # one line: what the Function is and (for wrong ones) the bug


def randn(dtype, device, gen, *shape, scale=1.0, offset=0.0):
    return torch.randn(*shape, dtype=dtype, device=device, generator=gen) * scale + offset


def make_x(dtype, device, gen):
    return {"random": (randn(dtype, device, gen, 6, 5, scale=2.0),), "batch of 1": (randn(dtype, device, gen, 1, 5),)}


# =============================================================================================== correct Functions


# --------------------------------------------------------------------------------- timm's memory-efficient activations


def swish_fwd(x):
    return x.mul(torch.sigmoid(x))


def swish_bwd(x, grad_output):
    x_sigmoid = torch.sigmoid(x)
    return grad_output * (x_sigmoid * (1 + x * (1 - x_sigmoid)))


class SwishAutoFn(torch.autograd.Function):
    """After timm's `activations_me.SwishAutoFn`: optimised Swish w/ memory-efficient checkpoint (saves only x,
    recomputes the sigmoid in backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return swish_fwd(x)

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        return swish_bwd(x, grad_output)


def mish_fwd(x):
    return x.mul(torch.tanh(F.softplus(x)))


def mish_bwd(x, grad_output):
    x_sigmoid = torch.sigmoid(x)
    x_tanh_sp = F.softplus(x).tanh()
    return grad_output.mul(x_tanh_sp + x * x_sigmoid * (1 - x_tanh_sp * x_tanh_sp))


class MishAutoFn(torch.autograd.Function):
    """After timm's `activations_me.MishAutoFn`: Mish, memory-efficient (saves only x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        y = mish_fwd(x)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        return mish_bwd(x, grad_output)


def hard_swish_fwd(x):
    return x * (x + 3).clamp(min=0, max=6).div(6.0)


def hard_swish_bwd(x, grad_output):
    m = torch.ones_like(x) * (x >= 3.0)
    m = torch.where((x >= -3.0) & (x <= 3.0), x / 3.0 + 0.5, m)
    return grad_output * m


class HardSwishAutoFn(torch.autograd.Function):
    """After timm's `activations_me.HardSwishAutoFn`. Its backward takes `x >= -3` and `x <= 3` inclusive: at x = -3 it
    gives -0.5 and at x = 3 it gives 1.5 (the right and left one-sided derivatives), where torch's F.hardswish gives 0
    and 1 (the other ones). Both are valid subgradients."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return hard_swish_fwd(x)

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        return hard_swish_bwd(x, grad_output)


def make_hard_swish(dtype, device, gen):
    x = randn(dtype, device, gen, 6, 5, scale=2.0)
    at_kinks = x.clone()
    at_kinks[0, :4] = torch.tensor([-3.0, 3.0, -3.0, 3.0])  # exactly on both kinks
    return {"random": (x,), "at +-3": (at_kinks,)}


# ---------------------------------------------------------------------------------------- Megatron's fused bias-GeLU


def bias_gelu(bias, y):  # @torch.jit.script in Megatron
    x = bias + y
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


def bias_gelu_back(g, bias, y):  # @torch.jit.script in Megatron
    x = bias + y
    tanh_out = torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))
    # sqrt(2/pi) * 3 * 0.044715 -> 0.1070322243
    ff = 0.5 * x * ((1 - tanh_out * tanh_out) * (0.79788456 + 0.1070322243 * x * x)) + 0.5 * (1 + tanh_out)
    return ff * g


class GeLUFunction(torch.autograd.Function):
    """After Megatron-LM's `fused_bias_gelu.GeLUFunction`: tanh-approximate GeLU of input + bias with sqrt(2/pi)
    written to 8 digits (0.79788456); backward returns the same (unreduced) tensor for input and bias (autograd sums it
    to the bias's shape), whether asked or not."""

    @staticmethod
    # bias is an optional argument
    def forward(ctx, input, bias):
        ctx.save_for_backward(input, bias)
        return bias_gelu(bias, input)

    @staticmethod
    def backward(ctx, grad_output):
        input, bias = ctx.saved_tensors
        tmp = bias_gelu_back(grad_output, bias, input)
        return tmp, tmp


def make_bias_gelu(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3, 8, scale=2.0), randn(dtype, device, gen, 8)


# ------------------------------------------------------------------------------------------------ apex's LayerNorm


class FusedLayerNormAffineFunction(torch.autograd.Function):
    """After apex's `FusedLayerNormAffineFunction` (its CUDA kernel replaced by the math): arguments
    (input, weight, bias, normalized_shape, eps), saves mean and invvar, returns every gradient."""

    @staticmethod
    def forward(ctx, input, weight, bias, normalized_shape, eps):
        ctx.normalized_shape = normalized_shape
        ctx.eps = eps
        input_ = input.contiguous()
        weight_ = weight.contiguous()
        bias_ = bias.contiguous()
        dims = tuple(range(-len(normalized_shape), 0))
        mean = input_.mean(dims, keepdim=True)
        invvar = torch.rsqrt((input_ - mean).square().mean(dims, keepdim=True) + eps)
        output = (input_ - mean) * invvar * weight_ + bias_
        ctx.save_for_backward(input_, weight_, bias_, mean, invvar)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input_, weight_, bias_, mean, invvar = ctx.saved_tensors
        dims = tuple(range(-len(ctx.normalized_shape), 0))
        lead = tuple(range(input_.dim() - len(dims)))
        xhat = (input_ - mean) * invvar
        grad_xhat = grad_output * weight_
        grad_input = invvar * (
            grad_xhat - grad_xhat.mean(dims, keepdim=True) - xhat * (grad_xhat * xhat).mean(dims, keepdim=True)
        )
        grad_weight = (grad_output * xhat).sum(lead)
        grad_bias = grad_output.sum(lead)
        return grad_input, grad_weight, grad_bias, None, None


class FusedLayerNormOnceDifferentiable(FusedLayerNormAffineFunction):
    """The same, its backward marked @once_differentiable (as a Function whose backward is a kernel should be):
    double backward raises instead of being silently wrong."""

    backward = staticmethod(once_differentiable(FusedLayerNormAffineFunction.backward))


def layer_norm_reference(input, weight, bias, normalized_shape, eps):
    return F.layer_norm(input, normalized_shape, weight, bias, eps)


def make_layer_norm(dtype, device, gen):
    x = randn(dtype, device, gen, 6, 16)
    w, b = randn(dtype, device, gen, 16, offset=1.0), randn(dtype, device, gen, 16)
    return {"random": (x, w, b, (16,), 1e-5), "3-d, eps 1e-3": (randn(dtype, device, gen, 2, 3, 16), w, b, (16,), 1e-3)}


def make_layer_norm_ill_conditioned(dtype, device, gen):
    """Rows of mean 1e3 and std 1: the float32 rounding of the mean alone moves every normalised value by ~1e-4 of
    itself, in the reference's float32 result as much as in fn's."""
    x = randn(dtype, device, gen, 8, 64, offset=1000.0)
    w, b = randn(dtype, device, gen, 64, offset=1.0), randn(dtype, device, gen, 64)
    return {"mean 1e3, std 1": (x, w, b, (64,), 1e-5)}


# ---------------------------------------------------------------------------------------------------------- RMSNorm


class RMSNormFunction(Function):
    """RMSNorm as in T5 / LLaMA (`x * rsqrt(mean(x^2) + eps) * weight`, the reference is HF's T5LayerNorm math),
    written torch.func-ready: forward + setup_context, generate_vmap_rule, ctx.needs_input_grad respected."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, eps):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return x * rstd * weight

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, eps = inputs
        ctx.save_for_backward(x, weight)
        ctx.eps = eps

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ctx.eps)
        xhat = x * rstd
        dx = dw = None
        if ctx.needs_input_grad[0]:
            gx = grad_out * weight
            dx = rstd * (gx - xhat * (gx * xhat).mean(-1, keepdim=True))
        if ctx.needs_input_grad[1]:
            dw = (grad_out * xhat).reshape(-1, x.shape[-1]).sum(0)
        return dx, dw, None


def rms_norm_reference(hidden_states, weight, eps):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + eps)
    return weight * hidden_states


def make_rms_norm(dtype, device, gen):
    return randn(dtype, device, gen, 5, 8), randn(dtype, device, gen, 8, offset=1.0), 1e-6


# -------------------------------------------------------------------------------------- Megatron's linear, bias=None


class LinearWithGradAccumulation(torch.autograd.Function):
    """After Megatron-LM's `LinearWithGradAccumulationAndAsyncCommunication` (no tensor parallelism, no fused weight
    gradient accumulation): bias may be None; returns grad_input, grad_weight and grad_bias every time, whatever
    ctx.needs_input_grad says (legal; a warning). custom_fwd/custom_bwd as in Megatron (device_type "cuda" there)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        ctx.use_bias = bias is not None
        output = torch.matmul(input, weight.t())
        if bias is not None:
            output = output + bias
        return output

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        use_bias = ctx.use_bias
        grad_input = grad_output.matmul(weight)
        grad_output = grad_output.contiguous()
        # Convert the tensor shapes to 2D for execution compatibility
        grad_output = grad_output.view(-1, grad_output.shape[-1])
        total_input = input.reshape(-1, input.shape[-1])
        grad_weight = grad_output.t().matmul(total_input)
        grad_bias = grad_output.sum(dim=0) if use_bias else None
        return grad_input, grad_weight, grad_bias


def megatron_linear_reference(input, weight, bias):
    """Megatron's math in plain ops. Not F.linear: under autocast Megatron's `output + bias` promotes the bf16 matmul
    back to float32 (F.linear stays bf16), and the autocast check compares output dtypes."""
    output = torch.matmul(input, weight.t())
    return output if bias is None else output + bias


def make_linear(dtype, device, gen):
    x, w, b = randn(dtype, device, gen, 2, 3, 6), randn(dtype, device, gen, 4, 6), randn(dtype, device, gen, 4)
    return {"no bias (None)": (x, w, None), "bias": (x, w, b)}


# --------------------------------------------------------------------------- top-k: values and integer indices


class TopK(Function):
    """A torch.func-ready top-k (in the style of torch's autograd_function_db `Sort`/`Topk`): returns the values and
    the int64 indices (mark_non_differentiable), takes k and dim as ints, saves the indices."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, k, dim):
        values, indices = torch.topk(x, k, dim)
        return values, indices

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, k, dim = inputs
        _, indices = output
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.x_shape = x.shape
        ctx.dim = dim

    @staticmethod
    def backward(ctx, grad_values, _grad_indices):
        (indices,) = ctx.saved_tensors
        return grad_values.new_zeros(ctx.x_shape).scatter(ctx.dim, indices, grad_values), None, None


def make_topk(dtype, device, gen):
    return {
        "last dim": (randn(dtype, device, gen, 5, 7), 3, -1),
        "dim 1 of 3-d": (randn(dtype, device, gen, 4, 6, 2), 2, 1),
    }


# ----------------------------------------------------------------------------------------- indexing dim 0: x[idx]


class SelectLayer(Function):
    """Picks one of stacked hidden states, `x[idx]` with idx an int (as a "take layer k" Function in a feature
    extractor), torch.func-ready with generate_vmap_rule. Dim 0 of x is the layer, not a sample dimension: the
    per-sample slices of vmap_grad cannot be indexed at 2."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, idx):
        return x[idx]

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, idx = inputs
        ctx.x_shape = x.shape
        ctx.idx = idx

    @staticmethod
    def backward(ctx, grad_output):
        return torch.select_scatter(grad_output.new_zeros(ctx.x_shape), grad_output, 0, ctx.idx), None


def make_select(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3, 5), 2


# ---------------------------------------------------------------------------------------------- softmax(x, dim=)


class SoftmaxFunction(torch.autograd.Function):
    """A hand-written softmax over `dim` (as Megatron's ScaledSoftmax math, scale 1), old-style, saving its output;
    called with keyword arguments: SoftmaxFunction.apply(x, dim=1), and dtype= (a torch.dtype) to compute in, as
    torch.softmax's."""

    @staticmethod
    def forward(ctx, x, dim=-1, dtype=None):
        if dtype is not None:
            x = x.to(dtype)
        y = torch.exp(x - x.amax(dim, keepdim=True))
        y = y / y.sum(dim, keepdim=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return y * (grad_output - (grad_output * y).sum(ctx.dim, keepdim=True)), None, None


def softmax_reference(x, dim=-1, dtype=None):
    return torch.softmax(x, dim, dtype=dtype)


def make_softmax(dtype, device, gen):
    return {
        "dim=1": Sample(randn(dtype, device, gen, 4, 6, scale=3.0), dim=1),
        "dim=0 of 3-d": Sample(randn(dtype, device, gen, 5, 2, 3), dim=0),
        "dtype=float64": Sample(randn(dtype, device, gen, 3, 4), dim=-1, dtype=torch.float64),
    }


# ------------------------------------------------------------------------------------ apex's label-smoothing xentropy


class SoftmaxCrossEntropyLoss(torch.autograd.Function):
    """After apex's `contrib.xentropy.SoftmaxCrossEntropyLoss` (its CUDA kernel replaced by the math): per-row losses
    of (logits, int64 labels, smoothing float, padding_idx int, half_to_float bool), rows labelled padding_idx get 0;
    saves logits, max_log_sum_exp and labels. Its backward is marked @once_differentiable here (as kernel-backed
    Functions in detectron2 and mmcv are): the saved max_log_sum_exp would be a constant to a double backward."""

    @staticmethod
    def forward(ctx, logits, labels, smoothing=0.0, padding_idx=0, half_to_float=False):
        max_log_sum_exp = torch.logsumexp(logits.float() if half_to_float else logits, dim=-1)
        logits_ = logits.float() if half_to_float else logits
        losses = (
            max_log_sum_exp
            - (1.0 - smoothing) * logits_.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            - smoothing * logits_.mean(-1)
        )
        losses.masked_fill_(labels == padding_idx, 0)
        ctx.save_for_backward(logits, max_log_sum_exp, labels)
        ctx.smoothing = smoothing
        ctx.padding_idx = padding_idx
        return losses

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        logits, max_log_sum_exp, labels = ctx.saved_tensors
        grad_loss = grad_loss.masked_fill(labels == ctx.padding_idx, 0)
        probs = torch.exp(logits - max_log_sum_exp.unsqueeze(-1))
        target = torch.full_like(logits, ctx.smoothing / logits.shape[-1])
        target.scatter_add_(-1, labels.unsqueeze(-1), torch.full_like(grad_loss, 1.0 - ctx.smoothing).unsqueeze(-1))
        grad_logits = grad_loss.unsqueeze(-1) * (probs - target)
        return grad_logits.to(logits.dtype), None, None, None, None


def xentropy_reference(logits, labels, smoothing=0.0, padding_idx=0, half_to_float=False):
    losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
    return torch.where(labels == padding_idx, torch.zeros_like(losses), losses)


def make_xentropy(dtype, device, gen):
    logits = randn(dtype, device, gen, 6, 10, scale=2.0)
    labels = torch.randint(1, 10, (6,), generator=gen, device=device)
    labels[2] = 0  # a padding row
    return {"smoothing 0.1": (logits, labels, 0.1, 0, False), "no smoothing": (logits, labels, 0.0, 0, False)}


# ---------------------------------------------------------------------------------------------- entmax's sparsemax


def _sparsemax_threshold_and_support(X, dim=-1, k=None):
    topk, _ = torch.sort(X, dim=dim, descending=True)
    topk_cumsum = topk.cumsum(dim) - 1
    rhos = torch.arange(1, X.size(dim) + 1, device=X.device, dtype=X.dtype)
    view = [1] * X.dim()
    view[0] = -1
    rhos = rhos.view(view).transpose(0, dim)
    support = rhos * topk > topk_cumsum
    support_size = support.sum(dim=dim).unsqueeze(dim)
    tau = topk_cumsum.gather(dim, support_size - 1)
    tau /= support_size.to(X.dtype)
    return tau, support_size


class SparsemaxFunction(Function):
    """After entmax's `SparsemaxFunction` (classmethod forward/backward, dim and k as arguments, saves the support size
    as an int tensor and the output)."""

    @classmethod
    def forward(cls, ctx, X, dim=-1, k=None):
        ctx.dim = dim
        max_val, _ = X.max(dim=dim, keepdim=True)
        X = X - max_val  # same numerical stability trick as softmax
        tau, supp_size = _sparsemax_threshold_and_support(X, dim=dim, k=k)
        output = torch.clamp(X - tau, min=0)
        ctx.save_for_backward(supp_size, output)
        return output

    @classmethod
    def backward(cls, ctx, grad_output):
        supp_size, output = ctx.saved_tensors
        dim = ctx.dim
        grad_input = grad_output.clone()
        grad_input[output == 0] = 0

        v_hat = grad_input.sum(dim=dim) / supp_size.to(output.dtype).squeeze(dim)
        v_hat = v_hat.unsqueeze(dim)
        grad_input = torch.where(output != 0, grad_input - v_hat, grad_input)
        return grad_input, None, None


def sparsemax_reference(z, dim=-1, k=None):
    """Sparsemax by the sort formula, differentiated by autograd (through sort, cumsum, gather and relu)."""
    z_sorted, _ = torch.sort(z, dim=dim, descending=True)
    n = z.shape[dim]
    ks = torch.arange(1, n + 1, dtype=z.dtype, device=z.device).view(
        [-1 if d == dim % z.dim() else 1 for d in range(z.dim())]
    )
    cumsum = z_sorted.cumsum(dim)
    support = (1 + ks * z_sorted > cumsum).sum(dim, keepdim=True)
    tau = (cumsum.gather(dim, support - 1) - 1) / support.to(z.dtype)
    return torch.relu(z - tau)


def make_sparsemax(dtype, device, gen):
    return {
        "dim -1": (randn(dtype, device, gen, 5, 8, scale=1.5), -1, None),
        "dim 0": (randn(dtype, device, gen, 6, 3), 0, None),
    }


# ------------------------------------------------------------------------------------- straight-through estimators


class BinarizeF(Function):
    """After the BinaryNet / BinaryConnect PyTorch ports' `BinarizeF`: sign(x) as +-1 with the plain straight-through
    gradient (grad_output passed through)."""

    @staticmethod
    def forward(ctx, input):
        output = input.new(input.size())
        output[input >= 0] = 1
        output[input < 0] = -1
        return output

    @staticmethod
    def backward(ctx, grad_output):
        grad_input = grad_output.clone()
        return grad_input


def binarize_reference(x):
    return x + (torch.where(x >= 0, 1.0, -1.0).to(x.dtype) - x).detach()


class RoundSTE(Function):
    """After the fake-quantisation round of QAT code (LSQ / PACT ports): round(x / scale) * scale, straight-through
    gradient, scale a float; once_differentiable."""

    @staticmethod
    def forward(ctx, x, scale):
        return torch.round(x / scale) * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return grad_output, None


def round_ste_reference(x, scale):
    return x + (torch.round(x / scale) * scale - x).detach()


def make_round(dtype, device, gen):
    return randn(dtype, device, gen, 6, 5, scale=2.0), 0.25


# ------------------------------------------------------------------------------------------------ gradient reversal


class ReverseLayerF(Function):
    """After DANN's `ReverseLayerF` (pytorch-DANN): identity forward (`x.view_as(x)`), gradient multiplied by -alpha."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha

        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        output = grad_output.neg() * ctx.alpha

        return output, None


def reverse_reference(x, alpha):
    return x.detach() + alpha * (x.detach() - x)  # values x exactly, gradient -alpha


def make_reverse(dtype, device, gen):
    return {"alpha 0.5": (randn(dtype, device, gen, 6, 5), 0.5), "alpha 1": (randn(dtype, device, gen, 3, 5), 1.0)}


# ---------------------------------------------------------------------------------------- in place, mark_dirty


class InplaceLeakyReLU(Function):
    """After inplace_abn's in-place activation: leaky ReLU applied to x in place (ctx.mark_dirty), the backward
    recovering the sign from the output it saved."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.slope = slope
        F.leaky_relu(x, slope, inplace=True)  # a CUDA kernel writing into x in inplace_abn
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return torch.where(y >= 0, grad_output, grad_output * ctx.slope), None


def leaky_relu_inplace_reference(x, slope):
    return F.leaky_relu(x, slope, inplace=True)


def make_leaky(dtype, device, gen):
    return randn(dtype, device, gen, 6, 5), 0.1


# ----------------------------------------------------------------------------------- a Module holding parameters


class LinearFunction(Function):
    """After the PyTorch docs' `LinearFunction` ("Extending torch.autograd"), with the AMP docs' custom_fwd/custom_bwd
    so that its backward runs under the forward's autocast state."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, input, weight, bias=None):
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


class MyLinear(nn.Module):
    """The PyTorch docs' module around LinearFunction: weight and bias are parameters, inputs of the Function."""

    def __init__(self, input_features, output_features, function=LinearFunction):
        super().__init__()
        self.function = function
        self.weight = nn.Parameter(torch.empty(output_features, input_features))
        self.bias = nn.Parameter(torch.empty(output_features))
        with torch.no_grad():  # uniform in (-1, 1) (the docs: -0.1, 0.1), seeded: the same case every run
            gen = torch.Generator().manual_seed(13)
            self.weight.copy_(torch.rand(self.weight.shape, generator=gen) * 2 - 1)
            self.bias.copy_(torch.rand(self.bias.shape, generator=gen) * 2 - 1)

    def forward(self, input):
        return self.function.apply(input, self.weight, self.bias)


class LinearReference(nn.Module):
    """The same parameter names, plain F.linear (the harness loads fn's values into it)."""

    def __init__(self, input_features, output_features):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(output_features, input_features))
        self.bias = nn.Parameter(torch.zeros(output_features))

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)


def make_linear_module_input(dtype, device, gen):
    return (randn(dtype, device, gen, 5, 6),)


# --------------------------------------------------------------------------------------------- a list as output


class Chunk(Function):
    """A split into n equal chunks along the last dim (as model-parallel `_split` helpers), returning a tuple; the
    caller's wrapper hands back a list, as torch's `tensor_split` users often do."""

    @staticmethod
    def forward(ctx, x, n):
        ctx.n = n
        return tuple(c.clone() for c in x.chunk(n, -1))

    @staticmethod
    def backward(ctx, *grads):
        return torch.cat(grads, -1), None


def chunk_as_list(x, n):
    return list(Chunk.apply(x, n))


def chunk_reference(x, n):
    return list(x.chunk(n, -1))


def make_chunk(dtype, device, gen):
    return randn(dtype, device, gen, 4, 6), 3


# ------------------------------------------------------------------------------------- empty tensors, elementwise


def make_with_empty(dtype, device, gen):
    return {
        "random": (randn(dtype, device, gen, 4, 5),),
        "empty (0, 5)": (torch.empty(0, 5, dtype=dtype, device=device),),
    }


# ------------------------------------------------------------------------------------------ a reference that raises


class MatMulFn(Function):
    """x @ w, old-style, right (custom_fwd/custom_bwd: its backward runs under the forward's autocast)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g


def reference_with_shape_error(x, w):
    return x @ w.T  # (4, 3) @ (5, 3): RuntimeError, mat1 and mat2 shapes cannot be multiplied


def make_matmul(dtype, device, gen):
    return randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 3, 5)


# ================================================================================================= wrong Functions


class LinearFunctionDoubleWeightGrad(LinearFunction):
    """LinearFunction whose weight gradient is twice too large (a gradient accumulated twice into the returned
    tensor): visible only if the Module's parameters are checked."""

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
            grad_weight += grad_output.t().mm(input)  # bug: accumulated twice
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


def raw_storage(x):
    """How a CUDA kernel handed x.data_ptr() reads x: its storage in row-major order, whatever the strides."""
    strides = [1] * x.dim()
    for d in range(x.dim() - 2, -1, -1):
        strides[d] = strides[d + 1] * x.shape[d + 1]
    return x.as_strided(x.shape, strides, x.storage_offset())


class SwishKernelNoContiguous(Function):
    """After CUDA-extension Functions that pass `x.data_ptr()` to their kernel without `.contiguous()` (the kernel's
    read emulated by as_strided with row-major strides): the forward is wrong for non-contiguous inputs only; the
    backward, in torch ops, is right."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        x_kernel = raw_storage(x)  # bug: x.contiguous() missing before the kernel call
        return x_kernel * torch.sigmoid(x_kernel)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return swish_bwd(x, grad_output)


class LayerNormMissingMeanTerm(FusedLayerNormAffineFunction):
    """apex-style LayerNorm whose dx forgets the mean term: invvar * (g*w - xhat * mean(g*w*xhat)), the
    - mean(g*w) missing."""

    @staticmethod
    def backward(ctx, grad_output):
        input_, weight_, bias_, mean, invvar = ctx.saved_tensors
        dims = tuple(range(-len(ctx.normalized_shape), 0))
        lead = tuple(range(input_.dim() - len(dims)))
        xhat = (input_ - mean) * invvar
        grad_xhat = grad_output * weight_
        grad_input = invvar * (grad_xhat - xhat * (grad_xhat * xhat).mean(dims, keepdim=True))  # bug
        return grad_input, (grad_output * xhat).sum(lead), grad_output.sum(lead), None, None


class LayerNormOnePassVariance(FusedLayerNormAffineFunction):
    """apex-style LayerNorm with the variance in one pass, E[x^2] - E[x]^2: right in exact arithmetic, but on rows of
    mean 1e3 the float32 cancellation costs ~5% of the variance, thousands of times the reference's own error."""

    @staticmethod
    def forward(ctx, input, weight, bias, normalized_shape, eps):
        ctx.normalized_shape = normalized_shape
        dims = tuple(range(-len(normalized_shape), 0))
        mean = input.mean(dims, keepdim=True)
        var = input.square().mean(dims, keepdim=True) - mean.square()  # bug: catastrophic cancellation
        invvar = torch.rsqrt(var + eps)
        ctx.save_for_backward(input, weight, bias, mean, invvar)
        return (input - mean) * invvar * weight + bias


class SwishMissingTerm(Function):
    """A torch.func-ready swish whose backward forgets the product rule's second term: g * sigmoid(x) instead of
    g * sigmoid(x) * (1 + x * (1 - sigmoid(x)))."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.sigmoid(x)  # bug: + g * x * s * (1 - s) missing


def clipped_ste_reference(x):
    """The BinaryNet paper's STE: gradient 1 where |x| <= 1, 0 outside (hardtanh's derivative)."""
    clipped = x.clamp(-1, 1)
    return clipped + (torch.where(x >= 0, 1.0, -1.0).to(x.dtype) - clipped).detach()


class InplaceExpNoMarkDirty(Function):
    """An in-place exp_ Function that forgets ctx.mark_dirty: output values and gradients are right, but the caller's
    x is overwritten behind autograd's back (it still believes x holds the old values)."""

    @staticmethod
    def forward(ctx, x):
        x.exp_()  # bug: ctx.mark_dirty(x) missing
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * y


class QKSplitScale(Function):
    """A fused attention prologue splitting qk into (q * scale, k): the backward applies the scale to k's gradient
    too (copy-paste): wrong only through the second output."""

    @staticmethod
    def forward(ctx, qk, scale):
        ctx.scale = scale
        q, k = qk.chunk(2, dim=-1)
        return q * scale, k.clone()

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        return torch.cat([grad_q * ctx.scale, grad_k * ctx.scale], dim=-1), None  # bug: grad_k, not grad_k * scale


def qk_split_reference(qk, scale):
    q, k = qk.chunk(2, dim=-1)
    return q * scale, k


def make_qk(dtype, device, gen):
    return randn(dtype, device, gen, 3, 4, 8), 0.125


class SigmoidForgetsGradOutput(Function):
    """A tutorial-style sigmoid whose backward returns the local derivative s * (1 - s) and forgets to multiply by
    grad_output: right only when the incoming gradient is all ones (loss = y.sum())."""

    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return s * (1 - s)  # bug: grad_output * s * (1 - s)


class ChunkReturnsList(Function):
    """The chunk Function with forward returning a list: autograd wraps only tensors and tuples, so the chunks come
    back detached (requires_grad False) and no gradient flows, silently."""

    @staticmethod
    def forward(ctx, x, n):
        return [c.clone() for c in x.chunk(n, -1)]  # bug: a list, not a tuple

    @staticmethod
    def backward(ctx, *grads):
        return torch.cat(grads, -1), None


# ==================================================================================================== the cases

OTHERS = {
    # ---------------------------------------------------------------------------------------------- correct
    "timm_swish": Case(
        SwishAutoFn.apply,
        lambda x: x * torch.sigmoid(x),
        make_x,
        set(),
        why="timm's memory-efficient Swish, old-style, saves only x",
    ),
    "timm_mish": Case(
        MishAutoFn.apply,
        lambda x: x * torch.tanh(F.softplus(x)),
        make_x,
        set(),
        why="timm's memory-efficient Mish, old-style, saves only x",
    ),
    "timm_hard_swish": Case(
        HardSwishAutoFn.apply,
        F.hardswish,
        make_hard_swish,
        set(),
        options={"kinks": ("at +-3",)},
        why="timm's hard-swish: at x = -3 and 3 the other one-sided derivatives than F.hardswish (both valid)",
    ),
    "megatron_bias_gelu": Case(
        GeLUFunction.apply,
        lambda x, b: F.gelu(x + b, approximate="tanh"),
        make_bias_gelu,
        set(),
        warns={"input_subsets"},
        why="Megatron's bias-GeLU: sqrt(2/pi) to 8 digits (float64 errors ~1e-10), unreduced bias gradient, "
        "gradients returned unasked",
    ),
    "apex_layer_norm": Case(
        FusedLayerNormAffineFunction.apply,
        layer_norm_reference,
        make_layer_norm,
        {"gradgradcheck"},
        warns={"input_subsets"},
        why="apex's affine LayerNorm: (input, weight, bias, normalized_shape tuple, eps float), every gradient "
        "returned; right to first order, but its double backward is silently wrong (mean and invvar saved from a "
        "no-grad forward are constants to it; apex's CUDA backward has none at all): gradgradcheck fails, rightly",
    ),
    "apex_layer_norm_ill_conditioned": Case(
        FusedLayerNormOnceDifferentiable.apply,
        layer_norm_reference,
        make_layer_norm_ill_conditioned,
        set(),
        warns={"input_subsets"},
        why="the same, once_differentiable (gradgradcheck n/a), on rows of mean 1e3: its float32 error vs the "
        "reference ~3e-5, about the reference's own error against float64",
    ),
    "rms_norm": Case(
        RMSNormFunction.apply,
        rms_norm_reference,
        make_rms_norm,
        set(),
        why="T5/LLaMA RMSNorm, torch.func-ready (setup_context, generate_vmap_rule), weight and eps float",
    ),
    "megatron_linear_bias_none": Case(
        LinearWithGradAccumulation.apply,
        megatron_linear_reference,
        make_linear,
        set(),
        warns={"input_subsets"},
        why="Megatron's linear: bias None in one sample, every gradient returned whatever needs_input_grad says",
    ),
    "topk_with_indices": Case(
        TopK.apply,
        torch.topk,
        make_topk,
        set(),
        why="top-k returning int64 indices beside the values (mark_non_differentiable), k and dim ints, func-ready",
    ),
    "select_dim0": Case(
        SelectLayer.apply,
        lambda x, idx: x[idx],
        make_select,
        set(),
        why="x[2] (int argument) with a vmap rule: dim 0 is not a sample dim, vmap_grad must not fail (n/a)",
    ),
    "softmax_dim_kwarg": Case(
        SoftmaxFunction.apply,
        softmax_reference,
        make_softmax,
        set(),
        why="hand-written softmax, old-style, dim passed as a keyword (Sample(x, dim=1))",
    ),
    "apex_xentropy": Case(
        SoftmaxCrossEntropyLoss.apply,
        xentropy_reference,
        make_xentropy,
        set(),
        why="apex's label-smoothing xentropy: int64 labels, float, int and bool arguments, a padding row, "
        "once_differentiable (gradgradcheck n/a)",
    ),
    "timm_swish_no_reference": Case(
        SwishAutoFn.apply,
        None,
        make_x,
        set(),
        why="reference=None: gradcheck, gradgradcheck and fn's own transforms run; the rest n/a, saying why",
    ),
    "entmax_sparsemax": Case(
        SparsemaxFunction.apply,
        sparsemax_reference,
        make_sparsemax,
        set(),
        why="entmax's sparsemax: classmethod forward/backward, (X, dim, k=None), saves an int support size",
    ),
    "bnn_sign_ste": Case(
        BinarizeF.apply,
        binarize_reference,
        make_x,
        set(),
        why="BinaryNet's sign STE; the reference has the same custom gradient: gradcheck n/a for both, not failed",
    ),
    "qat_round_ste": Case(
        RoundSTE.apply,
        round_ste_reference,
        make_round,
        set(),
        why="fake-quant round(x/scale)*scale STE, scale float, once_differentiable: gradcheck n/a, gradgradcheck n/a",
    ),
    "dann_gradient_reversal": Case(
        ReverseLayerF.apply,
        reverse_reference,
        make_reverse,
        set(),
        why="DANN's gradient reversal (x.view_as(x), gradient -alpha): gradcheck n/a, the reference fails it too",
    ),
    "inplace_abn_leaky_relu": Case(
        InplaceLeakyReLU.apply,
        leaky_relu_inplace_reference,
        make_leaky,
        set(),
        why="in-place leaky ReLU with ctx.mark_dirty against F.leaky_relu(inplace=True): fresh copies per call; "
        "inside checkpoint both raise (the region modifies its own input): n/a, not failed",
    ),
    "module_linear": Case(
        MyLinear(6, 4),
        LinearReference(6, 4),
        make_linear_module_input,
        set(),
        options={"functions": (LinearFunction,)},
        why="the PyTorch docs' MyLinear Module: its weight and bias checked by name against an F.linear module",
    ),
    "chunk_list_output": Case(
        chunk_as_list,
        chunk_reference,
        make_chunk,
        set(),
        options={"functions": (Chunk,)},
        why="a wrapper returning a list of the Function's outputs (n int)",
    ),
    "swish_empty_tensor": Case(
        SwishAutoFn.apply,
        lambda x: x * torch.sigmoid(x),
        make_with_empty,
        set(),
        why="an elementwise Function on a (0, 5) sample beside a random one: checked or n/a, never an error",
    ),
    "reference_raises": Case(
        MatMulFn.apply,
        reference_with_shape_error,
        make_matmul,
        {"forward", "backward", "noncontiguous", "autocast", "checkpoint", "saved_tensors"},
        warns={"input_subsets"},
        why="a right x @ w whose reference raises (shape error): reported as the reference failing on every check "
        "that runs it, never escaping check_function (x and w differ in shape: same_tensor_twice n/a; MatMulFn "
        "returns both gradients unasked: input_subsets warns)",
    ),
    # ------------------------------------------------------------------------------------------------ wrong
    "module_linear_double_weight_grad": Case(
        MyLinear(6, 4, LinearFunctionDoubleWeightGrad),
        LinearReference(6, 4),
        make_linear_module_input,
        {"gradcheck"} | GRADIENT_CHECKS,
        options={"functions": (LinearFunctionDoubleWeightGrad,)},
        why="backward: the Module's weight gradient is 2x (only the parameter's gradient is wrong; x's is right)",
    ),
    "noncontiguous_forward": Case(
        SwishKernelNoContiguous.apply,
        lambda x: x * torch.sigmoid(x),
        make_x,
        {"noncontiguous"},
        why="noncontiguous: the forward reads x's storage in row-major order (no .contiguous() before the kernel)",
    ),
    "layer_norm_missing_mean_term": Case(
        LayerNormMissingMeanTerm.apply,
        layer_norm_reference,
        make_layer_norm,
        {"gradcheck", "gradgradcheck"} | GRADIENT_CHECKS,
        warns={"input_subsets"},
        why="backward: dx without the -mean(g*w) term",
    ),
    "layer_norm_one_pass_variance": Case(
        LayerNormOnePassVariance.apply,
        layer_norm_reference,
        make_layer_norm_ill_conditioned,
        {"forward", "gradgradcheck", "same_tensor_twice"} | GRADIENT_CHECKS,
        warns={"input_subsets"},
        why="forward: var = E[x^2] - E[x]^2 on rows of mean 1e3; float32 error ~5e-2, thousands of times the "
        "reference's (the tolerance for rounding must not swallow it; same_tensor_twice sees it too, weight and "
        "bias being one tensor)",
    ),
    "swish_missing_term": Case(
        SwishMissingTerm.apply,
        lambda x: x * torch.sigmoid(x),
        make_x,
        {"gradcheck"} | GRADIENT_CHECKS | FUNC_CHECKS,
        why="backward: g * sigmoid(x), the x * s * (1 - s) term missing (torch.func-ready, so the func checks see it)",
    ),
    "ste_plain_vs_clipped_reference": Case(
        BinarizeF.apply,
        clipped_ste_reference,
        make_x,
        GRADIENT_CHECKS,
        why="backward: plain STE (gradient 1) where the reference's custom gradient is clipped to |x| <= 1; "
        "gradcheck n/a (custom gradient on both sides)",
    ),
    "inplace_without_mark_dirty": Case(
        InplaceExpNoMarkDirty.apply,
        torch.exp,
        make_x,
        {"saved_tensors", "gradcheck", "gradgradcheck", "forward", "noncontiguous", "checkpoint"},
        why="saved_tensors: exp_ on the input without ctx.mark_dirty (the caller's x silently overwritten: its "
        "version counter moves, the output is not x); the overwritten input then breaks finite differences "
        "(gradcheck), double backward (gradgradcheck), a second forward on the same tensors (forward, "
        "noncontiguous) and checkpoint's recomputation",
    ),
    "second_output_grad_scaled": Case(
        QKSplitScale.apply,
        qk_split_reference,
        make_qk,
        {"gradcheck", "unused_outputs"} | GRADIENT_CHECKS,
        why="unused_outputs: k's incoming gradient scaled as q's (wrong only through the second output)",
    ),
    "sigmoid_forgets_grad_output": Case(
        SigmoidForgetsGradOutput.apply,
        torch.sigmoid,
        make_x,
        {"gradcheck", "gradgradcheck"} | GRADIENT_CHECKS,
        why="backward: grad_output never multiplied in (right only for y.sum()); gradgradcheck: the second derivative "
        "wrt grad_output is 0",
    ),
    "forward_returns_list": Case(
        ChunkReturnsList.apply,
        chunk_reference,
        make_chunk,
        {"backward", "gradcheck", "gradgradcheck", "unused_outputs", "noncontiguous", "autocast", "checkpoint"},
        why="backward: forward returns a list, so autograd leaves the chunks detached: no gradient at all",
    ),
}
