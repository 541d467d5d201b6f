"""seqcourse.measure.normalization: LayerNorm's Jacobian by hand vs autograd, block Jacobians of pre- and
post-norm blocks, per-layer gradient norms, the warm-up schedule and the training helper."""
import math
import warnings

import pytest
import torch
from torch import nn

from seqcourse import seed_everything
from seqcourse.grading.check import check
from seqcourse.models.norm import LayerNorm
from seqcourse.models.transformer import Block
from seqcourse.measure.normalization import (
    LayerGradients,
    block_jacobian,
    depth_sweep,
    direction_share,
    jacobian,
    last_block_probe,
    layer_gradient_norms,
    layer_norm_jacobian,
    singular_values,
    stack_gradient_norms,
    train_char_lm,
    warmup_factor,
    with_warmup,
)
from seqcourse.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


class Scale(nn.Module):
    """y = s x with one learnable scalar s: a block whose gradients are known in closed form."""

    def __init__(self, s: float):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(s))

    def forward(self, x):
        return self.s * x


class TinyPreNorm(nn.Module):
    """A small block of our own, x + W_2 relu(W_1 LN(x)): the analysis must not depend on Block."""

    def __init__(self, d: int):
        super().__init__()
        self.ln = LayerNorm(d)
        self.f = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x):
        return x + self.f(self.ln(x))


# ---- the LayerNorm Jacobian ------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_layer_norm_jacobian_formula_matches_autograd_of_torch_layer_norm(eps):
    g = torch.Generator().manual_seed(0)
    d = 7
    x = 3 * torch.randn(d, generator=g, dtype=torch.float64) + 1
    reference = nn.LayerNorm(d, eps=eps).double()
    with torch.no_grad():
        reference.weight.copy_(torch.randn(d, generator=g, dtype=torch.float64))
        reference.bias.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    expected = torch.autograd.functional.jacobian(reference, x)  # (d, d), independent of our code
    J = layer_norm_jacobian(x, reference.weight.detach(), eps=eps)
    assert J.shape == (d, d) and J.dtype == torch.float64
    torch.testing.assert_close(J, expected, rtol=0, atol=1e-12)


def test_layer_norm_jacobian_removes_the_mean_and_the_x_hat_direction():
    x = torch.tensor([0.5, -1.0, 2.0, 3.5, -0.25, 1.0], dtype=torch.float64)
    d, eps = x.numel(), 1e-5
    sigma = math.sqrt(x.var(unbiased=False).item() + eps)
    J = layer_norm_jacobian(x, eps=eps)
    s = singular_values(J)
    torch.testing.assert_close(s[: d - 2], torch.full((d - 2,), 1 / sigma, dtype=torch.float64))  # d-2 equal to 1/sigma
    assert s[-1] < 1e-12 and s[-2] < 1e-5 / sigma  # the mean direction exactly, x-hat up to eps
    torch.testing.assert_close(J @ torch.ones(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64))


def test_layer_norm_jacobian_of_our_layer_norm_by_autograd_helper():
    seed_everything(1)
    ln = LayerNorm(5)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2.0)
    x = torch.randn(5)
    torch.testing.assert_close(jacobian(ln, x), layer_norm_jacobian(x, ln.weight.detach()), rtol=1e-5, atol=1e-6)


# ---- block Jacobians -------------------------------------------------------------------------


def test_block_jacobian_of_a_linear_map_is_block_diagonal():
    seed_everything(2)
    T, d = 3, 4
    linear = nn.Linear(d, d)
    J = block_jacobian(linear, torch.randn(T, d))
    expected = torch.kron(torch.eye(T), linear.weight.detach())  # token t only sees token t
    assert J.shape == (T * d, T * d)
    torch.testing.assert_close(J, expected)


def _silence_branches(block: Block) -> None:
    """Zero the output projections of attention and MLP: both residual branches become F = 0."""
    with torch.no_grad():
        block.attn.W_o.zero_()
        block.attn.b_o.zero_()
        block.mlp[2].weight.zero_()
        block.mlp[2].bias.zero_()


