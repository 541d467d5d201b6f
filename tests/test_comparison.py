"""seqcourse.measure.comparison: the cores at matched parameter counts, the chain length of the autograd
graph, saved memory and state sizes (deterministic measures), gradient reach, the long-range
scoring, and the claims' verdicts on hand-made measurements."""
import pytest
import torch

from seqcourse.measure import comparison as cmp

pytestmark = pytest.mark.usefixtures("one_thread")


def test_make_core_gives_every_family_the_recurrent_core_interface():
    for name in cmp.FAMILIES:
        core = cmp.make_core(name, 3, 8)
        out, state = core(torch.randn(2, 5, 3))
        assert out.shape == (2, 5, 8), name
        y, state = core.step(torch.randn(2, 3))
        assert y.shape == (2, 8), name
    with pytest.raises(ValueError, match="unknown family 'CNN'"):
        cmp.make_core("CNN", 3, 8)


def test_matched_cores_are_within_a_few_percent_of_the_target():
    cores = cmp.matched_cores(4, 20000)
    assert list(cores) == list(cmp.FAMILIES)
    for name, (core, hidden) in cores.items():
        assert hidden % cmp.N_HEADS == 0 and core.hidden_size == hidden
        assert abs(cmp.count_parameters(core) - 20000) / 20000 < 0.06, name
    # fast=True reaches the recurrent constructors
    assert cmp.matched_cores(4, 2000, ("GRU",), fast=True)["GRU"][0].fast is True


def test_count_parameters_counts_trainable_scalars_only():
    layer = torch.nn.Linear(3, 2)
    assert cmp.count_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert cmp.count_parameters(layer) == 6
    with pytest.raises(TypeError, match="torch.nn.Module"):
        cmp.count_parameters([1, 2])


def test_graph_depth_counts_the_longest_chain():
    a = torch.ones(3, requires_grad=True)
    y = a
    for _ in range(10):
        y = y * 2  # a chain of 10 multiplies
    side = a.exp()  # a chain of 1
    assert cmp.graph_depth((y + side).sum()) == cmp.graph_depth(y.sum()) + 1
    assert cmp.graph_depth(y) - cmp.graph_depth(a * 2) == 9
    with pytest.raises(ValueError, match="grad_fn"):
        cmp.graph_depth(torch.ones(2))


def test_recurrent_chain_grows_with_T_and_attention_chain_does_not():
    rnn, transformer = cmp.make_core("RNN", 2, 4), cmp.make_core("Transformer", 2, 4)
    depth = {(name, T): cmp.graph_depth(core(torch.randn(1, T, 2))[0].sum())
             for name, core in (("rnn", rnn), ("tf", transformer)) for T in (8, 32)}
    assert depth["rnn", 32] - depth["rnn", 8] >= 24  # at least one operation per extra step
    assert depth["tf", 32] == depth["tf", 8]


def test_state_bytes_sums_nested_tensors():
    state = (torch.zeros(2, 3), [torch.zeros(4, dtype=torch.float64), None], 7)
    assert cmp.state_bytes(state) == 2 * 3 * 4 + 4 * 8
    with pytest.raises(TypeError, match="tensors"):
        cmp.state_bytes({"h": torch.zeros(1)})


def test_generation_state_is_constant_except_for_the_kv_cache():
    cores = {n: cmp.make_core(n, 2, 4) for n in ("GRU", "TCN", "Transformer", "Mamba")}
    gen = cmp.generation_costs(cores, 6)
    for name, g in gen.items():
        assert len(g["seconds"]) == len(g["state_bytes"]) == 6 and all(s > 0 for s in g["seconds"])
    assert all(len(set(gen[n]["state_bytes"])) == 1 for n in ("GRU", "TCN", "Mamba"))
    kv = gen["Transformer"]["state_bytes"]
    assert kv[-1] == 6 * kv[0] and kv[1] - kv[0] == kv[0]  # the same bytes added per position


def test_flops_per_token_constant_for_a_recurrence_linear_for_attention():
    gru = cmp.flops_per_token(cmp.make_core("GRU", 2, 4), (1, 2, 10))
    assert set(gru) == {1, 2, 10} and len(set(gru.values())) == 1 and gru[1] > 0
    attention = cmp.flops_per_token(cmp.make_core("Transformer", 2, 4, attention_fast=False), (1, 2, 3, 10))
    growth = attention[2] - attention[1]
    assert growth > 0 and attention[3] - attention[2] == growth and attention[10] - attention[1] == 9 * growth


def test_training_costs_rows_and_linear_memory():
    cores = {n: cmp.make_core(n, 2, 4) for n in ("LSTM", "S4D")}
    rows = cmp.training_costs(cores, (8, 32), batch=2, repeats=1)
    assert [(r["model"], r["T"]) for r in rows] == [("LSTM", 8), ("S4D", 8), ("LSTM", 32), ("S4D", 32)]
    saved = {(r["model"], r["T"]): r["saved_bytes"] for r in rows}
    for name in cores:
        assert 2 < saved[name, 32] / saved[name, 8] < 5
    assert all(r["seconds"] > 0 and r["depth"] > 0 for r in rows)
    with pytest.raises(TypeError, match="non-empty mapping"):
        cmp.training_costs({}, (8,))
    with pytest.raises(TypeError, match="non-empty mapping"):
        cmp.generation_costs([cmp.make_core("RNN", 2, 4)], 3)


