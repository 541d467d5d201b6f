"""The trained experiments of 08_comparison.ipynb (see ``claims.Experiment``).

Each family (``comparison.FAMILIES``) trains on a copy task at a short and a long length
(``comparison.long_range_scores``, quick mode: 120 steps, one layer of about 2,000 parameters);
the metrics are ``<family>_short`` and ``<family>_long``, the recall accuracy (chance 0.25, the
bar of ``comparison.long_range_bar`` 0.35). The claims are the table's long-range row as the
chapter tests it at the long length: attention clears the bar, a state-space model clears it, the
plain RNN does not, nor does the TCN where every symbol lies beyond its receptive field.

Then Mamba alone trains again at the long length of both tasks for 4 times as many steps (quick
mode: 480), everything else unchanged; the metrics are ``<task>_1x`` (the table's score) and
``<task>_4x``. The claims: with more steps it recalls nearly every symbol on both tasks,
well above where the table's steps left it (a model that learns slowly, not one that cannot hold a
symbol over the distance).

The chapter's recall section (08b_recall.ipynb) trains four families (a gated recurrence, softmax and
linear attention, a selective state-space model) on multi-query associative
recall (``recall.recall_scores``, quick mode: 300 steps, one layer of about 20,000 parameters) with
N = 4 and N = 16 key–value pairs; the metrics are ``<family>_n<N>``, the recall accuracy (chance
1/16). The claims: attention recalls every pair at both N, each fixed-state family loses accuracy
from N = 4 to N = 16 and ends far below attention.
"""
from ..measure.comparison import FAMILIES
from .claims import Claim, Experiment

NOTEBOOK = "book/08_comparison.ipynb"
RECALL_NOTEBOOK = "book/08b_recall.ipynb"
RECALL_FAMILIES = ("LSTM", "Transformer", "LinearTransformer", "Mamba")  # quick mode: one of each kind
FIXED_STATE = ("lstm", "lineartransformer", "mamba")


def _metrics() -> tuple[str, ...]:
    return tuple(f"{family.lower()}_{length}" for length in ("short", "long") for family in FAMILIES)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="long_range_copy", notebook=NOTEBOOK,
        description="copy task, delays 4 (short) and 32 (long): recall accuracy after 120 steps, chance 0.25",
        metrics=_metrics(),
        claims=(Claim("transformer_long", ">=", 0.9), Claim("s4d_long", ">=", 0.9),
                Claim("lineartransformer_long", ">=", 0.5),
                Claim("rnn_long", "<=", 0.3), Claim("tcn_long", "<=", 0.3),  # every symbol 35 steps back, beyond 31
                Claim("tcn_short", ">=", 0.9)),  # within its receptive field the TCN copies
        tolerance=0.1, fmt=".2f",
    ),
    Experiment(
        name="long_range_selective_copy", notebook=NOTEBOOK,
        description="selective copying over 8 (short) and 32 (long) steps: recall accuracy after 120 steps, chance 0.25",
        metrics=_metrics(),
        claims=(Claim("transformer_long", ">=", 0.5), Claim("s4d_long", ">=", 0.45),
                Claim("rnn_long", "<=", 0.3)),
        tolerance=0.1, fmt=".2f",
    ),
    Experiment(
        name="mamba_longer_training", notebook=NOTEBOOK,
        description="Mamba at the long lengths (delay 32, span 32): recall accuracy after 120 steps (1x) and "
                    "480 steps (4x), chance 0.25",
        metrics=("copy_1x", "copy_4x", "selective_copy_1x", "selective_copy_4x"),
        claims=(Claim("copy_4x", ">=", 0.9), Claim("selective_copy_4x", ">=", 0.9),
                Claim("copy_4x", ">=", "copy_1x", 0.3), Claim("selective_copy_4x", ">=", "selective_copy_1x", 0.2)),
        tolerance=0.1, fmt=".2f",
    ),
    Experiment(
        name="associative_recall", notebook=RECALL_NOTEBOOK,
        description="associative recall with 4 and 16 key-value pairs: accuracy after 300 steps, chance 1/16",
        metrics=tuple(f"{family.lower()}_n{n}" for n in (4, 16) for family in RECALL_FAMILIES),
        claims=(Claim("transformer_n4", ">=", 0.95), Claim("transformer_n16", ">=", 0.95),
                *(Claim(f"{family}_n16", "<=", 0.4) for family in FIXED_STATE),
                *(Claim(f"{family}_n16", "<=", f"{family}_n4", 0.08) for family in FIXED_STATE)),
        tolerance=0.1, fmt=".3f",
    ),
)
