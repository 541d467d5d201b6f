"""The trained experiments of 07_normalization.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/07_normalization.ipynb"

UNIGRAM = 3.114  # the unigram loss of the course corpus, nats per character (deterministic)

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="warmup", notebook=NOTEBOOK,
        description="character LM (width 32, 4 heads), Adam at lr 0.01 for 160 updates (warm-up: 40): mean loss of the last "
                    "20 updates, nats per character (unigram loss 3.114)",
        metrics=("post_2", "post_6", "post_6_warmup", "pre_6", "post_6_warmup_minus_pre_6"),
        claims=(
            Claim("post_2", "<=", UNIGRAM, 0.4),  # two post-norm blocks train without warm-up
            # six do not: they stay next to the unigram loss
            Claim("post_6", ">=", 2.9),
            Claim("post_6", "<=", 3.35),
            # with a warm-up they do, and so do six pre-norm blocks without one
            Claim("post_6_warmup", "<=", UNIGRAM, 0.2), Claim("post_6_warmup", "<=", "post_6", 0.25),
            Claim("pre_6", "<=", UNIGRAM, 0.2), Claim("pre_6", "<=", "post_6", 0.2),
            # once it trains, post-norm is not worse than pre-norm (by more than 0.1 nats)
            Claim("post_6_warmup_minus_pre_6", "<=", 0.1),
        ),
        tolerance=0.15, fmt=".3f",
    ),
)