def test_gradient_reach_is_zero_beyond_the_tcn_receptive_field():
    torch.manual_seed(0)
    tcn = cmp.make_core("TCN", 2, 4)  # receptive field 31
    reach = cmp.gradient_reach(tcn, 40)
    assert reach.shape == (40,) and reach[0] == 1
    assert (reach[31:] == 0).all() and (reach[:31] > 0).any()
    assert all(p.grad is None for p in tcn.parameters())  # measuring leaves the core's gradients alone


def test_core_functions_name_the_interface_they_expect():
    linear = torch.nn.Linear(2, 4)  # a Module, but no input_size and no step()
    with pytest.raises(TypeError, match="input_size"):
        cmp.gradient_reach(linear, 4)
    linear.input_size = 2  # now it has input_size, but still no step() to generate with
    with pytest.raises(TypeError, match=r"cores\['Linear'\] must be a sequence core.*input_size and step"):
        cmp.generation_costs({"Linear": linear}, 3)
    cmp.gradient_reach(cmp.make_core("GRU", 2, 4), 4)  # a real core passes
    with pytest.raises(TypeError, match="input_size and step"):
        cmp.flops_per_token(torch.nn.GRU(2, 4), (1,))


def test_long_range_scores_rows_and_ranges():
    rows = cmp.long_range_scores(("GRU", "Transformer"), "selective_copy", (4, 6), target_params=500, steps=2,
                                 batch=4, eval_size=8, num_layers=1)
    assert [(r["model"], r["T"]) for r in rows] == [("GRU", 4), ("Transformer", 4), ("GRU", 6), ("Transformer", 6)]
    assert all(0 <= r["score"] <= 1 and r["chance"] == 0.25 for r in rows)
    # one width per family, matched to the target, the same at every length
    assert rows[0]["parameters"] == rows[2]["parameters"] and abs(rows[0]["parameters"] - 500) < 100
    assert len(cmp.make_core("GRU", 6, 2, 1, fast=True).cells) == 1
    (row,) = cmp.long_range_scores(("RNN",), "adding", (6,), target_params=300, steps=2, batch=4, eval_size=8)
    assert row["chance"] == 0 and row["score"] <= 1
    with pytest.raises(ValueError, match="unknown task"):
        cmp.long_range_scores(("RNN",), "parity", (6,), target_params=300, steps=1)


def test_long_range_scores_learn_a_short_copy_and_are_reproducible():
    # a short delayed recall is learnable in a few dozen steps: the score must leave chance (1/4),
    # and the same seed must give the same score
    kwargs = dict(target_params=1500, steps=30, batch=32, lr=1e-2, num_layers=1, eval_size=64)
    (first,) = cmp.long_range_scores(("Transformer",), "copy", (2,), **kwargs)
    (again,) = cmp.long_range_scores(("Transformer",), "copy", (2,), **kwargs)
    assert first["score"] >= cmp.long_range_bar("copy") and first["score"] == again["score"]


def test_long_range_bar_and_distances():
    assert cmp.long_range_bar("adding") == 0.5  # what knowing the later value alone scores
    assert cmp.long_range_bar("copy") == cmp.long_range_bar("selective_copy") == pytest.approx(0.35)
    assert cmp.TCN_RECEPTIVE_FIELD == cmp.make_core("TCN", 2, 4).receptive_field == 31
    assert cmp.min_distance("adding", 9) == 5 and cmp.min_distance("copy", 32) == 35
    assert cmp.min_distance("selective_copy", 100) == cmp.RECALLED
    with pytest.raises(ValueError, match="unknown task"):
        cmp.long_range_bar("parity")
    with pytest.raises(ValueError, match="unknown task"):
        cmp.min_distance("parity", 4)


def test_min_distance_of_the_copy_task_matches_its_layout():
    from seqcourse.data.tasks import copy_task
    delay = 5
    inputs, targets = copy_task(1, delay, n_symbols=cmp.N_SYMBOLS, copy_length=cmp.RECALLED)
    read = (inputs[0] > 0) & (inputs[0] <= cmp.N_SYMBOLS)  # steps holding a symbol
    written = targets[0] > 0
    gaps = written.nonzero().flatten() - read.nonzero().flatten()
    assert (gaps == cmp.min_distance("copy", delay)).all()


