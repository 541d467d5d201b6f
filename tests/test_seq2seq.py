"""Seq2Seq against references built from torch.nn layers with copied weights (no attention, dot and
additive attention), padding handled exactly, greedy decoding against teacher forcing on its own
output, the loss and exact match, input checks, and that it learns a short reversal."""
import pytest
import torch

from seqcourse.models.gated import copy_gru_from_torch, copy_lstm_from_torch
from seqcourse.models.rnn import copy_rnn_from_torch
from seqcourse.models.seq2seq import Seq2Seq, exact_match, seq2seq_loss
from seqcourse.data.tasks import EOS, PAD, reverse_task
from seqcourse.train import train

from greedy_check import assert_greedy_is_teacher_forcing

pytestmark = pytest.mark.usefixtures("one_thread")

V, E, H = 9, 5, 6
F64 = torch.float64
TORCH = {"rnn": (torch.nn.RNN, copy_rnn_from_torch), "gru": (torch.nn.GRU, copy_gru_from_torch),
         "lstm": (torch.nn.LSTM, copy_lstm_from_torch)}


def _model_with_torch_twins(cell, attention, device, num_layers=1):
    """Our model plus torch.nn encoder/decoder layers whose weights we copied into it."""
    torch.manual_seed(0)
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H, cell=cell, attention=attention, num_layers=num_layers).to(device, F64)
    torch_class, copy = TORCH[cell]
    twins = []
    for ours in (model.encoder, model.decoder):
        theirs = torch_class(ours.input_size, H, num_layers, batch_first=True).to(device, F64)
        copy(ours, theirs)
        twins.append(theirs)
    return model, twins[0], twins[1]


def _batch(device, n=4, length=5, min_length=None, seed=0):
    src, tgt_in, tgt_out = reverse_task(n, length, V, min_length=min_length,
                                        generator=torch.Generator().manual_seed(seed))
    return src.to(device), tgt_in.to(device), tgt_out.to(device)


def _top(state):
    return state[0][-1] if isinstance(state, tuple) else state[-1]


def _readout(model, s, c):
    return torch.cat([s, c], dim=-1) @ model.W_o.T + model.b_o


def _encode_each(model, enc, src):
    """torch encoder on each sequence's unpadded prefix: memory (B, S, H) zero at PAD, states per row."""
    memory, states = torch.zeros(*src.shape, H, dtype=F64, device=src.device), []
    for b, row in enumerate(src):
        n = int((row != PAD).sum())
        out, state = enc(model.src_embed(row[:n])[None])
        memory[b, :n] = out[0]
        states.append(state)
    return memory, states


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_no_attention_matches_torch_layers(cell, num_layers, device):
    model, enc, dec = _model_with_torch_twins(cell, None, device, num_layers)
    src, tgt_in, _ = _batch(device)
    out, state = enc(model.src_embed(src))  # every sequence has the full length here
    c = _top(state)  # h_S, the one context vector
    e = model.tgt_embed(tgt_in)
    dec_out, _ = dec(torch.cat([e, c[:, None].expand(-1, e.shape[1], -1)], dim=-1), state)
    expected = _readout(model, dec_out, c[:, None].expand_as(dec_out))
    torch.testing.assert_close(model(src, tgt_in), expected)
    memory, enc_state = model.encode(src)
    torch.testing.assert_close(memory, out)
    torch.testing.assert_close(_top(enc_state), c)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_dot_attention_matches_a_batched_formula_with_padding(cell, device):
    model, enc, dec = _model_with_torch_twins(cell, "dot", device)
    src, tgt_in, _ = _batch(device, n=5, length=6, min_length=2, seed=3)
    assert (src == PAD).any()
    memory, states = _encode_each(model, enc, src)
    logits, alpha = [], []
    for b in range(src.shape[0]):
        s, _ = dec(model.tgt_embed(tgt_in[b])[None], states[b])  # (1, T, H): the decoder ignores attention
        scores = s[0] @ memory[b].T  # (T, S): s_t · h_j
        scores = scores.masked_fill(src[b] == PAD, float("-inf"))
        a = scores.softmax(-1)
        alpha.append(a)
        logits.append(_readout(model, s[0], a @ memory[b]))
    got_logits, got_alpha = model(src, tgt_in, return_attention=True)
    torch.testing.assert_close(got_logits, torch.stack(logits))
    torch.testing.assert_close(got_alpha, torch.stack(alpha))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_additive_attention_matches_a_stepwise_reference_with_padding(cell, device):
    model, enc, dec = _model_with_torch_twins(cell, "additive", device)
    src, tgt_in, _ = _batch(device, n=4, length=5, min_length=1, seed=5)
    memory, states = _encode_each(model, enc, src)
    W_q, W_k, v = model.W_q.weight, model.W_k.weight, model.v
    for b in range(src.shape[0]):
        state, logits, alpha = states[b], [], []
        for y_prev in tgt_in[b]:
            q = _top(state)[0]  # s_{t-1}
            scores = torch.stack([v @ torch.tanh(W_q @ q + W_k @ h_j) for h_j in memory[b]])
            a = scores.masked_fill(src[b] == PAD, float("-inf")).softmax(-1)
            c = a @ memory[b]
            s, state = dec(torch.cat([model.tgt_embed(y_prev), c])[None, None], state)
            logits.append(_readout(model, s[0, 0], c))
            alpha.append(a)
        got_logits, got_alpha = model(src[b:b + 1], tgt_in[b:b + 1], return_attention=True)
        torch.testing.assert_close(got_logits[0], torch.stack(logits))
        torch.testing.assert_close(got_alpha[0], torch.stack(alpha))


