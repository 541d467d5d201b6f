"""The encoder–decoder Transformer: its decoder block against torch.nn.TransformerDecoderLayer and its
encoder block against TransformerEncoderLayer (weights copied, outputs and gradients), the whole model
against torch.nn.Transformer, causality, padding, greedy decoding against teacher forcing on its own
output, the cross-attention weights, input checks, and that it learns a short reversal."""
import pytest
import torch
from torch import nn

from seqcourse.models.attention import causal_mask, padding_mask
from seqcourse.models.encoder_decoder import (DecoderBlock, TransformerSeq2Seq, copy_decoder_layer_from_torch,
                                              copy_encoder_layer_from_torch)
from seqcourse.models.seq2seq import exact_match, seq2seq_loss
from seqcourse.models.transformer import Block
from seqcourse.data.tasks import EOS, PAD, reverse_task
from seqcourse.train import train

from greedy_check import assert_greedy_is_teacher_forcing

pytestmark = pytest.mark.usefixtures("one_thread")

V, D, NH, L = 9, 8, 2, 2
B, S, T = 3, 6, 5
F64 = torch.float64


def _torch_decoder_layer(block, device):
    """A torch decoder layer with our block's configuration, in train mode with dropout 0 (train mode
    keeps torch off its fused inference path, which returns zeros at padded positions)."""
    return nn.TransformerDecoderLayer(D, NH, dim_feedforward=block.d_ff, dropout=0.0, activation="gelu",
                                      batch_first=True, norm_first=(block.norm == "pre")).to(device, F64)


def _lengths(device):
    return torch.tensor([S, 2, 4], device=device)


