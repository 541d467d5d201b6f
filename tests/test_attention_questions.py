"""The Attention chapter's graded questions: a correct solution (the plain formulas the references
avoid) earns full points, each usual mistake fails at least one case with a measured error, and
the references agree with computations done another way."""
import cmath
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from seqcourse.grading import check, get_question, question_ids, run_student, score
from seqcourse.grading.questions import attention
from seqcourse.grading.registry import Case
from seqcourse.models.online_softmax import online_softmax_update
from seqcourse.models.relative_positions import apply_rotary

from question_checks import assert_mistake_fails_exactly

pytestmark = pytest.mark.usefixtures("one_thread")

# ---- what a correct student writes ----------------------------------------------------------


def causal_attention(Q, K, V, *, scale=None, diagonal=0, dim=-1, after=False, stable=True, upper=False):
    """softmax(Q K^T / sqrt(d_k) + causal mask) V; the keyword arguments switch on the usual mistakes."""
    T, d_k = Q.shape[-2], Q.shape[-1]
    scores = Q @ K.transpose(-2, -1) / (math.sqrt(d_k) if scale is None else scale)  # (B, T, T)
    allowed = torch.ones(T, T, dtype=torch.bool).tril(diagonal)
    if upper:
        allowed = allowed.T
    if after:
        weights = torch.softmax(scores, dim) * allowed
    elif stable:
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim)
    else:
        e = torch.exp(scores) * allowed
        weights = e / e.sum(-1, keepdim=True)
    return weights @ V, weights


def split_heads(x, h):
    B, T, d = x.shape
    return x.view(B, T, h, d // h).transpose(1, 2)  # (B, h, T, d_k)


def merge_heads(x):
    B, h, T, d_k = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d_k)


def multi_head(x, W_q, W_k, W_v, W_o, n_heads, *, split=split_heads, merge=merge_heads, scale_model=False, transpose=True):
    h = int(n_heads)
    proj = (lambda W: x @ W.T) if transpose else (lambda W: x @ W)
    q, k, v = (split(proj(W), h) for W in (W_q, W_k, W_v))  # (B, h, T, d_k)
    d = x.shape[-1] if scale_model else q.shape[-1]
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1)
    out = merge(weights @ v)
    return out @ W_o.T if transpose else out @ W_o


def window_mask(T, window, *, low=1, two_sided=False, strict=False):
    i = torch.arange(int(T)).unsqueeze(1)
    j = torch.arange(int(T)).unsqueeze(0)
    upper = (j < i) if strict else (j <= i)
    if two_sided:
        upper = j - i < int(window)
    return ((j >= i - int(window) + low) & upper).float()


def bpe_merge(ids, V, *, tie="smallest", right_to_left=False, only_first=False):
    V = int(V)
    pairs = torch.stack([ids[:-1], ids[1:]], 1)  # (N-1, 2)
    counts = torch.zeros(V, V)
    counts.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs)), accumulate=True)
    if tie == "smallest":
        best = divmod(int(counts.flatten().argmax()), V)
    else:  # the first pair seen among the most frequent
        best = next(tuple(p) for p in pairs.tolist() if counts[p[0], p[1]] == counts.max())
    seq = ids.tolist()[::-1] if right_to_left else ids.tolist()
    want = best[::-1] if right_to_left else best
    merged, i, done = [], 0, False
    while i < len(seq):
        if not done and i + 1 < len(seq) and (seq[i], seq[i + 1]) == want:
            merged.append(V)
            i += 2
            done = only_first
        else:
            merged.append(seq[i])
            i += 1
    merged = merged[::-1] if right_to_left else merged
    return counts, torch.tensor(merged, dtype=torch.float32)


