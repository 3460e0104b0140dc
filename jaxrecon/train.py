"""Full-batch training of homogeneous nets into the implicit-bias regime: the config, the step, the metrics.

Optimizers: 'relative_gd' (the default: ||step|| / ||theta|| = lr / max(1, -log Loss) along -grad Loss, so
lr is dimensionless: no data scale, width or depth in it; lr 0.03 trains the sphere tasks and the 3-layer
MNIST / CIFAR-10 nets alike, docs/noprior.md has the comparison), 'gd' (theta -= lr grad; the reference
protocol is lr 0.01), 'normalized_gd' (the step divided by the loss, lr_eff = min(lr / loss, lr_cap)),
'log_normalized_gd' (lr_eff = lr / (loss * max(1, -log loss)^(2 - 2/L)) for an L-homogeneous net: the
previous default; its lr depends on the data scale), 'sumo', 'muon' (optax.contrib.muon: Newton-Schulz
orthogonalized momentum on the weight matrices, Adam on biases), and any optax optimizer by name ('adam',
'sgd', ...), optionally loss-normalized as well (`normalize=True`). `weight_decay` adds wd/2 ||theta||^2 to
the objective (coupled, as PyTorch's SGD weight_decay: the optimizer sees grad Loss + wd theta); it is refused
with the loss-normalized rules, whose step is defined by the loss alone. The loss-normalized rules are optax
transformations in `jaxrecon.optim.schedules` (why the relative step shrinks like 1/|log Loss| is told there);
plain GD, by contrast, has a relative step that shrinks like Loss |log Loss|.

Loss-normalized steps use grad Loss / Loss = grad log Loss computed in log space, so they keep working
after the loss itself underflows (below ~1e-308 in float64, ~1e-38 in float32). The step loop runs inside
compiled chunks (one program for every chunk length) between fixed boundaries (`boundaries`: log rows and log-spaced checkpoints at
{1, 2, 5} x 10^k steps), so a run resumed from a checkpoint repeats exactly the same computation; the job that
writes and resumes run folders is `jaxrecon.experiments.train`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from optax import contrib as optax_contrib

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import losses
from jaxrecon import nets
from jaxrecon import workdir as wd
from jaxrecon.optim import schedules
from jaxrecon.optim import sumo

@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run: data, architecture, loss, optimizer and schedule.

  Attributes:
    data: What to train on (DataConfig).
    widths: Hidden widths, e.g. 1000 or 1000,1000.
    init_scales: Per-layer init std (N(0,1)*s); 'default' or missing = PyTorch's U(+-1/sqrt(fan_in)).
    first_bias: First-layer bias (keeps the net homogeneous).
    loss: Training loss: logistic | exponential.
    optimizer: relative_gd (lr = the relative step ||step||/||theta|| at loss >= 1/e, then divided by
      -log Loss) | gd | normalized_gd | log_normalized_gd | sumo | muon | an optax name (adam, sgd, ...).
    lr: Learning rate (relative_gd: the dimensionless relative step; normalized_gd: the step is lr / loss).
    lr_cap: normalized_gd: cap on the effective step lr / loss (empty = none).
    lr_step_every: StepLR (PyTorch's, as 2410.07632's authors train): multiply lr by lr_step_gamma every this
      many steps (gd and optax optimizers; 0 = constant lr).
    lr_step_gamma: StepLR's factor.
    momentum: Momentum for the GD rules.
    normalize: Divide an optax optimizer's gradient by the loss first.
    weight_decay: Coupled L2 weight decay wd: the optimizer gets grad Loss + wd theta (gd and the optax
      optimizers, sumo, muon; not the loss-normalized rules). At a stationary point of Loss + wd/2 ||theta||^2,
      theta = sum_i lambda_i grad q_i with lambda_i = -loss'(q_i) / (n wd) (Buzaglo et al. 2023).
    steps: Training steps.
    target_loss: Stop once the training loss is at or below this (0 = never).
    max_wall_s: Stop after this many seconds of training (0 = no limit).
    log_every: Metrics row and progress line every this many steps.
    checkpoint_mantissas: Checkpoints at these mantissas x 10^k steps (and the last step).
    dtype: Parameter and data dtype.
    seed: Seed for data and initialization.
    kink_tol: Relative |w.x| below which a pair counts as near its ReLU kink (the relaxed residual).
    relaxed: Also solve the relaxed KKT residual (kink neighbourhood) in the summary.
  """
  data: data_lib.DataConfig = data_lib.DataConfig()
  widths: tuple = (1000,)
  init_scales: Optional[tuple] = (1e-4,)
  first_bias: bool = False
  loss: str = "logistic"
  optimizer: str = "relative_gd"
  lr: float = 0.03
  lr_cap: Optional[float] = None
  lr_step_every: int = 0
  lr_step_gamma: float = 1.0
  momentum: float = 0.0
  normalize: bool = False
  weight_decay: float = 0.0
  steps: int = 5000
  target_loss: float = 0.0
  max_wall_s: float = 0.0
  log_every: int = 100
  checkpoint_mantissas: tuple = (1, 2, 5)
  dtype: str = "float64"
  seed: int = 0
  kink_tol: float = 1e-3
  relaxed: bool = True

  @staticmethod
  def from_dict(d: dict) -> "TrainConfig":
    return wd.config_from_dict(TrainConfig, d)

  def validate(self) -> None:
    """Raises ValueError naming the field for a config that cannot run (before anything is written)."""
    self.data.validate()
    dtype_of(self)
    if self.loss not in LOSSES:
      raise ValueError(f"loss must be one of {', '.join(LOSSES)} (the registry losses.LOSSES); "
                       f"got {self.loss!r}")
    for name in ("steps", "log_every"):
      if getattr(self, name) < (1 if name == "steps" else 0):
        raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
    if not self.widths or min(self.widths) < 1:
      raise ValueError(f"widths must be positive integers; got {self.widths}")
    if not (self.lr > 0 and math.isfinite(self.lr)):
      raise ValueError(f"lr must be a positive number; got {self.lr}")
    if self.lr_step_every < 0 or not self.lr_step_gamma > 0:
      raise ValueError(f"lr_step_every must be >= 0 and lr_step_gamma > 0; got {self.lr_step_every}, "
                       f"{self.lr_step_gamma}")
    if self.lr_step_every and (gd_rules().get(self.optimizer) or self.optimizer == "sumo" or self.normalize):
      raise ValueError(f"lr_step_every (StepLR) applies to plain gd and optax optimizers, not {self.optimizer!r}"
                       + (" with normalize" if self.normalize else ""))
    make_optimizer(self)  # unknown optimizer names fail here

  def mlp(self, d_in: int, n_out: int) -> nets.MLPConfig:
    return nets.MLPConfig(d_in=d_in, widths=tuple(self.widths), n_out=n_out,
                          init_scales=self.init_scales, first_bias=self.first_bias)