def _batch(device, n=4, length=5, min_length=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    src, tgt_in, tgt_out = reverse_task(n, length, V, min_length=min_length, generator=generator)
    return src.to(device), tgt_in.to(device), tgt_out.to(device)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_decoder_block_equals_torch_decoder_layer(norm, device):
    """Causal self-attention, cross-attention to a memory with padded positions, and the feed-forward
    network, against torch's layer with our weights copied in: outputs, and the gradients of the
    input, the memory and every parameter, in float64. torch's masks mean True = may NOT attend."""
    torch.manual_seed(0)
    ours = DecoderBlock(D, NH, norm=norm).to(device, F64)
    theirs = _torch_decoder_layer(ours, device)
    copy_decoder_layer_from_torch(ours, theirs)
    y, memory = torch.randn(B, T, D, dtype=F64, device=device), torch.randn(B, S, D, dtype=F64, device=device)
    lengths = _lengths(device)
    y1, y2 = y.clone().requires_grad_(), y.clone().requires_grad_()
    m1, m2 = memory.clone().requires_grad_(), memory.clone().requires_grad_()
    out_ours, weights = ours(y1, m1, padding_mask(lengths, S))
    assert weights is None  # the fused kernel keeps no weights
    out_theirs = theirs(y2, m2, tgt_mask=~causal_mask(T, device=device), tgt_is_causal=True,
                        memory_key_padding_mask=~padding_mask(lengths, S)[:, 0])
    torch.testing.assert_close(out_ours, out_theirs)
    w = torch.randn_like(out_ours)
    (out_ours * w).sum().backward()
    (out_theirs * w).sum().backward()
    torch.testing.assert_close(y1.grad, y2.grad)
    torch.testing.assert_close(m1.grad, m2.grad)
    assert (m1.grad[1, 2:] == 0).all()  # nothing flows into padded memory positions
    named = dict(theirs.named_parameters())
    modules = {"attn": "self_attn", "cross_attn": "multihead_attn", "ln_1": "norm1", "ln_cross": "norm2",
               "ln_2": "norm3", "mlp.0": "linear1", "mlp.2": "linear2"}
    tensors = {"W_qkv": "in_proj_weight", "b_qkv": "in_proj_bias", "W_o": "out_proj.weight", "b_o": "out_proj.bias"}
    ours_params = dict(ours.named_parameters())
    assert len(ours_params) == len(named)
    for name, p in ours_params.items():
        module, tensor = name.rsplit(".", 1)
        torch.testing.assert_close(p.grad, named[f"{modules[module]}.{tensors.get(tensor, tensor)}"].grad, msg=name)
    # the readable path gives the same output and the weights, zero on padded source positions
    out_readable, weights = ours(y, memory, padding_mask(lengths, S), fast=False)
    torch.testing.assert_close(out_readable, out_theirs.detach())
    assert weights.shape == (B, NH, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, NH, T, dtype=F64, device=device))
    assert (weights[1, :, :, 2:] == 0).all() and (weights[2, :, :, 4:] == 0).all()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_encoder_block_equals_torch_encoder_layer_with_padding(norm, device):
    """The encoder's block is the course's Block (exact GELU, d_ff = 4D, as torch's layer with
    activation="gelu"); with a source padding mask it matches TransformerEncoderLayer's
    src_key_padding_mask at every position, padded ones included."""
    torch.manual_seed(1)
    ours = Block(D, NH, norm=norm).to(device, F64)
    theirs = nn.TransformerEncoderLayer(D, NH, dim_feedforward=ours.d_ff, dropout=0.0, activation="gelu",
                                        batch_first=True, norm_first=(norm == "pre")).to(device, F64)
    copy_encoder_layer_from_torch(ours, theirs)
    x = torch.randn(B, S, D, dtype=F64, device=device)
    mask = padding_mask(_lengths(device), S)
    expected = theirs(x, src_key_padding_mask=~mask[:, 0])
    torch.testing.assert_close(ours(x, mask), expected)
    assert (ours(x) - expected).abs().max() > 1e-3  # the mask matters


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's own note on norm_first
def test_whole_model_equals_torch_transformer(device):
    """The pre-norm model is torch.nn.Transformer(norm_first=True) between our embeddings and our
    output layer: same encoder stack, final encoder and decoder LayerNorms, masks and logits."""
    torch.manual_seed(2)
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=L, n_heads=NH).to(device, F64)
    theirs = nn.Transformer(D, NH, L, L, dim_feedforward=model.d_ff, dropout=0.0, activation="gelu",
                            batch_first=True, norm_first=True).to(device, F64)
    for ours_block, their_layer in zip(model.encoder, theirs.encoder.layers):
        copy_encoder_layer_from_torch(ours_block, their_layer)
    for ours_block, their_layer in zip(model.decoder, theirs.decoder.layers):
        copy_decoder_layer_from_torch(ours_block, their_layer)
    with torch.no_grad():
        for ln, their in ((model.ln_enc, theirs.encoder.norm), (model.ln_dec, theirs.decoder.norm)):
            ln.weight.copy_(their.weight)
            ln.bias.copy_(their.bias)
    src, tgt_in, _ = _batch(device, n=6, length=6, min_length=1, seed=4)
    assert (src == PAD).any()
    pad = src == PAD
    hidden = theirs(model.embed(src, model.src_embed), model.embed(tgt_in, model.tgt_embed),
                    tgt_mask=~causal_mask(tgt_in.shape[1], device=device), tgt_is_causal=True,
                    src_key_padding_mask=pad, memory_key_padding_mask=pad)
    torch.testing.assert_close(model(src, tgt_in), hidden @ model.W_o.T + model.b_o)


