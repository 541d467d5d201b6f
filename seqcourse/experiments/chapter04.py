"""The trained experiments of 04_convolutions.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/04_convolutions.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="delayed_parity", notebook=NOTEBOOK,
        description="delayed parity (lag 12, T = 48), 300 Adam steps: held-out accuracy of TCNs with R = 7 and "
                    "R = 15 and an LSTM (H = 64), when the 3-level TCN's training loss first fell below 0.05, its "
                    "mean loss over the last 50 steps, and the LSTM's lowest training loss",
        metrics=("tcn_2_levels", "tcn_3_levels", "lstm", "tcn_3_levels_first_step_below_0_05",
                 "tcn_3_levels_last_50_steps_loss", "lstm_lowest_loss"),
        claims=(
            # R = 7 <= lag 12: at chance by construction (36,000 held-out predictions, standard error 0.0026)
            Claim("tcn_2_levels", ">=", 0.48), Claim("tcn_2_levels", "<=", 0.52),
            # R = 15 > 12: exact, its training loss below 0.05 well within the 300 steps and at 0 by the end
            Claim("tcn_3_levels", ">=", 0.99), Claim("tcn_3_levels_first_step_below_0_05", "<=", 250),
            Claim("tcn_3_levels_last_50_steps_loss", "<=", 0.01),
            # the LSTM learns part of the task, not all of it
            Claim("lstm", ">=", "tcn_2_levels", 0.2), Claim("lstm", "<=", "tcn_3_levels", 0.1),
            Claim("lstm_lowest_loss", ">=", 0.05),
        ),
        tolerance={"tcn_2_levels": 0.01, "tcn_3_levels": 0.01, "lstm": 0.1, "tcn_3_levels_first_step_below_0_05": 30,
                   "tcn_3_levels_last_50_steps_loss": 0.01, "lstm_lowest_loss": 0.1},
        fmt=".4f",
    ),
)
