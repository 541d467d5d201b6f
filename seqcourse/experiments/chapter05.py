"""The trained experiments of 05_attention.ipynb and of its section 05b_transformer_at_work.ipynb
(see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/05_attention.ipynb"
AT_WORK_NOTEBOOK = "book/05b_transformer_at_work.ipynb"

_S2S = ("no_attention", "additive", "dot_product")

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="reversal_attention", notebook=NOTEBOOK,
        description="reversal, GRU encoder-decoder with no / additive / dot-product attention, 200 steps: "
                    "exact match by source length (1,000 test sources)",
        metrics=tuple(f"{m}_{where}" for where in ("shortest2", "three_quarters", "longest") for m in _S2S),
        claims=(
            # all three reverse sources of one or two symbols
            *(Claim(f"{m}_shortest2", ">=", 0.9) for m in _S2S),
            # the bottleneck model falls off first and furthest: at 3/4 of the longest length it gets
            # half or fewer right, at the longest next to nothing; both attention models keep most
            Claim("no_attention_three_quarters", "<=", 0.65),
            Claim("additive_three_quarters", ">=", "no_attention_three_quarters", 0.3),
            Claim("dot_product_three_quarters", ">=", "no_attention_three_quarters", 0.25),
            Claim("no_attention_longest", "<=", 0.25),
            Claim("additive_longest", ">=", 0.8),
            Claim("additive_longest", ">=", "no_attention_longest", 0.6),
            Claim("dot_product_longest", ">=", 0.6),
            Claim("dot_product_longest", ">=", "no_attention_longest", 0.4),
        ),
        tolerance=0.15, fmt=".3f",
    ),
    Experiment(
        name="reversal_alignment", notebook=NOTEBOOK,
        description="reversal, the test sources of the longest length: mean attention weight that an output step "
                    "puts on the source position it must copy (uniform: 1/8)",
        metrics=("additive", "dot_product"),
        claims=(
            # both read the anti-diagonal: at least 3 times the uniform weight 1/8 on the right position
            Claim("additive", ">=", 0.4), Claim("dot_product", ">=", 0.4),
            # and the dot-product model's weights are the sharper
            Claim("dot_product", ">=", "additive"),
        ),
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
    Experiment(
        name="transformer_reversal", notebook=AT_WORK_NOTEBOOK,
        description="reversal, GRU encoder-decoder with additive attention against an encoder-decoder Transformer "
                    "(2 + 2 blocks, D = 32), about 53,000 parameters each, 600 steps: exact match (1,000 test sources)",
        metrics=("gru_shortest2", "transformer_shortest2", "gru_longest", "transformer_longest", "gru_all",
                 "transformer_all"),
        claims=(
            Claim("gru_shortest2", ">=", 0.9), Claim("transformer_shortest2", ">=", 0.9),
            Claim("gru_longest", ">=", 0.9), Claim("transformer_longest", ">=", 0.6),
            Claim("gru_all", ">=", "transformer_all"),
        ),
        tolerance=0.15, fmt=".3f",
    ),
    Experiment(
        name="cross_attention_heads", notebook=AT_WORK_NOTEBOOK,
        description="the trained Transformer's cross-attention heads: mean weight on the mirrored source position "
                    "(the one a reversal step copies), 1,000 test sources, teacher forcing",
        metrics=("best_head", "last_block_weakest_head", "first_block_best_head"),
        claims=(
            Claim("best_head", ">=", 0.6),
            Claim("last_block_weakest_head", ">=", 0.45),
            Claim("first_block_best_head", "<=", 0.5),
        ),
        tolerance=0.1, fmt=".3f",
    ),
)