def test_pre_norm_block_with_silent_branches_is_the_identity():
    seed_everything(3)
    block = Block(8, 2, norm="pre").double()
    _silence_branches(block)
    J = block_jacobian(block, torch.randn(3, 8, dtype=torch.float64))
    torch.testing.assert_close(J, torch.eye(24, dtype=torch.float64))


def test_post_norm_block_with_silent_branches_is_two_layer_norm_jacobians():
    seed_everything(4)
    T, d = 3, 8
    block = Block(d, 2, norm="post").double()
    _silence_branches(block)
    x = torch.randn(T, d, dtype=torch.float64)
    J = block_jacobian(block, x)
    # y = LN_2(LN_1(x)) token by token: J = blockdiag_t(J_LN2(LN_1(x_t)) J_LN1(x_t))
    expected = torch.zeros(T * d, T * d, dtype=torch.float64)
    for t in range(T):
        h = block.ln_1(x[t])
        J_t = layer_norm_jacobian(h.detach(), block.ln_2.weight.detach()) @ layer_norm_jacobian(x[t], block.ln_1.weight.detach())
        expected[t * d:(t + 1) * d, t * d:(t + 1) * d] = J_t
    torch.testing.assert_close(J, expected, rtol=1e-7, atol=1e-9)


def test_spectra_at_initialisation_pre_keeps_every_direction_post_drops_two_per_token():
    T, d = 4, 16
    x = torch.randn(T, d, generator=torch.Generator().manual_seed(5))
    spectra = {}
    for norm in ("pre", "post"):
        seed_everything(0)
        spectra[norm] = singular_values(block_jacobian(Block(d, 2, norm=norm), x))
    assert (spectra["post"] < 1e-3).sum() == 2 * T  # the last LayerNorm: mean and scale of each token
    assert spectra["pre"].min() > 0.1  # the identity path: no direction is lost


