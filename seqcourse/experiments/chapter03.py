"""The trained experiments of 03_gating.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/03_gating.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="gated_adding", notebook=NOTEBOOK,
        description="adding problem, H = 16, 300 Adam steps: held-out MSE of RNN, GRU and LSTM at T = 10 and 30 "
                    "(the constant prediction costs 1/6 = 0.1667)",
        metrics=("rnn_t10", "gru_t10", "lstm_t10", "rnn_t30", "gru_t30", "lstm_t30"),
        claims=(
            # the GRU solves the adding problem at both lengths
            Claim("gru_t10", "<=", 0.01), Claim("gru_t30", "<=", 0.01),
            # the plain RNN gets below the constant prediction at T = 10, behind the GRU, and not at T = 30
            Claim("rnn_t10", "<=", 0.1667, 0.01), Claim("rnn_t10", ">=", "gru_t10", 0.02), Claim("rnn_t30", ">=", 0.15),
            # the LSTM learns it at T = 10 but is still on the plateau at T = 30, where the GRU is not
            Claim("lstm_t10", "<=", 0.1), Claim("lstm_t30", ">=", 0.15),
            Claim("lstm_t30", ">=", "gru_t30", 0.1), Claim("lstm_t30", ">=", "lstm_t10", 0.08),
        ),
        tolerance={"rnn_t10": 0.05, "gru_t10": 0.007, "lstm_t10": 0.05, "rnn_t30": 0.02, "gru_t30": 0.007,
                   "lstm_t30": 0.03}, fmt=".4f",
    ),
    Experiment(
        name="gated_gradient_reach", notebook=NOTEBOOK,
        description="after training on the adding problem at T = 30: log10 of the gradient at the carried state "
                    "29 steps before step T-1, relative to step T-1",
        metrics=("log10_rnn", "log10_gru", "log10_lstm"),
        claims=(
            # the GRU, which solved T = 30, passes back far more gradient than the RNN and the LSTM
            Claim("log10_gru", ">=", -2.5), Claim("log10_gru", ">=", "log10_lstm", 1.0),
            Claim("log10_gru", ">=", "log10_rnn", 1.0),
            Claim("log10_lstm", "<=", -2.5), Claim("log10_rnn", "<=", -2.5),
        ),
        tolerance={"log10_rnn": 1.5, "log10_gru": 0.5, "log10_lstm": 0.5}, fmt=".2f",
    ),
    Experiment(
        name="lookahead_tagging", notebook=NOTEBOOK,
        description="look-ahead parity (lag 2, T = 12), 100 Adam steps: held-out tag accuracy",
        metrics=("left_to_right_gru", "bidirectional_gru"),
        claims=(
            # a left-to-right model is at chance by construction (10,000 held-out tags)
            Claim("left_to_right_gru", "<=", 0.52), Claim("left_to_right_gru", ">=", 0.48),
            # the bidirectional one tags (almost) every step right
            Claim("bidirectional_gru", ">=", 0.99),
        ),
        tolerance={"left_to_right_gru": 0.015, "bidirectional_gru": 0.01}, fmt=".4f",
    ),
    Experiment(
        name="seq2seq_reversal", notebook=NOTEBOOK,
        description="GRU encoder-decoder (H = 64, c = h_S) reversing 1 to 8 of 9 symbols, 250 Adam steps: "
                    "token accuracy under teacher forcing, exact match of greedy decoding overall and by source "
                    "length, and the share of failures that have the right symbols",
        metrics=("teacher_forced_tokens", "greedy_exact_match", *(f"exact_length_{n}" for n in range(1, 9)),
                 "right_symbols_share_of_failures"),
        claims=(
            # greedy decoding is far worse than the token accuracy under teacher forcing
            Claim("teacher_forced_tokens", ">=", "greedy_exact_match", 0.1),
            # short sources are reversed perfectly; exact match falls steeply with the length
            Claim("exact_length_1", ">=", 0.99), Claim("exact_length_2", ">=", 0.99), Claim("exact_length_4", ">=", 0.85),
            Claim("exact_length_6", "<=", "exact_length_4", 0.3), Claim("exact_length_8", "<=", "exact_length_6", 0.2),
            Claim("exact_length_8", "<=", 0.2),
            # about half the failures or more have the right symbols in the wrong order
            Claim("right_symbols_share_of_failures", ">=", 0.45),
        ),
        tolerance=0.1, fmt=".4f",
    ),
)