def rotary(x, positions, *, pairs="adjacent", exponent=lambda i, d: -2 * i / d, direction=1.0, swap=False,
           given_positions=True):
    """Rotary embedding with base 10000; the keyword arguments switch on the usual mistakes."""
    d = x.shape[-1]
    theta = torch.tensor([10000.0 ** exponent(i, d) for i in range(d // 2)], dtype=torch.float64)
    t = positions if given_positions else torch.arange(x.shape[-2])
    angle = direction * t.double().unsqueeze(1) * theta  # (T, d/2)
    cos, sin = angle.cos().float(), angle.sin().float()
    if swap:
        cos, sin = sin, cos
    if pairs == "adjacent":
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)
    a, b = x[..., : d // 2], x[..., d // 2:]  # the "rotate half" layout: feature i with i + d/2
    return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)


def online_update(m, l, o, scores, V, *, rescale_o=True, rescale_l=True, sign=1.0, block_max_only=False,
                  normalise=False, via_exp_m=False):
    """One block of the online softmax; the keyword arguments switch on the usual mistakes."""
    m_new = scores.amax(-1) if block_max_only else torch.maximum(m, scores.amax(-1))
    if via_exp_m:  # the same algebra through e^m: overflows once scores pass ~88 in float32
        l_new = (l * torch.exp(m) + torch.exp(scores).sum(-1)) / torch.exp(m_new)
        o_new = (o * torch.exp(m).unsqueeze(-1) + torch.exp(scores) @ V) / torch.exp(m_new).unsqueeze(-1)
        return m_new, l_new, o_new
    p = torch.exp(scores - m_new.unsqueeze(-1))
    alpha = torch.exp(sign * (m - m_new))
    l_new = (alpha * l if rescale_l else l) + p.sum(-1)
    o_new = (alpha.unsqueeze(-1) * o if rescale_o else o) + p @ V
    if normalise:
        o_new = o_new / l_new.unsqueeze(-1)
    return m_new, l_new, o_new


CORRECT = {
    "causal-attention": causal_attention,
    "multi-head-attention": multi_head,
    "sliding-window-mask": window_mask,
    "bpe-merge": bpe_merge,
    "rotary-embedding": rotary,
    "online-softmax-update": online_update,
}


def test_the_questions_are_registered_with_their_points():
    assert {q.id for q in attention.QUESTIONS} == set(CORRECT)
    assert set(CORRECT) <= set(question_ids())
    assert {q.id: q.points for q in attention.QUESTIONS} == {
        "causal-attention": 3, "multi-head-attention": 3, "sliding-window-mask": 2, "bpe-merge": 3,
        "rotary-embedding": 2, "online-softmax-update": 3}


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_correct_solution_passes_every_case(question_id, capsys):
    result = check(question_id, CORRECT[question_id], strict=True)
    question = get_question(question_id)
    assert result.passed and result.earned == question.points
    assert capsys.readouterr().out.strip().endswith(f"{len(question.cases)}/{len(question.cases)} cases passed — "
                                                    f"{question.points}/{question.points} points")


@pytest.mark.parametrize("question_id", sorted(CORRECT))
def test_case_inputs_are_deterministic_and_fresh(question_id):
    for case in get_question(question_id).cases:
        first, second = case.inputs(), case.inputs()
        assert tuple(first) == get_question(question_id).args
        for name in first:
            assert torch.equal(first[name], second[name])
            assert first[name].data_ptr() != second[name].data_ptr() or first[name].numel() == 0


# ---- the usual mistakes fail --------------------------------------------------------------------

MISTAKES = {
    # name: (question, function, the cases it must fail)
    "attention: no 1/sqrt(d_k)": ("causal-attention", lambda Q, K, V: causal_attention(Q, K, V, scale=1.0), {1, 2, 3, 4}),
    "attention: 1/d_k instead of 1/sqrt(d_k)": (
        "causal-attention", lambda Q, K, V: causal_attention(Q, K, V, scale=Q.shape[-1]), {1, 2, 3, 4}),
    "attention: diagonal masked too": ("causal-attention", lambda *a: causal_attention(*a, diagonal=-1), {1, 2, 3, 4}),
    "attention: one future key let in": ("causal-attention", lambda *a: causal_attention(*a, diagonal=1), {1, 2, 3, 4}),
    "attention: mask transposed": ("causal-attention", lambda *a: causal_attention(*a, upper=True), {1, 2, 3, 4}),
    "attention: softmax over the queries": ("causal-attention", lambda *a: causal_attention(*a, dim=-2), {1, 2, 3, 4}),
    "attention: mask after the softmax": ("causal-attention", lambda *a: causal_attention(*a, after=True), {1, 2, 3, 4}),
    "attention: exp without subtracting the largest score": (
        "causal-attention", lambda *a: causal_attention(*a, stable=False), {4}),
    "attention: no mask": ("causal-attention", lambda *a: causal_attention(*a, diagonal=100), {1, 2, 3, 4}),
    "heads: cut out of the wrong axis": (
        "multi-head-attention",
        lambda *a: multi_head(*a, split=lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1),
                              merge=lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
        {2, 3, 4},
    ),
    "heads: interleaved features": (
        "multi-head-attention",
        lambda *a: multi_head(*a, split=lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2),
                              merge=lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)),
        {2, 3, 4},
    ),
    "heads: merged without transposing back": (
        "multi-head-attention", lambda *a: multi_head(*a, merge=lambda x: x.reshape(x.shape[0], x.shape[2], -1)), {2, 3, 4}),
    "heads: scaled by sqrt(d_model)": ("multi-head-attention", lambda *a: multi_head(*a, scale_model=True), {2, 3, 4}),
    "heads: weights not transposed": ("multi-head-attention", lambda *a: multi_head(*a, transpose=False), {1, 2, 3, 4}),
    "window: one key too many": ("sliding-window-mask", lambda T, w: window_mask(T, w, low=0), {1, 2, 4}),
    "window: one key too few": ("sliding-window-mask", lambda T, w: window_mask(T, w, low=2), {1, 2, 4}),
    "window: two-sided band": ("sliding-window-mask", lambda T, w: window_mask(T, w, two_sided=True), {1, 3, 4}),
    "window: itself excluded": ("sliding-window-mask", lambda T, w: window_mask(T, w, strict=True), {1, 2, 3, 4}),
    "window: transposed": ("sliding-window-mask", lambda T, w: window_mask(T, w).T, {1, 3, 4}),
    "bpe: ties broken by first occurrence": ("bpe-merge", lambda ids, V: bpe_merge(ids, V, tie="first"), {2}),
    "bpe: merged right to left": ("bpe-merge", lambda ids, V: bpe_merge(ids, V, right_to_left=True), {1, 3}),
    "bpe: only the first occurrence merged": ("bpe-merge", lambda ids, V: bpe_merge(ids, V, only_first=True), {1, 2, 3, 5}),
    "bpe: counts transposed": ("bpe-merge", lambda ids, V: (bpe_merge(ids, V)[0].T, bpe_merge(ids, V)[1]), {1, 2, 3, 4, 5}),
    "rotary: pairs (i, i + d/2) instead of (2i, 2i + 1)": (
        "rotary-embedding", lambda x, t: rotary(x, t, pairs="half"), {2, 3, 4}),
    "rotary: frequency exponent -i/d": (
        "rotary-embedding", lambda x, t: rotary(x, t, exponent=lambda i, d: -i / d), {2, 3, 4}),
    "rotary: frequency exponent +2i/d": (
        "rotary-embedding", lambda x, t: rotary(x, t, exponent=lambda i, d: 2 * i / d), {2, 3, 4}),
    "rotary: turned the wrong way": ("rotary-embedding", lambda x, t: rotary(x, t, direction=-1.0), {1, 2, 3, 4}),
    "rotary: sine and cosine swapped": ("rotary-embedding", lambda x, t: rotary(x, t, swap=True), {1, 2, 3, 4}),
    "rotary: positions 0 ... T - 1 instead of the given ones": (
        "rotary-embedding", lambda x, t: rotary(x, t, given_positions=False), {1, 3, 4}),
    "online: old output not rescaled": ("online-softmax-update", lambda *a: online_update(*a, rescale_o=False), {1, 3, 4, 5, 6}),
    "online: normaliser not rescaled": ("online-softmax-update", lambda *a: online_update(*a, rescale_l=False), {1, 3, 4, 5, 6}),
    "online: nothing rescaled": (
        "online-softmax-update", lambda *a: online_update(*a, rescale_o=False, rescale_l=False), {1, 3, 4, 5, 6}),
    "online: rescaled by e^(m' - m)": ("online-softmax-update", lambda *a: online_update(*a, sign=-1.0), {1, 2, 3, 4, 5, 6}),
    "online: maximum of the block alone": (
        "online-softmax-update", lambda *a: online_update(*a, block_max_only=True), {4, 5}),
    "online: output normalised at every block": (
        "online-softmax-update", lambda *a: online_update(*a, normalise=True), {1, 2, 3, 4, 5, 6}),
    "online: the same algebra through e^m": ("online-softmax-update", lambda *a: online_update(*a, via_exp_m=True), {6}),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_usual_mistake_fails_its_cases(name):
    assert_mistake_fails_exactly(name, *MISTAKES[name])


def fresh_draw(question, seed):
    """The question with every case drawn again from another seed, as batch grading does to catch
    hard-coded answers: the random cases must still pass a correct solution and fail each mistake."""
    cases = tuple(Case(f"{case.name} [fresh draw]", case.build, seed=seed + i) for i, case in enumerate(question.cases))
    return dataclasses.replace(question, cases=cases)


FRESH = ("rotary-embedding", "online-softmax-update")


@pytest.mark.parametrize("seed", [101, 20_000, 987_654])
@pytest.mark.parametrize("question_id", FRESH)
def test_fresh_draws_pass_the_correct_solution_and_catch_every_mistake(question_id, seed):
    question = fresh_draw(get_question(question_id), seed)
    result = score(question, run_student(question, CORRECT[question_id]))
    assert result.passed, [c.message for c in result.cases]
    for name, (qid, fn, failing) in MISTAKES.items():
        if qid == question_id:
            result = score(question, run_student(question, fn))
            failed = {case.index for case in result.cases if not case.passed}
            assert failed == failing, (name, seed, failed)


# ---- the references agree with computations done another way -----------------------------------


@pytest.mark.parametrize("index", range(4))
def test_causal_reference_equals_torch_fused_attention(index):
    inputs = attention.CAUSAL_ATTENTION.cases[index].inputs()
    out, weights = attention.CAUSAL_ATTENTION.reference(*inputs.values())
    Q, K, V = (inputs[n].double() for n in ("Q", "K", "V"))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(Q, K, V, is_causal=True))
    assert torch.allclose(weights.sum(-1), torch.ones(()).double())
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))


