"""The trained experiments of 02_gradients.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/02_gradients.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="rnn_adding_gradient", notebook=NOTEBOOK,
        description="vanilla RNN (H = 32), 200 Adam steps on the adding problem (T = 30): W_h and the gradient "
                    "||dL/dh_0|| / ||dL/dh_29|| before and after training",
        metrics=("rho_initial", "rho_trained", "sigma_max_initial", "sigma_max_trained", "mean_tanh_initial",
                 "mean_tanh_trained", "log10_gradient_ratio", "per_step_factor"),
        claims=(),
        tolerance=0.1, fmt=".3f",
    ),
    Experiment(
        name="clipping", notebook=NOTEBOOK,
        description="adding problem (T = 10), vanilla RNN with rho(W_h) = 1.5, 150 SGD steps at lr 0.1: "
                    "no clipping, norm clipping (1), value clipping (0.03)",
        metrics=("no_clipping_steps", "no_clipping_log10_largest_grad_norm", "norm_clipping_loss",
                 "value_clipping_loss"),
        claims=(),
        tolerance=0.1, fmt=".4g",
    ),
    Experiment(
        name="orthogonal_adding_gradient", notebook=NOTEBOOK,
        description="after 200 Adam steps on the adding problem (T = 30): log10 of ||dL/dh_0|| / ||dL/dh_29|| "
                    "for the vanilla and orthogonal RNNs and the orthogonal one without tanh; orthogonality of W_h",
        metrics=("log10_ratio_vanilla", "log10_ratio_orthogonal", "log10_ratio_no_tanh", "log10_orthogonality_error",
                 "log10_power_drift"),
        claims=(),
        tolerance=0.5, fmt=".3f",
    ),
    Experiment(
        name="copy_task", notebook=NOTEBOOK,
        description="copy task (S = 2 of K = 4 symbols), 100 Adam steps: recall accuracy at delays 5, 20, 50, "
                    "and how often the vanilla RNN writes a blank",
        metrics=("vanilla_d5", "vanilla_d20", "vanilla_d50", "orthogonal_d5", "orthogonal_d20", "orthogonal_d50",
                 "vanilla_blank_d5", "vanilla_blank_d20", "vanilla_blank_d50"),
        claims=(),
        tolerance=0.1, fmt=".3f",
    ),
    Experiment(
        name="adding_problem", notebook=NOTEBOOK,
        description="adding problem, 200 Adam steps: test MSE on 2000 sequences at T = 10 and 30 "
                    "(the constant prediction costs 1/6 = 0.1667)",
        metrics=("vanilla_t10", "orthogonal_t10", "vanilla_t30", "orthogonal_t30"),
        claims=(),
        tolerance=0.02, fmt=".4f",
    ),
)
