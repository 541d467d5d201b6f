"""The trained experiments of 06_state_space.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/06_state_space.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="selective_copy", notebook=NOTEBOOK,
        description="selective copying (24 steps, 2 symbols of 4), H = 8, one layer, 500 Adam steps: "
                    "held-out accuracy at the markers (chance 0.25) and the loss of the last 20 steps",
        metrics=("s4d_accuracy", "mamba_accuracy", "s4d_final_loss", "mamba_final_loss"),
        claims=(
            Claim("mamba_accuracy", ">=", 0.95),  # Mamba solves it
            Claim("mamba_accuracy", ">=", "s4d_accuracy", 0.1),  # S4D, trained as long, stays well behind
            Claim("s4d_accuracy", ">=", 0.5),  # yet far above chance, 0.25: an LTI layer can fit some of it
            Claim("mamba_final_loss", "<=", 0.1),
            Claim("s4d_final_loss", ">=", "mamba_final_loss", 0.25),
        ),
        tolerance={"s4d_accuracy": 0.1, "mamba_accuracy": 0.05, "s4d_final_loss": 0.2, "mamba_final_loss": 0.1},
        fmt=".3f",
    ),
    Experiment(
        name="mamba_selection", notebook=NOTEBOOK,
        description="the trained Mamba on the held-out blank regions: log10 of how much more a step writes "
                    "(|Delta_t x_t| |B_t|) and how much larger Delta_t is when its window holds a symbol, "
                    "and Delta_t on windows of blanks only",
        metrics=("log10_write_ratio", "log10_delta_ratio", "delta_blanks"),
        claims=(
            Claim("log10_write_ratio", ">=", 0.4771),  # writes at least 3 times more
            Claim("log10_delta_ratio", ">=", 0.3010),  # a step size at least twice as large
            Claim("delta_blanks", "<=", 0.05),  # on blanks, Delta_t is near 0
        ),
        tolerance={"log10_write_ratio": 0.3, "log10_delta_ratio": 0.3, "delta_blanks": 0.02},
        fmt=".3f",
    ),
)