def test_causal_worked_example_by_hand():
    out, weights = attention.CAUSAL_ATTENTION.reference(*attention.CAUSAL_ATTENTION.cases[0].inputs().values())
    # query 1 = (0, 2) sees keys (1, 0) and (1, 1): scores 0 and 2/sqrt(2)
    w = 1 / (1 + math.exp(math.sqrt(2)))
    torch.testing.assert_close(weights[0, 1, :2], torch.tensor([w, 1 - w], dtype=torch.float64))
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_large_score_case_overflows_float32_exp():
    inputs = attention.CAUSAL_ATTENTION.cases[3].inputs()
    scores = inputs["Q"] @ inputs["K"].transpose(-2, -1) / 2
    assert torch.isinf(torch.exp(scores)).any()


@pytest.mark.parametrize("index", range(4))
def test_multi_head_reference_equals_head_by_head_loop(index):
    inputs = attention.MULTI_HEAD_ATTENTION.cases[index].inputs()
    x, W_q, W_k, W_v, W_o = (inputs[n].double() for n in ("x", "W_q", "W_k", "W_v", "W_o"))
    h = int(inputs["n_heads"])
    d_k = x.shape[-1] // h
    heads = []
    for head in range(h):  # rows head*d_k ... of each projection belong to this head
        rows = slice(head * d_k, (head + 1) * d_k)
        q, k, v = x @ W_q[rows].T, x @ W_k[rows].T, x @ W_v[rows].T
        heads.append(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), -1) @ v)
    expected = torch.cat(heads, -1) @ W_o.T
    torch.testing.assert_close(attention.MULTI_HEAD_ATTENTION.reference(*inputs.values()), expected)