# A certificate above this (an upper bound on eps_rel) means the run is not near a KKT point yet.
CERT_FAR = 0.5


class TrainState(NamedTuple):
  params: nets.Params
  opt_state: optax.OptState


def gd_rules() -> dict:
  """Gradient-descent optimizer names -> their step rule: 'gd' (none) and '<rule>_gd' for every entry of the
  registry `schedules.STEP_RULES` (read when called, so an added rule is an optimizer at once)."""
  return {"gd": None, **{f"{rule}_gd": rule for rule in schedules.STEP_RULES}}


def make_optimizer(config: TrainConfig) -> tuple:
  """(optax transformation, whether it takes grad log Loss): its `update` takes the extra argument log_loss.

  A loss-normalized configuration is `schedules.scale_by_loss` chained before the optimizer proper."""
  name = config.optimizer
  lr = config.lr
  if config.lr_step_every > 0:  # StepLR: lr gamma^floor(t / every) at step t (counted from 0), in the default
    every, gamma = config.lr_step_every, config.lr_step_gamma  # float dtype (optax's decay would be float32)
    lr = lambda count: config.lr * gamma ** (count // every)  # noqa: E731
  rules = gd_rules()
  if name in rules:
    # a rule that sets the step length itself (relative_gd: lr is the relative step) runs the optimizer at lr 1
    sets_length = rules[name] is not None and schedules.STEP_RULES[rules[name]].sets_length
    base = optax.sgd(1.0 if sets_length else lr, momentum=config.momentum or None)
    normalized = name != "gd" or config.normalize
    rule = rules[name] or "normalized"
  elif name == "sumo":  # SUMO on the weight matrices, AdamW (same lr) on biases
    # the randomized projector's key comes from the run's seed (a stream of its own)
    base = sumo.sumo(config.lr, key=jax.random.fold_in(jax.random.key(config.seed), 0x5D30))
    normalized, rule = config.normalize, "normalized"
  elif name == "muon":  # optax's Muon: orthogonalized momentum on matrices, Adam on the rest
    base = optax_contrib.muon(lr)
    normalized, rule = config.normalize, "normalized"
  else:
    base = _optax_by_name(name, lr)
    normalized, rule = config.normalize, "normalized"
  if config.weight_decay:
    if normalized:
      raise ValueError(f"weight_decay needs an unnormalized optimizer (gd, sgd, adam, muon, sumo); "
                       f"{name!r}{' with normalize' if config.normalize else ''} steps by the loss alone")
    base = optax.chain(optax.add_decayed_weights(config.weight_decay), base)
  if normalized:
    return optax.chain(schedules.scale_by_loss(rule, config.lr, config.lr_cap), base), True
  return optax.with_extra_args_support(base), False


def _optax_by_name(name: str, lr: float) -> optax.GradientTransformation:
  factory = getattr(optax, name, None)
  if factory is None or not callable(factory):
    raise ValueError(f"unknown optimizer {name!r}: use 'gd', 'normalized_gd' or an optax name like 'adam'")
  try:
    opt = factory(learning_rate=lr)
  except TypeError as e:
    raise ValueError(f"optax.{name} cannot be built from a learning rate alone: {e}") from None
  if not isinstance(opt, optax.GradientTransformation):
    raise ValueError(f"optax.{name} is not an optimizer")
  return opt


def loss_fn(params, x, y, loss: str) -> jax.Array:
  return losses.mean_loss(loss, kkt.margins_of(params, x, y))


def log_loss_fn(params, x, y, loss: str) -> jax.Array:
  return losses.log_mean_loss(loss, kkt.margins_of(params, x, y))


def make_train_step(config: TrainConfig, optimizer: optax.GradientTransformationExtraArgs, normalized: bool):
  """(state, x, y) -> (state, log loss): one full-batch step. Pure; scan and jit at the caller.

  Normalized: the gradient fed to the optimizer is grad log Loss = grad Loss / Loss (the optimizer from
  `make_optimizer` scales it by its rule); otherwise grad Loss. The optimizer gets log_loss either way.
  """
  def step(state: TrainState, x, y):
    if normalized:
      log_loss, grads = jax.value_and_grad(log_loss_fn)(state.params, x, y, config.loss)
    else:
      loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y, config.loss)
      log_loss = jnp.log(loss)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, log_loss=log_loss)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), log_loss
  return step