def test_jacobian_helpers_reject_bad_input():
    with pytest.raises(ValueError, match=r"shape \(T, d\)"):
        block_jacobian(nn.Identity(), torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        block_jacobian(lambda z: z, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"shape \(d=3\)"):
        layer_norm_jacobian(torch.zeros(3), torch.ones(4))
    with pytest.raises(TypeError, match="callable"):
        jacobian("f", torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(m, n\)"):
        singular_values(torch.zeros(3))


# ---- gradient norms per layer ----------------------------------------------------------------


def test_layer_gradient_norms_closed_form_for_scaling_blocks(device):
    # x_l = c^l x_0, so dloss/dx_l = c^(L-l) dloss/dx_L, and dloss/ds_l = <dloss/dx_{l+1}, x_l>
    # = c^(L-1) <dloss/dx_L, x_0>: the same for every block.
    c, L = 1.5, 5
    blocks = [Scale(c).to(device) for _ in range(L)]
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(6)).to(device)
    result = layer_gradient_norms(blocks, x, seed=3)
    assert isinstance(result, LayerGradients) and result.inputs.shape == (L,) and result.parameters.shape == (L,)
    ratios = result.inputs[:-1] / result.inputs[1:]
    torch.testing.assert_close(ratios, torch.full((L - 1,), c))
    torch.testing.assert_close(result.parameters, result.parameters[0].expand(L))
    assert result.parameters[0] > 0
    assert all(b.s.grad is None for b in blocks)  # no gradient left behind


def test_layer_gradient_norms_agree_with_autograd_on_own_blocks(device):
    seed_everything(7)
    d = 6
    blocks = [TinyPreNorm(d).to(device) for _ in range(3)]
    final = LayerNorm(d).to(device)
    x = torch.randn(2, 5, d, device=device)
    result = layer_gradient_norms(blocks, x, final_norm=final, num_classes=4, seed=9)
    # the same loss, rebuilt independently: readout and labels from a generator seeded the same way
    g = torch.Generator().manual_seed(9)
    W_r = (torch.randn(4, d, generator=g) / math.sqrt(d)).to(device)
    labels = torch.randint(0, 4, (2, 5), generator=g).to(device)
    x0 = x.clone().requires_grad_()
    hs = [x0]
    for b in blocks:
        hs.append(b(hs[-1]))
    loss = nn.functional.cross_entropy((final(hs[-1]) @ W_r.T).reshape(10, 4), labels.reshape(-1))
    grads = torch.autograd.grad(loss, hs[:-1] + [p for b in blocks for p in b.parameters()])
    inputs = torch.stack([g_.norm() for g_ in grads[:3]]).cpu()
    n = len(list(blocks[0].parameters()))
    params = torch.stack([torch.sqrt(sum(g_.pow(2).sum() for g_ in grads[3 + i * n:3 + (i + 1) * n])) for i in range(3)]).cpu()
    torch.testing.assert_close(result.inputs, inputs, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result.parameters, params, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for m in blocks + [final] for p in m.parameters())  # none left behind


def test_stack_gradient_norms_is_reproducible_and_rms_over_repeats():
    one = stack_gradient_norms("post", 3, d_model=8, n_heads=2, seq_len=4, batch_size=2, seed=1)
    again = stack_gradient_norms("post", 3, d_model=8, n_heads=2, seq_len=4, batch_size=2, seed=1)
    torch.testing.assert_close(one.parameters, again.parameters, rtol=0, atol=0)
    two = stack_gradient_norms("post", 3, d_model=8, n_heads=2, seq_len=4, batch_size=2, seed=2)
    both = stack_gradient_norms("post", 3, d_model=8, n_heads=2, seq_len=4, batch_size=2, seed=1, repeats=2)
    torch.testing.assert_close(both.parameters, ((one.parameters**2 + two.parameters**2) / 2).sqrt())
    torch.testing.assert_close(both.inputs, ((one.inputs**2 + two.inputs**2) / 2).sqrt())


def test_stack_gradient_norms_builds_blocks_with_the_factory_and_the_final_norm():
    built = []

    def make_block(norm):
        built.append(norm)
        return TinyPreNorm(6)

    result = stack_gradient_norms("pre", 4, d_model=6, seq_len=3, batch_size=2, make_block=make_block)
    assert built == ["pre"] * 4 and result.parameters.shape == (4,)
    assert torch.isfinite(result.parameters).all() and (result.parameters > 0).all()


def test_depth_sweep_has_every_norm_and_depth():
    sweep = depth_sweep((2, 3), ("pre", "post"), d_model=8, n_heads=2, seq_len=4, batch_size=2)
    assert sorted(sweep) == [("post", 2), ("post", 3), ("pre", 2), ("pre", 3)]
    assert sweep[("pre", 3)].inputs.shape == (3,)


def test_depth_sweep_reads_generators_once_and_checks_every_norm_first():
    kwargs = dict(d_model=8, n_heads=2, seq_len=4, batch_size=2)
    sweep = depth_sweep((d for d in (2, 3)), iter(("pre", "post")), **kwargs)
    assert sorted(sweep) == [("post", 2), ("post", 3), ("pre", 2), ("pre", 3)]
    built = []
    with pytest.raises(ValueError, match="norm must be 'pre'"):
        depth_sweep((2,), ("pre", "middle"), make_block=lambda n: built.append(n) or TinyPreNorm(8), **kwargs)
    assert built == []  # rejected before any stack was built
    with pytest.raises(ValueError, match="each depth"):
        depth_sweep((2, 0), ("pre",), **kwargs)


def test_direction_share_is_one_for_parallel_vectors_and_one_over_d_for_orthogonal_ones():
    v = torch.randn(5)
    parallel = torch.stack([c * v for c in (1.0, -2.0, 0.5, 3.0)]).reshape(2, 2, 5)
    assert direction_share(parallel) == pytest.approx(1.0)
    assert direction_share(torch.eye(6).reshape(2, 3, 6)) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match=r"\(\.\.\., d\)"):
        direction_share(torch.zeros(3))


