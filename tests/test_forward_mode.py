"""The hand-written jvp of both Functions against PyTorch's own forward AD of the plain-torch reference (nn.Linear's
and F.cross_entropy's math, manualnet.net_crosscheck): torch.func.jvp per input and all at once, forward_ad dual
tensors, jacfwd, hessian (forward over reverse), reverse over forward, vmap over jvp, gradcheck's forward-AD options,
torch.compile (the custom jvp really runs), autocast; on the net's samples, edge cases included (a batch of 1, one
hidden unit, pre-activations exactly 0, dead units, logits of 1e4), and bad tangents.

Errors are scale-relative: max |got - want| / max |want|, at most 1e-10 in float64 and 1e-5 in float32.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import hessian, jacfwd, jvp, vmap
from torch.utils._pytree import tree_leaves

from manualnet import net_crosscheck, softmax_cross_entropy, two_layer_net
from manualnet.functional import SoftmaxCrossEntropyFn, TwoLayerNetFn
from manualnet.net_crosscheck import net_loss, reference_net, reference_net_both, reference_net_loss

RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
NAMES = ("x", "w1", "b1", "w2", "b2")


def assert_rel_close(got, want, rtol, what=""):
    """Every tensor in got (a tensor or nested tuples of them) within rtol of the largest magnitude of want's."""
    got, want = tree_leaves(got), tree_leaves(want)
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape and g.dtype == w.dtype, (what, k, g.shape, w.shape, g.dtype, w.dtype)
        err, scale = (g - w).abs().max().item(), w.abs().max().item()
        assert err <= rtol * scale, f"{what} output {k}: max abs err {err:.3e} > {rtol:g} * {scale:.3e}"


