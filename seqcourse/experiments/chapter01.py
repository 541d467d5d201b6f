"""The trained experiments of 01_recurrence.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/01_recurrence.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="order_task", notebook=NOTEBOOK,
        description="order task (T = 16, V = 8): held-out accuracy of three order-blind models and an RNN",
        metrics=("bag_of_words", "window_mlp", "ngram_counts", "rnn"),
        claims=(
            # a bag of words sees a sequence and its mirror alike: exactly chance on mirror pairs
            Claim("bag_of_words", "<=", 0.5), Claim("bag_of_words", ">=", 0.5),
            # the window's ceiling 0.7250 plus three standard errors of 2,000 test sequences
            Claim("window_mlp", "<=", 0.7556),
            # the 3-gram prediction 0.6208, within four standard errors either way
            Claim("ngram_counts", ">=", 0.58), Claim("ngram_counts", "<=", 0.66),
            Claim("rnn", ">=", 0.95), Claim("rnn", ">=", "window_mlp", 0.2),
        ),
        tolerance={"bag_of_words": 0.0, "window_mlp": 0.03, "ngram_counts": 0.03, "rnn": 0.03},
    ),
    Experiment(
        name="char_rnn", notebook=NOTEBOOK,
        description="character RNN (H = 128), 400 Adam steps: loss in nats per character",
        metrics=("first_step_loss", "last_20_steps_loss", "held_out_loss"),
        claims=(
            Claim("first_step_loss", ">=", 4.45),  # next to the uniform guess log 97 = 4.5747
            Claim("first_step_loss", "<=", 4.70),
            Claim("last_20_steps_loss", "<=", 2.3),  # far below the uniform guess
            Claim("held_out_loss", "<=", 2.3),
        ),
        tolerance=0.15,
    ),
    Experiment(
        name="char_rnn_saturation", notebook=NOTEBOOK,
        description="character RNN after training: share of hidden-state entries with |h_t| > 0.9",
        metrics=("saturated_fraction",),
        claims=(Claim("saturated_fraction", ">=", 0.2),),
        tolerance=0.05, fmt=".3f",
    ),
)