def test_last_block_probe_gradient_is_the_stacks_last_entry_and_fresh_input_keeps_the_scale():
    """The probe's own-input gradient (a backward through the last block alone, from x_{L-1}
    recomputed) equals the full stack's backward for that block; the fresh input has the same
    per-position mean and scale, and for a post-norm stack (x_{L-1} standardized) the variance of
    the output is 1."""
    kwargs = dict(d_model=8, n_heads=2, seq_len=4, batch_size=3, seed=2, repeats=2)
    for norm in ("pre", "post"):
        probe = last_block_probe(norm, 4, **kwargs)
        stack = stack_gradient_norms(norm, 4, **kwargs)
        assert probe.gradient == pytest.approx(stack.parameters[-1].item(), rel=1e-5)
        assert probe.gradient_fresh > 0 and 0 < probe.share <= 1
    assert last_block_probe("post", 3, **kwargs).stream_variance == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="norm must be 'pre'"):
        last_block_probe("middle", 3)


def test_last_block_probe_collapse_in_a_deep_post_norm_stack():
    """The chapter's finding at a small size: with depth the last block's input collapses toward one
    direction and its gradient grows, while the same block fed fresh input keeps its gradient."""
    shallow, deep = (last_block_probe("post", L, repeats=2) for L in (4, 32))
    assert deep.share > shallow.share + 0.15
    assert deep.gradient > 1.5 * shallow.gradient
    assert abs(deep.gradient_fresh - shallow.gradient_fresh) < 0.2 * shallow.gradient_fresh


def test_gradient_helpers_reject_bad_arguments():
    with pytest.raises(ValueError, match="norm must be 'pre'"):
        stack_gradient_norms("middle", 2)
    with pytest.raises(ValueError, match="depth"):
        stack_gradient_norms("pre", 0)
    with pytest.raises(TypeError, match="make_block must be callable"):
        stack_gradient_norms("pre", 2, make_block="block")
    with pytest.raises(ValueError, match="batch_size"):
        stack_gradient_norms("pre", 2, batch_size=0)
    with pytest.raises(TypeError, match="seq_len"):
        stack_gradient_norms("pre", 2, seq_len=4.0)
    with pytest.raises(TypeError, match="final_norm"):
        layer_gradient_norms([nn.Identity()], torch.zeros(1, 2, 3), final_norm="layer norm")
    with pytest.raises(TypeError, match="non-empty sequence"):
        layer_gradient_norms([], torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(B, T, d\)"):
        layer_gradient_norms([nn.Identity()], torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"must map \(B, T, d\)"):
        layer_gradient_norms([nn.Linear(3, 2)], torch.zeros(1, 2, 3))


# ---- warm-up and training --------------------------------------------------------------------


def test_warmup_factor_is_linear_then_one():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_factor(0, -1)


def test_with_warmup_drives_the_learning_rate_inside_train(device):
    model = nn.Linear(2, 1)
    optimizer = with_warmup(torch.optim.SGD(model.parameters(), lr=0.1), 4)
    seen = []

    def loss_fn(m, x):
        seen.append(optimizer.param_groups[0]["lr"])
        return m(x).pow(2).mean()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "lr_scheduler.step() before optimizer.step()"
        train(model, lambda step: torch.ones(3, 2), loss_fn, steps=6, optimizer=optimizer, device=device,
              progress=False)
    assert seen == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="already has a warm-up"):
        with_warmup(optimizer, 2)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        with_warmup(model, 2)


class Bigram(nn.Module):
    def __init__(self, V):
        super().__init__()
        self.table = nn.Embedding(V, V)

    def forward(self, ids):
        return self.table(ids), None  # like LanguageModel: (logits, state)


def test_train_char_lm_learns_and_repeats_itself(device):
    ids = torch.tensor([0, 1, 2, 3] * 50)
    runs = []
    for _ in range(2):
        seed_everything(0)
        runs.append(train_char_lm(Bigram(4), ids, steps=30, lr=0.1, warmup_steps=5, seq_len=8, batch_size=4,
                                  device=device))
    assert runs[0].losses == runs[1].losses  # the same batches and updates
    assert len(runs[0].losses) == 30
    assert runs[0].losses[-1] < 0.2 * runs[0].losses[0]  # a deterministic cycle is learnable
    with pytest.raises(TypeError, match="long"):
        train_char_lm(Bigram(4), ids.float(), steps=1, lr=0.1)


# ---- graded questions: the solutions pass, the usual mistakes fail -----------------------------


def _layer_norm(x, weight, bias, eps, unbiased=False, eps_outside=False):
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=unbiased, keepdim=True)
    s = torch.sqrt(var) + eps if eps_outside else torch.sqrt(var + eps)
    return (x - mu) / s * weight + bias