def make_chunk_runner(step_fn) -> Callable:
  """jit((state, x, y, length) -> state) running `length` steps in one compiled loop.

  `length` is traced (a while loop), so chunks of every length (the log and checkpoint boundaries make
  many) share ONE compiled program instead of one per length."""
  def run(state, x, y, length):
    return jax.lax.fori_loop(0, length, lambda _, s: step_fn(s, x, y)[0], state)
  return jax.jit(run)


def metrics_fn(params, x, y, x_test, y_test, loss: str) -> dict:
  """Per-chunk metrics: loss, accuracies, q_min, normalized margin, ||theta||, the cheap certificate."""
  q = kkt.margins_of(params, x, y)
  theta_norm = nets.param_norm(params)
  cert_rel, cert_abs = kkt.certificate(params, x, y, loss)
  out = {
      "loss": losses.mean_loss(loss, q),
      "log10_loss": losses.log_mean_loss(loss, q) / jnp.log(10.0),
      "train_acc": jnp.mean((q > 0).astype(x.dtype)),
      "q_min": jnp.min(q),
      "normalized_margin": jnp.min(q) / theta_norm ** nets.degree(params),
      "theta_norm": theta_norm,
      "cert_eps_rel": cert_rel,
      "cert_eps_abs": cert_abs,
  }
  out["test_acc"] = (jnp.mean((kkt.margins_of(params, x_test, y_test) > 0).astype(x.dtype))
                     if x_test.shape[0] else jnp.nan)
  return out


def checkpoint_steps(total: int, mantissas=(1, 2, 5)) -> list:
  """Log-spaced steps {m * 10^k} up to total, plus total itself."""
  out = {total}
  k = 0
  while 10 ** k <= total:
    out.update(m * 10 ** k for m in mantissas if m * 10 ** k <= total)
    k += 1
  return sorted(s for s in out if s > 0)


def boundaries(total: int, log_every: int, mantissas) -> list:
  """The steps where a run stops its scan: every log_every steps and every checkpoint."""
  grid = set(range(log_every, total + 1, log_every)) if log_every > 0 else set()
  return sorted(grid | set(checkpoint_steps(total, mantissas)))


def dtype_of(config):
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"dtype must be float32 or float64, got {config.dtype!r}")
  if config.dtype == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax_enable_x64 (scripts enable it at start)")
  return jnp.dtype(config.dtype)


LOSSES = losses.LOSSES  # the loss registry (jaxrecon.losses): a new loss is one entry there


def validate(config: TrainConfig) -> None:
  """`config.validate()` (kept for callers of the function)."""
  config.validate()