def test_a_later_target_token_does_not_change_earlier_logits(device):
    torch.manual_seed(3)
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=L, n_heads=NH).to(device, F64)
    src, tgt_in, _ = _batch(device, n=4, length=5, min_length=5)
    logits = model(src, tgt_in)
    for k in range(1, tgt_in.shape[1]):
        changed = tgt_in.clone()
        changed[:, k] = 3 + (changed[:, k] + 1) % (V - 3)
        new = model(src, changed)
        torch.testing.assert_close(new[:, :k], logits[:, :k])
        assert (new[:, k:] - logits[:, k:]).abs().amax() > 1e-6  # and it does change its own position


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_padding_changes_nothing(positions, device):
    """Appending PAD columns to the source, or changing the PAD embedding, leaves every logit as it was:
    no real position, in the encoder or the cross-attention, reads a padded one."""
    torch.manual_seed(4)
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=L, n_heads=NH, positions=positions, max_len=16).to(device, F64)
    src, tgt_in, _ = _batch(device, n=5, length=5, min_length=1, seed=2)
    assert (src == PAD).any()
    logits = model(src, tgt_in)
    longer = torch.cat([src, torch.full((src.shape[0], 3), PAD, device=device)], dim=1)
    torch.testing.assert_close(model(longer, tgt_in), logits)
    memory, _ = model.encode(src)
    with torch.no_grad():
        model.src_embed.weight[PAD] += 3 * torch.randn(D, dtype=F64, device=device)  # not a constant: LN removes those
    torch.testing.assert_close(model(src, tgt_in), logits)
    changed, _ = model.encode(src)
    real = src != PAD
    torch.testing.assert_close(changed[real], memory[real])
    assert (changed[~real] - memory[~real]).abs().amax() > 1e-3  # the PAD positions did change
    # each sequence alone, unpadded, gives its logits
    for b in range(src.shape[0]):
        n = int(real[b].sum())
        torch.testing.assert_close(model(src[b:b + 1, :n], tgt_in[b:b + 1]), logits[b:b + 1])


def test_greedy_is_teacher_forcing_on_its_own_output(device):
    torch.manual_seed(5)
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=L, n_heads=NH).to(device, F64)
    with torch.no_grad():
        model.b_o[EOS] += 1.0  # make an EOS likely somewhere, so the PAD-after-EOS rule is exercised
    src, _, _ = _batch(device, n=16, length=6, min_length=1, seed=9)
    pred, tgt_in, after_eos = assert_greedy_is_teacher_forcing(model, src, 8)
    ids, weights = model.greedy(src, 8, return_attention=True)
    assert torch.equal(ids, pred) and weights.shape == (16, L, NH, 8, src.shape[1])
    _, forced = model(src, tgt_in, return_attention=True)
    keep = ~after_eos  # (B, T): rows up to the first EOS read the same inputs
    torch.testing.assert_close(weights.permute(0, 3, 1, 2, 4)[keep], forced.permute(0, 3, 1, 2, 4)[keep])


def test_cross_attention_weights_and_fast_path(device):
    torch.manual_seed(6)
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=L, n_heads=NH).to(device, F64)
    src, tgt_in, tgt_out = _batch(device, n=5, length=6, min_length=1, seed=3)
    logits, weights = model(src, tgt_in, return_attention=True)
    torch.testing.assert_close(logits, model(src, tgt_in))  # readable attention = the fused kernel
    assert weights.shape == (5, L, NH, tgt_in.shape[1], src.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1], dtype=F64, device=device))
    assert (weights.masked_select((src == PAD)[:, None, None, None, :]) == 0).all()
    loss = seq2seq_loss(model, src, tgt_in, tgt_out)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_post_norm_model_has_no_final_norms():
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=1, n_heads=NH, norm="post")
    assert model.ln_enc is None and model.ln_dec is None and model.decoder[0].norm == "post"
    src, tgt_in, _ = reverse_task(2, 4, V, generator=torch.Generator().manual_seed(0))
    assert model(src, tgt_in).shape == (2, 5, V)


def test_learns_to_reverse_short_sequences():
    """A small model (one block each side, D = 32) reverses sources of 1 to 4 symbols after 300 steps."""
    torch.manual_seed(0)
    model = TransformerSeq2Seq(8, 8, d_model=32, num_layers=1, n_heads=2)
    g = torch.Generator().manual_seed(0)
    history = train(model, lambda step: reverse_task(32, 4, 8, min_length=1, generator=g), seq2seq_loss,
                    steps=300, lr=5e-3, clip_norm=1.0, progress=False, device="cpu")
    src, _, tgt_out = reverse_task(300, 4, 8, min_length=1, generator=torch.Generator().manual_seed(1))
    assert history.losses[-1] < 0.1 * history.losses[0]
    assert exact_match(model.eval().greedy(src, 5), tgt_out).float().mean() > 0.95