@pytest.mark.parametrize("attention", [None, "additive", "dot"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_padding_gives_the_same_result_as_the_unpadded_sequence(attention, cell, device):
    torch.manual_seed(1)
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H, cell=cell, attention=attention).to(device, F64)
    src, tgt_in, _ = _batch(device, n=6, length=7, min_length=1, seed=7)
    batched = model(src, tgt_in)
    for b, row in enumerate(src):
        n = int((row != PAD).sum())
        torch.testing.assert_close(batched[b], model(row[None, :n], tgt_in[b:b + 1])[0])
    memory, _ = model.encode(src)
    assert (memory[src == PAD] == 0).all()
    if attention is not None:
        _, alpha = model(src, tgt_in, return_attention=True)
        assert alpha.shape == (*tgt_in.shape, src.shape[1])
        assert (alpha.masked_select((src == PAD)[:, None, :]) == 0).all()
        torch.testing.assert_close(alpha.sum(-1), torch.ones(tgt_in.shape, dtype=F64, device=device))


@pytest.mark.parametrize("attention", [None, "dot", "additive"])
def test_greedy_is_teacher_forcing_on_its_own_output(attention, device):
    torch.manual_seed(2)
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H, cell="gru", attention=attention).to(device, F64)
    with torch.no_grad():
        model.b_o[EOS] += 0.5  # make an EOS likely somewhere, so the PAD-after-EOS rule is exercised
    src, _, _ = _batch(device, n=16, length=6, min_length=1, seed=9)
    pred, tgt_in, after_eos = assert_greedy_is_teacher_forcing(model, src, 8)
    if attention is not None:
        ids, alpha = model.greedy(src, 8, return_attention=True)
        assert torch.equal(ids, pred) and alpha.shape == (16, 8, src.shape[1])
        # rows up to the first EOS read the same inputs (later ones read greedy's own raw argmax)
        torch.testing.assert_close(alpha[~after_eos], model(src, tgt_in, return_attention=True)[1][~after_eos])


def test_loss_is_the_mean_over_non_pad_targets(device):
    torch.manual_seed(0)
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H).to(device, F64)
    src, tgt_in, tgt_out = _batch(device, n=5, length=6, min_length=1)
    logits = model(src, tgt_in)
    keep = tgt_out != PAD
    by_hand = -logits.log_softmax(-1).gather(-1, tgt_out[..., None])[..., 0][keep].mean()
    torch.testing.assert_close(seq2seq_loss(model, src, tgt_in, tgt_out), by_hand)
    assert not keep.all()