def _ln_jacobian(x, weight, eps, with_x_hat=True, with_mean=True):
    d = x.shape[0]
    s = torch.sqrt(x.var(unbiased=False) + eps)
    x_hat = (x - x.mean()) / s
    bracket = torch.eye(d) - (1.0 / d if with_mean else 0.0) - (torch.outer(x_hat, x_hat) / d if with_x_hat else 0.0)
    return weight.unsqueeze(1) / s * bracket


def _block(x, ln_weight, ln_bias, W_1, b_1, W_2, b_2, placement="pre", residual=True):
    def F(u):
        return torch.relu(u @ W_1.T + b_1) @ W_2.T + b_2

    if placement == "post":
        return _layer_norm(x + F(x), ln_weight, ln_bias, 1e-5)
    out = F(_layer_norm(x, ln_weight, ln_bias, 1e-5) if placement == "pre" else x)
    return x + out if residual else out


@pytest.mark.parametrize("question, solution", [
    ("layer-norm", _layer_norm),
    ("layer-norm-jacobian", _ln_jacobian),
    ("pre-norm-block", _block),
])
def test_reference_solutions_pass(question, solution, capsys):
    result = check(question, solution, strict=False)
    assert result.passed, capsys.readouterr().out


def _one_pass_layer_norm(x, weight, bias, eps):
    mu = x.mean(-1, keepdim=True)
    var = (x * x).mean(-1, keepdim=True) - mu * mu  # E[x^2] - mu^2: correct, prone to cancellation
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def test_one_pass_variance_is_a_correct_answer(capsys):
    result = check("layer-norm", _one_pass_layer_norm, strict=False)
    assert result.passed, capsys.readouterr().out


def _block_without_eps(x, ln_weight, ln_bias, W_1, b_1, W_2, b_2):
    u = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True) * ln_weight + ln_bias
    return x + torch.relu(u @ W_1.T + b_1) @ W_2.T + b_2


@pytest.mark.parametrize("question, mistake, failing", [
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x, w, b, eps, unbiased=True), {1, 2, 3, 4, 5}),
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x, w, b, eps, eps_outside=True), {4, 5}),
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x, w, b, 0.0), {2, 3, 4, 5}),
    # statistics over T instead of d (weight and bias still along d)
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x.transpose(1, 2), w[:, None], b[:, None], eps).transpose(1, 2),
     {1, 2, 3, 4, 5}),
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x, w, 0.0, eps), {2, 3, 4, 5}),
    ("layer-norm", lambda x, w, b, eps: _layer_norm(x, 1.0, b, eps), {2, 3, 4, 5}),
    ("layer-norm-jacobian", lambda x, w, eps: _ln_jacobian(x, w, eps, with_x_hat=False), {1, 2, 3, 4}),
    ("layer-norm-jacobian", lambda x, w, eps: _ln_jacobian(x, w, eps, with_mean=False), {1, 2, 3, 4}),
    ("layer-norm-jacobian", lambda x, w, eps: _ln_jacobian(x, w, eps).T, {2, 3, 4}),
    ("layer-norm-jacobian", lambda x, w, eps: _ln_jacobian(x, w, 0.0), {3}),
    ("pre-norm-block", lambda *a: _block(*a, placement="post"), {1, 2, 3, 4, 5}),
    ("pre-norm-block", lambda *a: _block(*a, residual=False), {1, 2, 3, 4, 5}),
    ("pre-norm-block", lambda *a: _block(*a, placement="none"), {2, 3, 4, 5}),
    ("pre-norm-block", lambda x, lw, lb, W_1, b_1, W_2, b_2: _block(x, lw, lb, W_1.T, b_1, W_2.T, b_2), {2, 3, 4, 5}),
    ("pre-norm-block", _block_without_eps, {5}),
])
def test_usual_mistakes_fail_their_cases(question, mistake, failing, capsys):
    result = check(question, mistake, strict=False)
    failed = {case.index for case in result.cases if not case.passed}
    assert result.attempted and failed == failing, (failed, capsys.readouterr().out)