def test_bad_arguments_raise_clear_errors():
    model = TransformerSeq2Seq(V, V, d_model=D, num_layers=1, n_heads=NH)
    src, tgt_in, _ = reverse_task(2, 4, V, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="divisible"):
        TransformerSeq2Seq(V, V, d_model=6, num_layers=1, n_heads=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerSeq2Seq(V, V, d_model=D, num_layers=1, n_heads=NH, norm="sandwich")
    with pytest.raises(ValueError, match="positions must be one of"):
        TransformerSeq2Seq(V, V, d_model=D, num_layers=1, n_heads=NH, positions="rotary")
    with pytest.raises(ValueError, match="src_vocab must be >= 3"):
        TransformerSeq2Seq(2, V, d_model=D, num_layers=1, n_heads=NH)
    with pytest.raises(ValueError, match="right padding"):
        model(torch.tensor([[4, PAD, 5]]), tgt_in[:1])
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.tensor([[PAD, PAD]]), tgt_in[:1])
    with pytest.raises(ValueError, match=r"token ids in \[0, 8\]"):
        model(torch.tensor([[4, V]]), tgt_in[:1])
    with pytest.raises(TypeError, match=r"src must be a long \(torch.int64\) tensor"):
        model(src.float(), tgt_in)
    with pytest.raises(ValueError, match=r"tgt_in must have shape \(B=2, T >= 1\)"):
        model(src, tgt_in[:1])
    with pytest.raises(ValueError, match=r"tgt_in must have shape \(B=2, T >= 1\)"):
        model(src, tgt_in[:, :0])
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        model.greedy(src, 0)
    learned = TransformerSeq2Seq(V, V, d_model=D, num_layers=1, n_heads=NH, positions="learned", max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        learned(src, tgt_in)  # tgt_in has 5 positions
    block = DecoderBlock(D, NH)
    with pytest.raises(ValueError, match=r"memory must be a float32 tensor of shape \(B=2, S, D=8\)"):
        block(torch.randn(2, 3, D), torch.randn(3, 4, D))
    with pytest.raises(ValueError, match="mask must have shape"):
        block(torch.randn(2, 3, D), torch.randn(2, 4, D), torch.ones(2, 1, 5, dtype=torch.bool))


def test_converters_refuse_layers_that_compute_something_else():
    ours = DecoderBlock(D, NH)
    make = lambda **kw: nn.TransformerDecoderLayer(D, NH, **{"dim_feedforward": 4 * D, "dropout": 0.0,  # noqa: E731
                                                             "activation": "gelu", "batch_first": True,
                                                             "norm_first": True, **kw})
    copy_decoder_layer_from_torch(ours, make())  # the matching configuration is accepted
    with pytest.raises(ValueError, match="activation='gelu'"):
        copy_decoder_layer_from_torch(ours, make(activation="relu"))
    with pytest.raises(ValueError, match="norm_first=True"):
        copy_decoder_layer_from_torch(ours, make(norm_first=False))
    with pytest.raises(ValueError, match="dim_feedforward=16"):
        copy_decoder_layer_from_torch(ours, make(dim_feedforward=16))
    with pytest.raises(ValueError, match="eps"):
        copy_decoder_layer_from_torch(ours, make(layer_norm_eps=1e-6))
    with pytest.raises(TypeError, match="TransformerDecoderLayer"):
        copy_decoder_layer_from_torch(ours, nn.TransformerEncoderLayer(D, NH))
    with pytest.raises(TypeError, match="DecoderBlock as ours"):
        copy_decoder_layer_from_torch(Block(D, NH), make())
    with pytest.raises(TypeError, match="Block as ours"):
        copy_encoder_layer_from_torch(ours.attn, nn.TransformerEncoderLayer(D, NH))
    with pytest.raises(ValueError, match="norm_first=False"):
        copy_encoder_layer_from_torch(Block(D, NH, norm="post"),
                                      nn.TransformerEncoderLayer(D, NH, 4 * D, activation="gelu", norm_first=True))
