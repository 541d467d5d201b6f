"""The trained experiments of 07_normalization.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/07_normalization.ipynb"

UNIGRAM = 3.114  # the unigram loss of the course corpus, nats per character (deterministic)

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="warmup", notebook=NOTEBOOK,
        description="character LM (width 32, 4 heads), Adam at lr 0.01 for 80 updates: mean loss of the last "
                    "20 updates, nats per character (unigram loss 3.114)",
        metrics=("post_2", "post_6", "post_6_warmup", "pre_6"),
        claims=(
            Claim("post_2", "<=", UNIGRAM, 0.4),  # two post-norm blocks train without warm-up
            Claim("post_6", ">=", UNIGRAM, 0.2),  # six do not: next to the unigram loss
            Claim("post_6_warmup", "<=", "post_6", 0.2),  # with a warm-up they do
            Claim("pre_6", "<=", "post_6", 0.2),  # six pre-norm blocks need none
        ),
        tolerance=0.15, fmt=".3f",
    ),
)
