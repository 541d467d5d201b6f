"""The shared training loop: it learns, records, clips, and stops cleanly when training diverges."""
import itertools

import pytest
import torch

from seqcourse.train import History, TrainingDiverged, sequence_cross_entropy, train


def _regression(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return x, y


def _mse(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _linear(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_loss_decreases(optimizer, device):
    x, y = _regression()
    model = _linear()
    history = train(model, lambda step: (x, y), _mse, steps=60, lr=0.05, optimizer=optimizer,
                    device=device, progress=False)
    assert isinstance(history, History)
    assert len(history.losses) == len(history.grad_norms) == 60
    assert history.losses[-1] < 0.1 * history.losses[0]
    assert history.device == torch.device(device)
    assert next(model.parameters()).device.type == torch.device(device).type
    assert history.seconds > 0


def test_losses_are_the_loss_before_each_update():
    x, y = _regression()
    model = _linear()
    reference = _linear()
    reference.load_state_dict(model.state_dict())
    history = train(model, [(x, y)] * 3, _mse, steps=3, lr=0.1, optimizer="sgd", device="cpu", progress=False)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        loss = _mse(reference, x, y)
        loss.backward()
        norm = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm().item()
        assert history.losses[step] == pytest.approx(loss.item(), rel=1e-6)
        assert history.grad_norms[step] == pytest.approx(norm, rel=1e-5)
        opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_optimizer_instance_is_used():
    x, y = _regression()
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the parameters must not move
    before = [p.detach().clone() for p in model.parameters()]
    history = train(model, lambda s: (x, y), _mse, steps=5, lr=1.0, optimizer=opt, device="cpu", progress=False)
    assert len(set(history.losses)) == 1
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q)


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match=r"optimizer must be one of 'adam', 'adamw', 'sgd' or a torch\.optim\.Optimizer"):
        train(_linear(), lambda s: _regression(), _mse, steps=1, optimizer="rmsprop", device="cpu", progress=False)


def test_nan_loss_raises_before_the_update():
    x, y = _regression()
    model = _linear()
    snapshots = {}

    def loss_fn(model, x, y):
        step = len(snapshots)
        snapshots[step] = [p.detach().clone() for p in model.parameters()]
        loss = _mse(model, x, y)
        return loss * float("nan") if step == 3 else loss

    with pytest.raises(TrainingDiverged, match=r"step 3: the loss became nan \(last finite loss [0-9.e+-]+ at step 2\)") as info:
        train(model, lambda s: (x, y), loss_fn, steps=10, lr=0.01, device="cpu", progress=False)
    assert len(info.value.history.losses) == 3
    assert all(torch.isfinite(torch.tensor(info.value.history.losses)))
    assert "lower lr or set clip_norm" in str(info.value)
    for p, before in zip(model.parameters(), snapshots[3]):
        assert torch.equal(p.detach(), before)
    assert isinstance(info.value, RuntimeError)


def test_huge_lr_diverges_with_clear_message():
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = torch.randn(32, 1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Linear(16, 1))
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+.*Try to lower lr.*lr=1e\+?0?6") as info:
        train(model, lambda s: (x, y), _mse, steps=200, lr=1e6, optimizer="sgd", device="cpu", progress=False)
    history = info.value.history
    assert len(history.losses) >= 1 and all(map(torch.isfinite, torch.tensor(history.losses)))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_clip_norm_limits_the_update():
    x, y = _regression()
    y = y * 1000  # a large loss, so the raw gradient norm is far above the clip
    model = _linear()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    history = train(model, lambda s: (x, y), _mse, steps=1, lr=1.0, optimizer="sgd", clip_norm=0.5,
                    device="cpu", progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert history.grad_norms[0] > 100  # recorded before clipping
    # SGD with lr 1 moves the parameters by exactly the clipped gradient.
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)


def test_iterable_that_runs_out():
    x, y = _regression()
    gen = ((x, y) for _ in range(4))
    with pytest.raises(ValueError, match=r"batches ran out after 4 batches but steps=10.*itertools\.cycle"):
        train(_linear(), gen, _mse, steps=10, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"batches holds 2 batches but steps=5"):
        train(_linear(), [(x, y), (x, y)], _mse, steps=5, device="cpu", progress=False)
    history = train(_linear(), itertools.cycle([(x, y)]), _mse, steps=5, device="cpu", progress=False)
    assert len(history.losses) == 5


def test_callable_batches_receive_the_step_number():
    x, y = _regression()
    seen = []

    def batches(step):
        seen.append(step)
        return x, y

    train(_linear(), batches, _mse, steps=4, device="cpu", progress=False)
    assert seen == [0, 1, 2, 3]


def test_loss_must_be_scalar():
    x, y = _regression()
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor; got \(64, 1\).*\.mean\(\)"):
        train(_linear(), lambda s: (x, y), lambda m, x, y: (m(x) - y) ** 2, steps=1, device="cpu", progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": 0}, ValueError, r"steps must be >= 1"),
    ({"steps": 2, "lr": -1.0}, ValueError, r"lr must be > 0"),
    ({"steps": 2, "clip_norm": 0}, ValueError, r"clip_norm must be > 0"),
    ({"steps": 2.5}, TypeError, r"steps must be an int"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        train(_linear(), lambda s: _regression(), _mse, device="cpu", progress=False, **kwargs)


def test_progress_bar_shows_loss(capsys):
    x, y = _regression()
    train(_linear(), lambda s: (x, y), _mse, steps=3, device="cpu", progress=True, desc="fit")
    err = capsys.readouterr().err
    assert "fit" in err and "loss=" in err and "3/3" in err
    train(_linear(), lambda s: (x, y), _mse, steps=3, device="cpu", progress=False, desc="quiet")
    assert "quiet" not in capsys.readouterr().err


def test_restores_eval_mode():
    x, y = _regression()
    model = _linear().eval()
    train(model, lambda s: (x, y), _mse, steps=1, device="cpu", progress=False)
    assert not model.training


def test_sequence_cross_entropy_matches_a_loop_over_scored_steps():
    """The mean over the scored steps equals the per-step losses averaged by hand; -100 is skipped."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, -100, 4], [0, 2, -100]])
    model = lambda inputs: (logits, None)  # noqa: E731 - a stand-in language model
    by_hand = [-(logits[b, t].log_softmax(-1)[targets[b, t]]) for b in range(2) for t in range(3) if targets[b, t] >= 0]
    assert torch.allclose(sequence_cross_entropy(model, None, targets), torch.stack(by_hand).mean())
    with pytest.raises(ValueError, match=r"\(B, T, V\) matching targets"):
        sequence_cross_entropy(model, None, targets[:, :2])
