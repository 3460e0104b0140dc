"""The reconstruction attack of Haim et al. 2022: its loss (`loss`), run as one compiled sweep over
configurations (`sweep`), and the evaluation of its candidates (`evaluate`)."""

from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import (OPTIMIZERS, PRIORS, VARIANTS, AttackConfig, AttackState, Aux, attack_loss,
                                  attack_target, candidate_labels, candidate_margins, init_state, make_optimizer,
                                  make_step, stationarity_gap, surrogate_relu, surrogate_weighted_gradient)
from jaxrecon.attack.sweep import (LOG_SWEPT, REFERENCE_RANGES, Hyper, SweepConfig, SweepProgress, SweepResult,
                                   config_mesh, grid_sweep, make_sweep_runner, random_sweep, run_halving,
                                   run_sweep)
