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
        claims=(
            # training lifts the largest singular value above 1: the bound sigma_max^k no longer forbids growth
            Claim("sigma_max_trained", ">=", 1.15), Claim("sigma_max_trained", ">=", "sigma_max_initial", 0.1),
            # the units move into the curved part of the tanh
            Claim("mean_tanh_trained", "<=", "mean_tanh_initial", 0.05),
            # yet the gradient shrinks by more than four orders of magnitude over 29 steps,
            # by a factor per step below the spectral radius
            Claim("log10_gradient_ratio", "<=", -4.0),
            Claim("per_step_factor", "<=", "rho_trained", 0.02), Claim("per_step_factor", "<=", 0.75),
        ),
        tolerance={"rho_initial": 0.0, "rho_trained": 0.15, "sigma_max_initial": 0.0, "sigma_max_trained": 0.2,
                   "mean_tanh_initial": 0.0, "mean_tanh_trained": 0.05, "log10_gradient_ratio": 1.0,
                   "per_step_factor": 0.08}, fmt=".3f",
    ),
    Experiment(
        name="clipping", notebook=NOTEBOOK,
        description="adding problem (T = 10), vanilla RNN with rho(W_h) = 1.5, 300 SGD steps at lr 0.1: "
                    "no clipping, norm clipping (1), value clipping (0.03)",
        metrics=("no_clipping_steps", "no_clipping_log10_largest_grad_norm", "norm_clipping_loss",
                 "value_clipping_loss"),
        claims=(
            # without clipping the run diverges, long before its 300 steps, after gradients beyond 1e15
            Claim("no_clipping_steps", "<=", 200), Claim("no_clipping_log10_largest_grad_norm", ">=", 15.0),
            # both clipped runs train: below the constant prediction's 1/6
            Claim("norm_clipping_loss", "<=", 0.1667, 0.02), Claim("value_clipping_loss", "<=", 0.1667, 0.02),
        ),
        tolerance={"no_clipping_steps": 40, "no_clipping_log10_largest_grad_norm": 1.5, "norm_clipping_loss": 0.03,
                   "value_clipping_loss": 0.03}, fmt=".4g",
    ),
    Experiment(
        name="orthogonal_adding_gradient", notebook=NOTEBOOK,
        description="after 200 Adam steps on the adding problem (T = 30): log10 of ||dL/dh_0|| / ||dL/dh_29|| "
                    "for the vanilla and orthogonal RNNs and the orthogonal one without tanh; orthogonality of W_h",
        metrics=("log10_ratio_vanilla", "log10_ratio_orthogonal", "log10_ratio_no_tanh", "log10_orthogonality_error",
                 "log10_power_drift"),
        claims=(
            # the orthogonal model keeps more than four orders of magnitude more gradient at h_0 ...
            Claim("log10_ratio_orthogonal", ">=", "log10_ratio_vanilla", 4.0),
            Claim("log10_ratio_orthogonal", ">=", -1.5),
            # ... the tanh still costs it some ...
            Claim("log10_ratio_orthogonal", "<=", -0.5),
            # ... and without the tanh the gradient arrives whole
            Claim("log10_ratio_no_tanh", "<=", 0.01), Claim("log10_ratio_no_tanh", ">=", -0.01),
            # W_h stays orthogonal through training: ||W^T W - I||_F < 1e-5, powers drift < 0.1%
            Claim("log10_orthogonality_error", "<=", -5.0), Claim("log10_power_drift", "<=", -3.0),
        ),
        tolerance={"log10_ratio_vanilla": 1.0, "log10_ratio_orthogonal": 0.3, "log10_ratio_no_tanh": 0.005,
                   "log10_orthogonality_error": 0.3, "log10_power_drift": 0.5}, fmt=".3f",
    ),
    Experiment(
        name="copy_task", notebook=NOTEBOOK,
        description="copy task (S = 2 of K = 4 symbols), 100 Adam steps: recall accuracy at delays 5, 20, 50, "
                    "and how often the vanilla RNN writes a blank",
        metrics=("vanilla_d5", "vanilla_d20", "vanilla_d50", "orthogonal_d5", "orthogonal_d20", "orthogonal_d50",
                 "vanilla_blank_d5", "vanilla_blank_d20", "vanilla_blank_d50"),
        claims=(
            # the linear orthogonal RNN recalls every symbol at every delay
            Claim("orthogonal_d5", ">=", 0.99), Claim("orthogonal_d20", ">=", 0.99), Claim("orthogonal_d50", ">=", 0.99),
            # the vanilla RNN beats chance (1/4) only at the shortest delay, far below the orthogonal one
            Claim("vanilla_d5", ">=", 0.25, 0.03), Claim("vanilla_d5", "<=", "orthogonal_d5", 0.4),
            # at the longer delays it recalls nothing and writes a blank at every recall step
            Claim("vanilla_d20", "<=", 0.01), Claim("vanilla_d50", "<=", 0.01),
            Claim("vanilla_blank_d20", ">=", 0.99), Claim("vanilla_blank_d50", ">=", 0.99),
        ),
        tolerance=0.1, fmt=".3f",
    ),
    Experiment(
        name="adding_problem", notebook=NOTEBOOK,
        description="adding problem, 200 Adam steps: test MSE on 2000 sequences at T = 10 and 30 "
                    "(the constant prediction costs 1/6 = 0.1667)",
        metrics=("vanilla_t10", "orthogonal_t10", "vanilla_t30", "orthogonal_t30"),
        claims=(
            # at T = 10 the orthogonal model gets below the constant prediction (1/6) ...
            Claim("orthogonal_t10", "<=", 0.1667, 0.01),
            # ... at T = 30 neither model does, within 200 steps
            Claim("vanilla_t30", ">=", 0.1567), Claim("orthogonal_t30", ">=", 0.1567),
        ),
        tolerance=0.02, fmt=".4f",
    ),
)