def test_window_reference_is_a_band_of_the_causal_mask():
    for case in attention.SLIDING_WINDOW_MASK.cases:
        T, w = (int(v) for v in case.inputs().values())
        expected = torch.ones(T, T).tril().triu(-(w - 1)).double()
        assert torch.equal(attention.SLIDING_WINDOW_MASK.reference(T, w), expected)
        assert torch.equal(attention.SLIDING_WINDOW_MASK.reference(T, w).sum(-1),
                           torch.tensor([min(i + 1, w) for i in range(T)], dtype=torch.float64))


def test_bpe_worked_example_is_the_textbook_one():
    counts, merged = attention.BPE_MERGE.reference(*attention.BPE_MERGE.cases[0].inputs().values())
    assert counts[0, 0] == 4 and counts.sum() == 10  # 'aa' four times among the 10 adjacent pairs
    assert "".join("abcdZ"[int(i)] for i in merged) == "ZabdZabac"
    counts, merged = attention.BPE_MERGE.reference(*attention.BPE_MERGE.cases[2].inputs().values())
    assert counts[0, 0] == counts[1, 2] == 4  # the tie that overlapping counts create
    assert "".join("abcZ"[int(i)] for i in merged) == "ZZabcbcbcbc"


def test_checking_leaves_the_global_torch_rng_untouched(capsys):
    """A check runs inside the student's notebook: drawing from the global generator there would
    change every random number the notebook draws after it."""
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    result = check("multi-head-attention", multi_head)
    capsys.readouterr()
    assert result.passed
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("index", range(4))
def test_rotary_reference_equals_the_rotation_in_seqcourse(index):
    inputs = attention.ROTARY_EMBEDDING.cases[index].inputs()
    expected = apply_rotary(inputs["x"].double(), inputs["positions"])
    torch.testing.assert_close(attention.ROTARY_EMBEDDING.reference(*inputs.values()), expected, rtol=0, atol=1e-13)


