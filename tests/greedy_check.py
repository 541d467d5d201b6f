"""The check both encoder–decoders' greedy decoding must pass (tests/test_seq2seq.py and
tests/test_encoder_decoder.py): greedy decoding is teacher forcing on its own output."""
import torch

from seqcourse.data.tasks import BOS, EOS, PAD


def assert_greedy_is_teacher_forcing(model, src: torch.Tensor, steps: int):
    """``model.greedy(src, steps)`` gives (B, steps) token ids that equal the argmax of the model fed
    its own previous outputs, up to and including each row's first EOS, and PAD after it.

    Returns (pred (B, steps), tgt_in (B, steps): BOS then pred shifted right, after_eos (B, steps) bool)."""
    pred = model.greedy(src, steps)
    assert pred.shape == (src.shape[0], steps) and pred.dtype == torch.long
    tgt_in = torch.cat([torch.full_like(pred[:, :1], BOS), pred[:, :-1]], dim=1)
    raw = model(src, tgt_in).argmax(-1)
    after_eos = ((pred == EOS).cumsum(1) - (pred == EOS).long()) > 0
    assert after_eos.any() and (~after_eos).any()
    assert torch.equal(pred[~after_eos], raw[~after_eos])  # up to and including the first EOS
    assert (pred[after_eos] == PAD).all()
    return pred, tgt_in, after_eos