def test_min_distance_of_the_selective_copy_task_matches_its_layout():
    from seqcourse.data.tasks import selective_copy_task
    length = cmp.RECALLED + 1  # few layouts, so the tightest one (symbols just before the markers) occurs
    inputs, targets = selective_copy_task(200, length, n_tokens=cmp.RECALLED, n_symbols=cmp.N_SYMBOLS,
                                          generator=torch.Generator().manual_seed(0))
    read = (inputs > 0) & (inputs <= cmp.N_SYMBOLS)  # (n, T): steps holding a symbol
    written = targets >= 0                            # (n, T): steps writing one back
    gaps = written.nonzero()[:, 1] - read.nonzero()[:, 1]  # k-th symbol read -> k-th written, row by row
    assert gaps.min() == cmp.min_distance("selective_copy", length)


def _claims_by_property(measured):
    return {r["property"]: r for r in cmp.judge_claims(measured)}


def test_claims_judge_hand_made_measurements():
    def train_rows(parallel_depth_power, transformer_memory_power):
        rows = []
        for name in ("RNN", "LSTM", "TCN", "Transformer", "S4D"):
            for T in (10, 40):
                k = T / 10
                rows.append({"model": name, "T": T, "seconds": 1.0,
                             "depth": 100 * k ** (1 if name in ("RNN", "LSTM") else parallel_depth_power),
                             "saved_bytes": 100 * (k ** transformer_memory_power if name == "Transformer" else k)})
        return rows

    quadratic = _claims_by_property({"training": train_rows(0, 2)})
    assert quadratic["training parallelism"]["held"] and quadratic["memory (train)"]["held"]
    assert "Transformer ×16.0" in quadratic["memory (train)"]["evidence"]
    linear = _claims_by_property({"training": train_rows(1, 1)})
    assert not linear["training parallelism"]["held"] and not linear["memory (train)"]["held"]
    assert set(linear) == {"training parallelism", "training time", "memory (train)"}  # others not measured

    gen = {"RNN": {"state_bytes": [8] * 4, "seconds": [1.0] * 16},
           "Transformer": {"state_bytes": [8, 16, 24, 32], "seconds": [1.0] * 8 + [3.0] * 8}}
    claims = _claims_by_property({"generation": gen})
    assert claims["memory (inference)"]["held"] and claims["inference time per token"]["held"]
    ops = {"RNN": {1: 10, 2: 10, 9: 10}, "Transformer": {1: 100, 2: 104, 9: 132}}
    assert _claims_by_property({"flops": ops})["inference per token"]["held"]
    ops["Transformer"][2] = 100  # no growth between the first positions
    assert not _claims_by_property({"flops": ops})["inference per token"]["held"]
    gen["RNN"]["state_bytes"][-1] = 9
    assert not _claims_by_property({"generation": gen})["memory (inference)"]["held"]

    reach = {"RNN": torch.tensor([1.0, 0.5, 1e-6]), "TCN": torch.tensor([1.0, 0.5, 0.0]),
             "Transformer": torch.tensor([1.0, 0.1, 0.1])}
    assert _claims_by_property({"reach": reach})["gradient path"]["held"]
    reach["TCN"][-1] = 1e-9
    assert not _claims_by_property({"reach": reach})["gradient path"]["held"]

    def scores(transformer, ssm, rnn):
        return {"copy": [{"model": n, "T": 64, "score": s, "chance": 0.25}
                         for n, s in (("Transformer", transformer), ("Mamba", ssm), ("GRU", rnn))]}
    assert _claims_by_property({"long_range": scores(0.95, 0.7, 0.3)})["long-range dependencies"]["held"]
    assert not _claims_by_property({"long_range": scores(0.26, 0.25, 0.25)})["long-range dependencies"]["held"]


def test_long_range_claim_decides_per_task():
    def rows(task, short, long, chance):
        return [{"model": n, "task": task, "T": T, "score": s, "chance": chance}
                for T, scores in ((8, short), (32, long)) for n, s in scores.items()]

    def verdict(long_range):
        return _claims_by_property({"long_range": long_range})["long-range dependencies"]

    good_long = {"RNN": 0.25, "TCN": 0.26, "Transformer": 0.6, "S4D": 0.5, "Mamba": 0.3}
    learned = {n: 0.7 for n in good_long}
    # adding learned by nobody at any length: says nothing, and does not spoil the copy verdict
    nothing = {n: 0.2 for n in good_long}
    held = verdict({"adding": rows("adding", nothing, nothing, 0.0), "copy": rows("copy", learned, good_long, 0.25)})
    assert held["held"] and "adding: no family reaches 0.50" in held["evidence"]
    assert "copy ℓ=32: Transformer, S4D reach 0.35 (beyond the TCN's field)" in held["evidence"]
    # only uninformative tasks: no verdict can be held
    assert not verdict({"adding": rows("adding", nothing, nothing, 0.0)})["held"]
    # each part of the claim can fail on its own
    for model, score in (("Transformer", 0.3), ("S4D", 0.3), ("RNN", 0.5), ("TCN", 0.5)):
        broken = dict(good_long, **{model: score})
        assert not verdict({"copy": rows("copy", learned, broken, 0.25)})["held"], model
    # within the TCN's field (selective copy: a symbol can sit next to the recall) the TCN may clear the bar
    assert verdict({"selective_copy": rows("selective_copy", learned, dict(good_long, TCN=0.5), 0.25)})["held"]
