"""The trained experiments of 03_gating.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/03_gating.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="gated_adding", notebook=NOTEBOOK,
        description="adding problem, H = 16, 300 Adam steps: held-out MSE of RNN, GRU and LSTM at T = 10 and 30 "
                    "(the constant prediction costs 1/6 = 0.1667)",
        metrics=("rnn_t10", "gru_t10", "lstm_t10", "rnn_t30", "gru_t30", "lstm_t30"),
        claims=(),
        tolerance=0.05, fmt=".4f",
    ),
    Experiment(
        name="gated_gradient_reach", notebook=NOTEBOOK,
        description="after training on the adding problem at T = 30: log10 of the gradient at the carried state "
                    "29 steps before step T-1, relative to step T-1",
        metrics=("log10_rnn", "log10_gru", "log10_lstm"),
        claims=(),
        tolerance=1.0, fmt=".2f",
    ),
    Experiment(
        name="lookahead_tagging", notebook=NOTEBOOK,
        description="look-ahead parity (lag 2, T = 12), 100 Adam steps: held-out tag accuracy",
        metrics=("left_to_right_gru", "bidirectional_gru"),
        claims=(),
        tolerance=0.05, fmt=".4f",
    ),
    Experiment(
        name="seq2seq_reversal", notebook=NOTEBOOK,
        description="GRU encoder-decoder (H = 64, c = h_S) reversing 1 to 8 of 9 symbols, 250 Adam steps: "
                    "token accuracy under teacher forcing, exact match of greedy decoding overall and by source "
                    "length, and the share of failures that have the right symbols",
        metrics=("teacher_forced_tokens", "greedy_exact_match", *(f"exact_length_{n}" for n in range(1, 9)),
                 "right_symbols_share_of_failures"),
        claims=(),
        tolerance=0.1, fmt=".4f",
    ),
)
