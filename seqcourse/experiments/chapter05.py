"""The trained experiments of 05_attention.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/05_attention.ipynb"

_S2S = ("no_attention", "additive", "dot_product")

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="reversal_attention", notebook=NOTEBOOK,
        description="reversal, GRU encoder-decoder with no / additive / dot-product attention, 100 steps: "
                    "exact match by source length (1,000 test sources)",
        metrics=tuple(f"{m}_{where}" for where in ("shortest2", "half", "longest") for m in _S2S),
        claims=(
            # all three reverse sources of one or two symbols
            *(Claim(f"{m}_shortest2", ">=", 0.9) for m in _S2S),
            # the bottleneck model falls off first and furthest: next to nothing at the longest length
            Claim("no_attention_longest", "<=", 0.1),
            Claim("additive_half", ">=", "no_attention_half", 0.2),
            Claim("dot_product_half", ">=", "no_attention_half", 0.1),
            Claim("additive_longest", ">=", "no_attention_longest", 0.5),
            Claim("dot_product_longest", ">=", "no_attention_longest", 0.2),
        ),
        tolerance=0.15, fmt=".3f",
    ),
    Experiment(
        name="reversal_alignment", notebook=NOTEBOOK,
        description="reversal, sources of the longest length: mean attention weight on the source position "
                    "each output step must copy",
        metrics=("additive", "dot_product"),
        claims=(Claim("additive", ">=", 0.5), Claim("dot_product", ">=", 0.5)),
        tolerance=0.1, fmt=".3f",
    ),
    Experiment(
        name="char_transformer", notebook=NOTEBOOK,
        description="character Transformer (1 block, H = 64, 4 heads), 150 Adam steps: loss in nats per character",
        metrics=("last_20_steps_loss", "held_out_loss"),
        claims=(
            # far below the uniform guess log 97 = 4.5747
            Claim("last_20_steps_loss", "<=", 3.0), Claim("held_out_loss", "<=", 3.0),
        ),
        tolerance=0.2,
    ),
)