def samples(dtype=torch.float64):
    """The net's samples (x, w1, b1, w2, b2, y), edge cases included, and a random tangent for each float input."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, s in net_crosscheck.net_loss_inputs(dtype, torch.device("cpu"), gen).items():
        tangents = tuple(torch.randn(t.shape, dtype=dtype, generator=gen) for t in s[:5])
        out[name] = (s[:5], s[5], tangents)
    return out


SAMPLES = samples()


def labelled(f, y):
    """f(x, w1, b1, w2, b2) -> f(x, w1, b1, w2, b2, y), or f(s2) -> f(s2, y)."""
    return lambda *a: f(*a, y)


def followed_by(f, *rest, **kwargs):
    """f(*a) -> f(*a, *rest, **kwargs): the inputs that get no tangent (labels, mask, eps) held fixed."""
    return lambda *a: f(*a, *rest, **kwargs)


def of_input(f, primals, i):
    """f as a function of input i alone, the others held fixed (no tangent: None in the Function's jvp)."""
    return lambda p: f(*primals[:i], p, *primals[i + 1 :])


# ------------------------------------------------------------------------------------------- jvp, term by term


@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("i", range(5), ids=NAMES)
def test_jvp_in_each_input_alone_equals_forward_ad_of_the_reference_float64(name, i):
    # A tangent on one input alone exercises that input's terms alone: x -> ẋ w1, w1 -> x ẇ1, b1 -> ḃ1 (each through
    # the mask and ẋ2 w2, and into x2's own tangent), w2 -> x2 ẇ2, b2 -> ḃ2; the loss adds sum_j P ṡ2 - ṡ2_y.
    primals, y, tangents = SAMPLES[name]
    p, t = primals[i], tangents[i]
    got = jvp(of_input(TwoLayerNetFn.apply, primals, i), (p,), (t,))[1]
    want = jvp(of_input(reference_net_both, primals, i), (p,), (t,))[1]
    assert_rel_close(got, want, 1e-10, f"{name}, tangent on {NAMES[i]}: (s2, x2)")
    got = jvp(of_input(labelled(net_loss, y), primals, i), (p,), (t,))[1]
    want = jvp(of_input(labelled(reference_net_loss, y), primals, i), (p,), (t,))[1]
    assert_rel_close(got, want, 1e-10, f"{name}, tangent on {NAMES[i]}: loss")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_jvp_in_all_inputs_at_once_equals_forward_ad_of_the_reference(dtype):
    for name, (primals, y, tangents) in samples(dtype).items():
        got = jvp(TwoLayerNetFn.apply, primals, tangents)
        want = jvp(reference_net_both, primals, tangents)
        assert_rel_close(got, want, RTOL[dtype], f"{name}: (s2, x2) and their tangents")
        got = jvp(labelled(net_loss, y), primals, tangents)
        want = jvp(labelled(reference_net_loss, y), primals, tangents)
        assert_rel_close(got, want, RTOL[dtype], f"{name}: loss and its tangent")


def test_loss_jvp_on_its_own_equals_forward_ad_of_cross_entropy_float64():
    # The loss Function's samples: C=2, a batch of 1, logits of magnitude 1e4 (exp overflows without the row max).
    gen = torch.Generator().manual_seed(1)
    for name, (s2, y) in net_crosscheck.loss_inputs(torch.float64, torch.device("cpu"), gen).items():
        t = torch.randn(s2.shape, dtype=s2.dtype, generator=gen)
        got = jvp(labelled(softmax_cross_entropy, y), (s2,), (t,))
        want = jvp(labelled(F.cross_entropy, y), (s2,), (t,))
        assert_rel_close(got, want, 1e-10, name)


def test_dual_tensors_of_forward_ad_equal_the_reference_and_leave_the_primal_alone():
    for name, (primals, y, tangents) in SAMPLES.items():
        results = []
        for f in (labelled(net_loss, y), labelled(reference_net_loss, y)):
            with fwAD.dual_level():
                out = fwAD.unpack_dual(f(*(fwAD.make_dual(p, t) for p, t in zip(primals, tangents, strict=True))))
                results.append((out.primal, out.tangent))
        assert_rel_close(results[0], results[1], 1e-10, name)


def test_non_contiguous_inputs_and_tangents_equal_forward_ad_of_the_reference():
    primals, y, tangents = SAMPLES["general"]

    def strided(t):  # the same values, stored transposed (matrices) or every other element (vectors)
        return t.T.contiguous().T if t.dim() == 2 else torch.stack([t, t], 1)[:, 0]

    loose_p, loose_t = tuple(map(strided, primals)), tuple(map(strided, tangents))
    assert not any(t.is_contiguous() for t in loose_p + loose_t)
    want = jvp(labelled(reference_net_loss, y), primals, tangents)
    assert_rel_close(jvp(labelled(net_loss, y), loose_p, loose_t), want, 1e-10)
    want = jvp(reference_net_both, primals, tangents)
    assert_rel_close(jvp(TwoLayerNetFn.apply, loose_p, loose_t), want, 1e-10)


def test_kink_and_dead_units_pass_no_tangent_through_the_relu():
    # At s1 == 0 exactly (unit 0 of the kink sample, every unit of the dead one) the tangent of x2 is 0, the
    # derivative torch's relu takes there: the mask [x2 > 0], not [x2 >= 0].
    for name in ("kink", "dead units"):
        primals, _, tangents = SAMPLES[name]
        _, x2_dot = jvp(TwoLayerNetFn.apply, primals, tangents)[1]
        x2 = TwoLayerNetFn.apply(*primals)[1]
        assert (x2_dot[x2 == 0] == 0).all() and (x2 == 0).any(), name
        assert_rel_close(x2_dot, jvp(reference_net_both, primals, tangents)[1][1], 1e-10, name)


# ------------------------------------------------------------------------------- what forward mode unlocks


@pytest.mark.parametrize("name", ["general", "batch of 1", "one hidden unit", "kink"])
def test_jacfwd_of_the_net_and_the_loss_equals_the_reference(name):
    primals, y, _ = SAMPLES[name]
    argnums = tuple(range(5))
    assert_rel_close(jacfwd(two_layer_net, argnums)(*primals), jacfwd(reference_net, argnums)(*primals), 1e-10)
    got = jacfwd(net_loss, argnums)(*primals, y)
    assert_rel_close(got, jacfwd(reference_net_loss, argnums)(*primals, y), 1e-10)


@pytest.mark.parametrize("name", ["general", "batch of 1", "one hidden unit", "kink", "logits 1e4"])
def test_hessian_of_the_loss_in_each_parameter_and_in_all_equals_the_reference(name):
    # torch.func.hessian is jacfwd(jacrev): the hand-written jvp run over the hand-written backward.
    primals, y, _ = SAMPLES[name]
    for argnums in (1, 2, 3, 4, (1, 2, 3, 4)):
        got = hessian(net_loss, argnums)(*primals, y)
        want = hessian(reference_net_loss, argnums)(*primals, y)
        assert_rel_close(got, want, 1e-10, f"{name}, argnums {argnums}")


def test_reverse_over_forward_equals_the_reference():
    # The gradient of a directional derivative, d/dw <grad L, v>: autograd through the hand-written jvp.
    primals, y, tangents = SAMPLES["general"]

    def directional(f):
        return lambda *p: jvp(labelled(f, y), p, tangents)[1]

    got = torch.func.grad(directional(net_loss), argnums=(0, 1, 2, 3, 4))(*primals)
    want = torch.func.grad(directional(reference_net_loss), argnums=(0, 1, 2, 3, 4))(*primals)
    assert_rel_close(got, want, 1e-10)


def test_vmap_over_jvp_equals_a_loop_of_the_reference():
    primals, y, _ = SAMPLES["general"]
    gen = torch.Generator().manual_seed(2)
    batched = tuple(torch.randn((3, *p.shape), dtype=p.dtype, generator=gen) for p in primals)
    got = vmap(lambda *t: jvp(labelled(net_loss, y), primals, t)[1])(*batched)
    want = torch.stack([jvp(labelled(reference_net_loss, y), primals, t)[1] for t in zip(*batched, strict=True)])
    assert_rel_close(got, want, 1e-10)


def test_jvp_of_vmap_over_a_batch_of_inputs_equals_the_reference():
    # vmap inside jvp: the generated vmap rule batches the jvp itself, with the saved x batched.
    primals, y, tangents = SAMPLES["general"]
    xs = torch.randn((3, *primals[0].shape), dtype=primals[0].dtype, generator=torch.Generator().manual_seed(3))

    def batched(f):
        return lambda w1, w2: vmap(lambda x: f(x, w1, primals[2], w2, primals[4]))(xs)

    args, tans = (primals[1], primals[3]), (tangents[1], tangents[3])
    assert_rel_close(jvp(batched(two_layer_net), args, tans), jvp(batched(reference_net), args, tans), 1e-10)


def test_gradcheck_forward_ad_and_gradgradcheck_forward_over_reverse_pass():
    # Finite differences of every input, float64, away from the kink: forward AD, batched forward AD, and the jvp
    # of the backward (forward over reverse). Full Jacobians on the small samples, fast mode on the general one.
    for name, fast in (("batch of 1", False), ("one hidden unit", False), ("general", True)):
        primals, y, _ = SAMPLES[name]
        inputs = tuple(p.clone().requires_grad_() for p in primals)
        for f in (TwoLayerNetFn.apply, labelled(net_loss, y)):
            assert torch.autograd.gradcheck(
                f, inputs, check_forward_ad=True, check_batched_forward_grad=True, fast_mode=fast
            )
            assert torch.autograd.gradgradcheck(f, inputs, check_fwd_over_rev=True, fast_mode=fast)
        s2 = reference_net(*primals).detach().requires_grad_()
        assert torch.autograd.gradcheck(
            SoftmaxCrossEntropyFn.apply, (s2, y), check_forward_ad=True, check_batched_forward_grad=True
        )


# ---------------------------------------------------------------------------------------- compile, autocast


@pytest.fixture
def tripled_jvps(monkeypatch):
    """Both jvps with their tangents tripled: a compiled result that is not tripled did not run them."""
    net_jvp, loss_jvp = TwoLayerNetFn.jvp, SoftmaxCrossEntropyFn.jvp

    def net(ctx, *tangents):
        s2_dot, x2_dot = net_jvp(ctx, *tangents)
        return 3 * s2_dot, 3 * x2_dot

    monkeypatch.setattr(TwoLayerNetFn, "jvp", staticmethod(net))
    monkeypatch.setattr(SoftmaxCrossEntropyFn, "jvp", staticmethod(lambda ctx, *t: 3 * loss_jvp(ctx, *t)))


def test_compiled_jvp_runs_the_hand_written_jvps(tripled_jvps):
    # pytorch #192985: Dynamo inlines a Function's forward under forward AD and drops its jvp, the values then
    # equal the reference's (forward AD of the forward), so only a wrong jvp can tell. The wrappers keep it.
    primals, y, tangents = SAMPLES["general"]
    want = jvp(labelled(reference_net_loss, y), primals, tangents)[1]
    torch._dynamo.reset()
    got = torch.compile(lambda *p: jvp(labelled(net_loss, y), p, tangents)[1])(*primals)
    assert_rel_close(got, 9 * want, 1e-10, "the loss's jvp (3x) over the net's (3x)")


def test_bf16_autocast_jvp_is_as_accurate_as_the_reference_under_the_same_autocast():
    # The wrappers cast as nn.Linear does, and the tangents follow the casts; both sides then round their bf16
    # products and sums in their own order. So (the flash-attention rule, PITFALLS.md): the net's tangent in bf16 is
    # within 3x the reference's own error of the float32 truth. The loss computes in float32, as F.cross_entropy
    # does: on the same bf16 scores and tangent, the two agree to float32 precision.
    for name, (primals, y, tangents) in samples(torch.float32).items():
        truth = jvp(reference_net, primals, tangents)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s2, got = jvp(two_layer_net, primals, tangents)
            want = jvp(reference_net, primals, tangents)[1]
            assert got.dtype == want.dtype == torch.bfloat16
            loss = jvp(labelled(softmax_cross_entropy, y), (s2,), (got,))
            loss_want = jvp(labelled(F.cross_entropy, y), (s2,), (got,))
        err, ref_err = ((t.float() - truth).abs().max().item() for t in (got, want))
        assert err <= max(3 * ref_err, 2**-8 * truth.abs().max().item()), (name, err, ref_err)
        assert_rel_close(loss, loss_want, 1e-5, name)


# ------------------------------------------------------------- label smoothing and the dropout mask (forward mode)


def test_smoothed_loss_jvp_equals_forward_ad_of_f_cross_entropy_label_smoothing_float64():
    # L̇ = mean_i sum_j (P_ij - Yeps_ij) ṡ2_ij against forward AD of torch's own smoothed cross-entropy.
    gen = torch.Generator().manual_seed(2)
    for name, s in net_crosscheck.smoothed_loss_inputs(torch.float64, torch.device("cpu"), gen).items():
        (s2, y), eps = s.args, s.kwargs["label_smoothing"]
        t = torch.randn(s2.shape, dtype=s2.dtype, generator=gen)
        got = jvp(followed_by(softmax_cross_entropy, y, label_smoothing=eps), (s2,), (t,))
        want = jvp(followed_by(F.cross_entropy, y, label_smoothing=eps), (s2,), (t,))
        assert_rel_close(got, want, 1e-10, name)


def test_masked_net_and_regularised_loss_jvp_equal_forward_ad_of_the_reference_with_the_same_mask_float64():
    # ẋ2 = M * [S1 > 0] * ṡ1 at every sample (the kink, a row all dropped), into s2 and through the smoothed loss.
    gen = torch.Generator().manual_seed(3)
    for name, s in net_crosscheck.regularised_inputs(torch.float64, torch.device("cpu"), gen).items():
        primals, (y, m), eps = s.args[:5], s.args[5:], s.kwargs["label_smoothing"]
        tangents = tuple(torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in primals)
        got = jvp(followed_by(TwoLayerNetFn.apply, m), primals, tangents)
        want = jvp(followed_by(reference_net_both, m), primals, tangents)
        assert_rel_close(got, want, 1e-10, f"{name}: (s2, x2)")
        got = jvp(followed_by(net_loss, y, m, eps), primals, tangents)
        want = jvp(followed_by(reference_net_loss, y, m, eps), primals, tangents)
        assert_rel_close(got, want, 1e-10, f"{name}: loss")


def test_a_smoothed_loss_jvp_without_its_eps_term_fails_jvp_against_f_cross_entropy(monkeypatch):
    # The jvp with - (eps / C) sum_j ṡ2_ij left out: L̇ = mean_i(sum_j P_ij ṡ2_ij - (1 - eps) ṡ2_{i,y_i}).
    right = SoftmaxCrossEntropyFn.jvp

    def wrong(ctx, s2_dot, y_dot, eps_dot):
        return right(ctx, s2_dot, y_dot, eps_dot) + ctx.eps * s2_dot.mean(1).mean()

    monkeypatch.setattr(SoftmaxCrossEntropyFn, "jvp", staticmethod(wrong))
    report = net_crosscheck.LOSS_SMOOTHED.check(checks=["jvp"])
    assert {(r.check, r.dtype) for r in report.failed()} == {("jvp", "float32"), ("jvp", "float64")}


def test_a_net_jvp_that_forgets_the_mask_fails_jvp_against_plain_torch(monkeypatch):
    # ẋ2 = [S1 > 0] * ṡ1 instead of M * [S1 > 0] * ṡ1 (the ctx as if no mask were given)
    right = TwoLayerNetFn.jvp

    class WithoutMask:
        def __init__(self, ctx):
            self.saved_tensors = (*ctx.saved_tensors[:4], None)

    monkeypatch.setattr(TwoLayerNetFn, "jvp", staticmethod(lambda ctx, *t: right(WithoutMask(ctx), *t)))
    report = net_crosscheck.NET_DROPOUT.check(checks=["jvp"])
    assert {(r.check, r.dtype) for r in report.failed()} == {("jvp", "float32"), ("jvp", "float64")}


# --------------------------------------------------------------------------------------------------- bad input


def test_a_tangent_of_another_shape_is_refused_by_forward_ad():
    primals, y, tangents = SAMPLES["general"]
    with pytest.raises(RuntimeError, match="different size"):
        jvp(of_input(two_layer_net, primals, 1), (primals[1],), (tangents[1][:, :-1],))


@pytest.mark.parametrize("i", range(5), ids=NAMES)
def test_a_tangent_of_another_dtype_or_device_is_refused_naming_it(i):
    primals, y, tangents = SAMPLES["general"]
    f = of_input(two_layer_net, primals, i)
    with pytest.raises(TypeError, match=rf"^{NAMES[i]}'s tangent: expected dtype torch.float64 .* got torch.float32"):
        jvp(f, (primals[i],), (tangents[i].float(),))
    with pytest.raises(ValueError, match=rf"^{NAMES[i]}'s tangent: expected a tensor on {NAMES[i]}'s device cpu"):
        jvp(f, (primals[i],), (tangents[i].to("meta"),))
    s2 = reference_net(*primals)
    with pytest.raises(TypeError, match="^s2's tangent: expected dtype torch.float64"):
        jvp(labelled(softmax_cross_entropy, y), (s2,), (s2.float(),))


def test_a_label_tangent_is_refused_by_forward_ad():
    primals, y, _ = SAMPLES["general"]
    s2 = reference_net(*primals)
    with pytest.raises(ValueError, match="Expected primal to be floating point"):
        jvp(lambda labels: softmax_cross_entropy(s2, labels), (y,), (torch.ones_like(y),))
    with fwAD.dual_level(), pytest.raises(ValueError, match="Expected primal to be floating point"):
        softmax_cross_entropy(s2, fwAD.make_dual(y, torch.ones_like(y)))


def test_a_tangent_on_the_dropout_mask_is_refused_naming_m():
    # the mask is not differentiated: a tangent given for it is refused, not silently dropped
    primals, _, _ = SAMPLES["general"]
    m = torch.ones(primals[0].shape[0], primals[1].shape[1], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^m: expected a dropout mask without a tangent"):
        jvp(lambda mask: two_layer_net(*primals, mask), (m,), (torch.ones_like(m),))