def test_exact_match_counts_only_whole_sequences():
    target = torch.tensor([[5, 4, EOS, PAD], [5, 4, EOS, PAD], [5, 4, EOS, PAD], [3, EOS, PAD, PAD]])
    predicted = torch.tensor([[5, 4, EOS], [5, 3, EOS], [5, 4, 4], [3, EOS, PAD]])
    assert exact_match(predicted, target).tolist() == [True, False, False, True]
    longer = torch.tensor([[5, 4, EOS, PAD, PAD, PAD]])
    assert exact_match(longer, target[:1]).tolist() == [True]
    assert exact_match(torch.tensor([[5, 4, EOS, 3, PAD]]), target[:1]).tolist() == [False]


def test_learns_to_reverse_short_sequences():
    torch.manual_seed(0)
    model = Seq2Seq(7, 7, embed_size=8, hidden_size=32, cell="gru")
    g = torch.Generator().manual_seed(0)
    history = train(model, lambda step: reverse_task(32, 3, 7, generator=g), seq2seq_loss,
                    steps=150, lr=1e-2, progress=False, device="cpu")
    src, _, tgt_out = reverse_task(200, 3, 7, generator=torch.Generator().manual_seed(1))
    assert history.losses[-1] < 0.2 * history.losses[0]
    assert exact_match(model.greedy(src, 4), tgt_out).float().mean() > 0.95


def test_bad_arguments_raise_clear_errors():
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H)
    src, tgt_in, _ = reverse_task(2, 4, V, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="cell must be one of"):
        Seq2Seq(V, V, embed_size=E, hidden_size=H, cell="transformer")
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(V, V, embed_size=E, hidden_size=H, attention="multiplicative")
    with pytest.raises(ValueError, match="no attention weights"):
        model(src, tgt_in, return_attention=True)
    with pytest.raises(ValueError, match="no attention weights"):
        model.greedy(src, 4, return_attention=True)
    with pytest.raises(ValueError, match="right padding"):
        model(torch.tensor([[4, PAD, 5]]), tgt_in[:1])
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.tensor([[PAD, PAD]]), tgt_in[:1])
    with pytest.raises(ValueError, match=r"token ids in \[0, 8\]"):
        model(torch.tensor([[4, 9]]), tgt_in[:1])
    with pytest.raises(TypeError, match="long"):
        model(src.float(), tgt_in)
    with pytest.raises(ValueError, match="tgt_in must have shape"):
        model(src, tgt_in[:1])
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        model.greedy(src, 0)


def test_loss_and_exact_match_check_their_targets():
    """Wrong shape, device or ids in tgt_out, and an all-PAD target (whose mean would be NaN), raise
    clear errors; exact_match needs one device and one batch size."""
    model = Seq2Seq(V, V, embed_size=E, hidden_size=H)
    src, tgt_in, tgt_out = reverse_task(2, 4, V, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(seq2seq_loss(model, src, tgt_in, tgt_out))
    with pytest.raises(ValueError, match=r"tgt_out must have the shape of tgt_in \(B, T\) = \(2, 5\); got \(2, 4\)"):
        seq2seq_loss(model, src, tgt_in, tgt_out[:, :-1])
    with pytest.raises(ValueError, match="tgt_out is on device meta"):
        seq2seq_loss(model, src, tgt_in, tgt_out.to("meta"))
    with pytest.raises(ValueError, match=r"tgt_out must hold token ids in \[0, 8\]"):
        seq2seq_loss(model, src, tgt_in, torch.full_like(tgt_out, V))
    with pytest.raises(ValueError, match="every position of tgt_out is PAD=0"):
        seq2seq_loss(model, src, tgt_in, torch.full_like(tgt_out, PAD))
    with pytest.raises(ValueError, match="same device; got cpu and meta"):
        exact_match(tgt_out, tgt_out.to("meta"))
    with pytest.raises(ValueError, match=r"target must be a long tensor of shape \(B=2, T\)"):
        exact_match(tgt_out, tgt_out[:1])