def test_rotary_worked_example_by_hand():
    got = attention.ROTARY_EMBEDDING.reference(*attention.ROTARY_EMBEDDING.cases[0].inputs().values())
    # (1, 0) at t = 0 stays, (1, 0) at t = 1 turns by 1 radian, (0, 2) at t = 3 by 3 radians
    turned = 2j * cmath.exp(3j)
    expected = [[1.0, 0.0], [math.cos(1), math.sin(1)], [turned.real, turned.imag]]
    torch.testing.assert_close(got[0], torch.tensor(expected, dtype=torch.float64))


def test_rotary_cases_have_positions_that_are_not_0_to_T():
    for seed in range(50):
        for index in (2, 3):
            case = attention.ROTARY_EMBEDDING.cases[index]
            positions = Case(case.name, case.build, seed=seed).inputs()["positions"]
            assert not torch.equal(positions, torch.arange(len(positions)))
            assert len(set(positions.tolist())) == len(positions) and positions.max() <= 90


@pytest.mark.parametrize("index", range(6))
def test_online_reference_equals_the_update_in_seqcourse(index):
    inputs = {k: v.double() for k, v in attention.ONLINE_SOFTMAX_UPDATE.cases[index].inputs().items()}
    expected = online_softmax_update(*inputs.values())
    for got, want in zip(attention.ONLINE_SOFTMAX_UPDATE.reference(*inputs.values()), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_online_worked_example_continues_to_the_softmax():
    """After the update, o / l is softmax([1, 3, 4, 0]) . [1, 2, 3, 4]: the two blocks together."""
    m, l, o = attention.ONLINE_SOFTMAX_UPDATE.reference(*attention.ONLINE_SOFTMAX_UPDATE.cases[0].inputs().values())
    weights = torch.softmax(torch.tensor([1.0, 3.0, 4.0, 0.0], dtype=torch.float64), 0)
    assert m.item() == 4.0
    assert (o / l.unsqueeze(-1)).item() == pytest.approx((weights @ torch.tensor([1.0, 2.0, 3.0, 4.0]).double()).item(), abs=1e-7)
    assert l.item() == pytest.approx(sum(math.exp(s - 4) for s in (1, 3, 4, 0)), abs=1e-7)


def test_online_cases_are_built_as_their_names_say():
    cases = attention.ONLINE_SOFTMAX_UPDATE.cases
    for seed in range(30):
        draw = {i: Case(cases[i].name, cases[i].build, seed=seed).inputs() for i in range(1, 6)}
        rises = {i: draw[i]["scores"].amax(-1) > draw[i]["m"] for i in draw}
        assert torch.isinf(draw[1]["m"]).all() and (draw[1]["l"] == 0).all()
        assert rises[2].all() and rises[5].all()
        assert rises[3].tolist() == [[True, False, True, False, False]]
        assert torch.isinf(draw[4]["scores"][0, 0]).all() and torch.isinf(draw[4]["scores"]).any(-1).any()
        assert torch.isfinite(draw[4]["m"]).all()
        assert torch.isinf(torch.exp(draw[5]["scores"])).any()  # float32's exp overflows here
