"""The attack loss of Haim et al. 2022: the KKT conditions of the max-margin problem, solved for the data.

Unknowns: m candidates x_hat (m, d) with fixed balanced labels y_hat, and multipliers lam (m,). Loss:
  L_stat   = sum over parameter tensors || target - (1/m) sum_k lam_k grad_theta q_k(theta; x_hat_k) ||^2
  L_lambda = lambda_weight sum_k relu(lambda_min - lam_k)^2   (not in the signed-lambda variant)
  L_prior  = prior_weight sum relu(x_hat - s - box)^2 + relu(s - box - x_hat)^2   (the box prior about the
             configuration's init shift s, in mean-subtracted space; prior_weight 0 = no prior)
with q_k = y_hat_k Phi(x_hat_k) (binary) or Phi_y - max_{j != y} Phi_j (multiclass), target = theta (or
theta - theta_init when the attacker knows the initialization, Loo et al. 2024). sum_k c_k grad q_k is one
vector-Jacobian product. During the attack ReLU keeps its forward value but its derivative is sigmoid(alpha z),
a `custom_jvp` whose rule JAX differentiates again in the outer gradient, as the reference's autograd does
(for a true ReLU the x-gradient of grad_theta Phi would vanish almost everywhere).

Everything here is one configuration; `jaxrecon.attack.sweep` vmaps it over many.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxrecon import losses
from jaxrecon import nets
from jaxrecon.optim import sumo

PRIORS = ("box", "none", "sphere")


VARIANTS = ("binary", "multiclass", "signed")


OPTIMIZERS = ("sgd", "adam", "sumo")


# Where the candidates start: gaussian (shift + N(0, 1) x init_scale in every coordinate; the reference's image
# attack) | sphere_one_coordinate (uniform on the sphere of radius init_scale about the origin, the shift added
# to ONE random coordinate, drawn per configuration: "No Prior, No Leakage"'s sphere experiment, as their
# extraction.py has it).
INITS = ("gaussian", "sphere_one_coordinate")
TARGETS = ("theta", "sign", "sign_cone")


@jax.custom_jvp
def surrogate_relu(z: jax.Array, alpha: jax.Array) -> jax.Array:
  """relu(z) forward; EVERY derivative of the output is sigmoid(alpha z), in every pass.

  This is the reference's modified ReLU (a torch autograd Function whose backward is sigmoid(alpha z),
  differentiated again by create_graph=True). The JVP rule returns the primal through `surrogate_relu`
  itself, so when an outer derivative differentiates the rule (the attack's x-gradient of grad_theta Phi),
  paths through the activation's VALUE (h_l in grad W_{l+1}, z_{l+1} = h_l W_{l+1}) again see
  sigmoid(alpha z) and never the true step 1[z > 0]. The tangent's own derivative is alpha s (1 - s).
  """
  return jax.nn.relu(z)


@surrogate_relu.defjvp
def _surrogate_relu_jvp(primals, tangents):
  z, alpha = primals
  dz, _ = tangents  # alpha is a hyperparameter: never differentiated
  return surrogate_relu(z, alpha), jax.nn.sigmoid(alpha * z) * dz


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """What is fixed across the configurations of one sweep.

  Attributes:
    m: Candidates per configuration (0 = twice the training set).
    steps: Attack steps per configuration.
    optimizer: sgd (momentum, the reference) | adam | sumo.
    momentum: Momentum of sgd (and of the multipliers under sumo).
    lr_lambda: Learning rate of the multipliers (a sweep may list several: `hyper.SweepConfig.lr_lambda`).
    lambda_weight: Weight of the penalty relu(lambda_min - lambda)^2.
    prior: box (penalty outside [shift - box, shift + box]) | none | sphere (candidates start on the sphere of
      the configuration's radius about its shift, both swept values: see `hyper.Hyper`; no penalty).
    box: Half-width of the box prior, in the mean-subtracted space.
    prior_weight: Weight of the box penalty (0 = no prior, as in the "No Prior, No Leakage" grid).
    variant: binary | multiclass (switched on by itself for a multiclass net) | signed (multipliers of
      either sign: nets trained with weight decay).
    match_init: Target theta - theta_init (the attacker knows the initialization, Loo et al. 2024).
    target: theta (l2 stationarity: theta = sum lam grad q, what gradient descent's limit satisfies) | sign
      (l_inf stationarity, what sign descent's and Adam's limits satisfy: sum lam grad q is a subgradient of
      ||theta||_inf, supported on the saturated coordinates with theta's signs; the target is the uniform
      one, sign(theta_j) on {|theta_j| >= sign_tol max|theta|}, 0 elsewhere, scaled to ||theta||) | sign_cone
      (the same condition with the weights on the saturated coordinates free: the weighted gradient must lie in
      the cone {w_j sign(theta_j) on the saturated set, w >= 0}, its total mass fixed to the uniform one's;
      `cone_gap`).
    sign_tol: target 'sign': the fraction of max|theta| above which a coordinate counts as saturated.
    n_classes: Classes of a multiclass net (set by the job from the net).
    init: Where the candidates start: gaussian | sphere_one_coordinate (see INITS).
    layer_weights: Per-layer weights of the stationarity term (empty = 1 for every layer, the reference). A
      layer whose init training has not washed out (a 3-layer net's PyTorch-default middle layer) puts a floor
      under the term that the true training set attains too (scripts/bench_floor.py); weight 0 leaves it out.
    dtype: Attack dtype (float32 | float64).
    chunk: Configurations per compiled call (0 = all at once; rounded up to the device count).
    log_every: Metrics row and progress line every this many steps.
  """
  m: int = 0
  steps: int = 1000
  optimizer: str = "sgd"
  momentum: float = 0.9
  lr_lambda: float = 1e-4
  lambda_weight: float = 5.0
  prior: str = "box"
  box: float = 1.0
  prior_weight: float = 1.0
  variant: str = "binary"
  match_init: bool = False
  target: str = "theta"
  sign_tol: float = 0.5
  n_classes: int = 1
  layer_weights: tuple = ()
  init: str = "gaussian"
  dtype: str = "float32"
  chunk: int = 0
  log_every: int = 100

  def __post_init__(self):  # a config that cannot run is refused when it is made
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot be right."""
    if self.prior not in PRIORS:
      raise ValueError(f"unknown prior {self.prior!r}; expected one of {PRIORS}")
    if self.variant not in VARIANTS:
      raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
    if self.target not in TARGETS:
      raise ValueError(f"unknown attack target {self.target!r}; expected one of {TARGETS}")
    if not 0.0 < self.sign_tol <= 1.0:
      raise ValueError(f"sign_tol must be in (0, 1], got {self.sign_tol}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown attack optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
    if self.init not in INITS:
      raise ValueError(f"unknown candidate init {self.init!r}; expected one of {INITS}")
    if any(not (w >= 0 and w < float("inf")) for w in self.layer_weights):
      raise ValueError(f"layer_weights must be finite and >= 0, got {self.layer_weights}")
    if self.steps < 1 or self.m < 0 or self.chunk < 0 or self.log_every < 0 or self.prior_weight < 0:
      raise ValueError(f"bad AttackConfig sizes: {self}")


class AttackState(NamedTuple):
  x: jax.Array        # (m, d) candidates
  lam: jax.Array      # (m,) multipliers
  opt_state: optax.OptState
  diverged: jax.Array  # () bool: a step produced a non-finite loss; the state is frozen at the last good one


class Aux(NamedTuple):
  loss: jax.Array
  stat: jax.Array
  lam_pen: jax.Array
  prior: jax.Array


def candidate_labels(m: int, n_classes: int = 1) -> jax.Array:
  """Fixed balanced labels: -1, +1 alternating halves for binary, k mod K for K classes."""
  if n_classes <= 1:
    return jnp.where(jnp.arange(m) < m // 2, -1.0, 1.0)
  return jnp.arange(m, dtype=jnp.int32) % n_classes


def attack_target(params: nets.Params, params_init: Optional[nets.Params] = None, target: str = "theta",
                  sign_tol: float = 0.5) -> nets.Params:
  """What the weighted gradients must explain: theta, or theta - theta_init (Loo et al. 2024); with target
  'sign', the uniform l_inf subgradient of that: sign on the coordinates within sign_tol of the largest |entry|,
  0 elsewhere, scaled to the same l2 norm (so the attack's learning rates keep their meaning)."""
  t = params if params_init is None else jax.tree_util.tree_map(lambda p, p0: p - p0, params, params_init)
  if target == "theta":
    return t
  if target not in ("sign", "sign_cone"):
    raise ValueError(f"unknown attack target {target!r}; expected one of {TARGETS}")
  leaves = jax.tree_util.tree_leaves(t)
  top = jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in leaves]))
  s = jax.tree_util.tree_map(lambda v: jnp.where(jnp.abs(v) >= sign_tol * top, jnp.sign(v), 0.0).astype(v.dtype), t)
  scale = nets.param_norm(t) / jnp.maximum(nets.param_norm(s), 1.0)
  return jax.tree_util.tree_map(lambda v: v * scale.astype(v.dtype), s)


def surrogate_weighted_gradient(params, x_MD, lam_M, y_hat, alpha) -> nets.Params:
  """(1/m) sum_k lam_k grad_theta q_k with the surrogate ReLU: one vector-Jacobian product."""
  act = lambda z: surrogate_relu(z, alpha)

  def weighted(p):
    q = losses.margins(nets.apply(p, x_MD, act), y_hat)
    return jnp.sum(lam_M * q) / x_MD.shape[0]
  return jax.grad(weighted)(params)


def stationarity_gap(params, target, x_MD, lam_M, y_hat, alpha, *, mean_scaled: bool = True,
                     layer_weights: tuple = ()) -> jax.Array:
  """||target - weighted gradient||^2, the attack's stationarity term (each layer's part weighted by
  layer_weights[l] when given).

  mean_scaled: lam are the attack's multipliers, weighted by 1/m as in the reference; False: lam are KKT
  multipliers themselves (sum_k lam_k grad q_k), e.g. a training set's with its transported multipliers."""
  lam = lam_M if mean_scaled else lam_M * x_MD.shape[0]
  g = surrogate_weighted_gradient(params, x_MD, lam, y_hat, alpha)
  if layer_weights and len(layer_weights) != len(params):
    raise ValueError(f"layer_weights has {len(layer_weights)} entries for a {len(params)}-layer net")
  weights = layer_weights or (1.0,) * len(params)
  return sum(w * sum(jnp.sum(jnp.square(t - u)) for t, u in
                     zip(jax.tree_util.tree_leaves(tl), jax.tree_util.tree_leaves(gl)))
             for w, tl, gl in zip(weights, target, g) if w != 0)


def cone_gap(target, g) -> jax.Array:
  """The squared distance of g from the l_inf subgradient cone the sign target describes, with its mass fixed:
  sum over unsaturated coordinates (target 0) of g^2, over saturated ones of relu(-sign(t) g)^2, plus
  (sum sign(t) g - sum |t|)^2 / |S| (the total along the signs must match the uniform target's)."""
  t_l, g_l = jax.tree_util.tree_leaves(target), jax.tree_util.tree_leaves(g)
  off = sum(jnp.sum(jnp.where(t == 0, jnp.square(u), 0.0)) for t, u in zip(t_l, g_l))
  wrong = sum(jnp.sum(jnp.square(jax.nn.relu(-jnp.sign(t) * u))) for t, u in zip(t_l, g_l))
  mass = sum(jnp.sum(jnp.sign(t) * u) for t, u in zip(t_l, g_l)) - sum(jnp.sum(jnp.abs(t)) for t in t_l)
  size = jnp.maximum(sum(jnp.sum(t != 0) for t in t_l), 1).astype(mass.dtype)
  return off + wrong + jnp.square(mass) / size


def attack_loss(xl, params, target, y_hat, alpha, lambda_min, config: AttackConfig, shift=0.0):
  """(loss, Aux) for candidates and multipliers xl = (x (m, d), lam (m,)); the box is about `shift`."""
  x, lam = xl
  if config.target == "sign_cone":
    stat = cone_gap(target, surrogate_weighted_gradient(params, x, lam, y_hat, alpha))
  else:
    stat = stationarity_gap(params, target, x, lam, y_hat, alpha, layer_weights=config.layer_weights)
  zero = jnp.zeros((), x.dtype)
  lam_pen = zero
  if config.variant != "signed":
    lam_pen = config.lambda_weight * jnp.sum(jnp.square(jax.nn.relu(lambda_min - lam)))
  prior = zero
  if config.prior == "box" and config.prior_weight > 0:
    xs = x - shift
    prior = config.prior_weight * jnp.sum(jnp.square(jax.nn.relu(xs - config.box))
                                          + jnp.square(jax.nn.relu(-config.box - xs)))
  loss = stat + lam_pen + prior
  return loss, Aux(loss, stat, lam_pen, prior)


def make_optimizer(config: AttackConfig, key: Optional[jax.Array] = None) -> optax.GradientTransformation:
  """The direction transform; learning rates (per configuration for x) are applied in the step.

  key: SUMO's projector key, needed by `init` only (the state carries it afterwards).
  """
  if config.optimizer == "sgd":
    return optax.trace(decay=config.momentum)  # torch SGD: buf = mu buf + g; p -= lr buf
  if config.optimizer == "adam":
    return optax.scale_by_adam()
  if config.optimizer == "sumo":  # SUMO direction for the candidate matrix, momentum for the multipliers
    return optax.partition({"x": sumo.scale_by_sumo(key=key), "lam": optax.trace(decay=config.momentum)},
                           ("x", "lam"))
  raise ValueError(config.optimizer)


def init_state(key: jax.Array, m: int, d: int, hyper_one, config: AttackConfig,
               dtype, x_start: Optional[jax.Array] = None) -> AttackState:
  """Candidates x_start + shift + N(0, 1) * init_scale (or uniform on the sphere of radius hyper_one.radius
  about the shift with the sphere prior; or config.init's start), multipliers U[0, 1), for one configuration (`hyper_one`: one row of
  a `hyper.Hyper`). x_start (m, d): given start points (e.g. the training set, for a basin test)."""
  key = jax.random.fold_in(key, hyper_one.seed)
  key_x, key_lam = jax.random.split(key)
  x = jax.random.normal(key_x, (m, d), dtype)
  if config.prior == "sphere":
    x = hyper_one.radius.astype(dtype) * x / jnp.linalg.norm(x, axis=1, keepdims=True)
    x = x + hyper_one.shift.astype(dtype)
  elif config.init == "sphere_one_coordinate":
    x = hyper_one.init_scale.astype(dtype) * x / jnp.linalg.norm(x, axis=1, keepdims=True)
    coordinate = jax.random.randint(jax.random.fold_in(key, 11), (), 0, d)
    x = x.at[:, coordinate].add(hyper_one.shift.astype(dtype))
  else:
    x = x * hyper_one.init_scale.astype(dtype) + hyper_one.shift.astype(dtype)
  if x_start is not None:
    x = x + x_start.astype(dtype)
  lam = jax.random.uniform(key_lam, (m,), dtype)
  opt = make_optimizer(config, jax.random.fold_in(key, 7))
  return AttackState(x, lam, opt.init((x, lam)), jnp.zeros((), bool))


def make_step(config: AttackConfig) -> Callable:
  """(state, hyper_one, params, target, y_hat) -> (state, Aux): one attack step of one configuration."""
  opt = make_optimizer(config)
  grad_fn = jax.value_and_grad(attack_loss, has_aux=True)

  def step(state: AttackState, hyper, params, target, y_hat):
    (_, aux), (gx, gl) = grad_fn((state.x, state.lam), params, target, y_hat, hyper.alpha,
                                 hyper.lambda_min, config, hyper.shift)
    (ux, ul), opt_state = opt.update((gx, gl), state.opt_state, (state.x, state.lam))
    new = AttackState(state.x - hyper.lr_x.astype(ux.dtype) * ux,
                      state.lam - hyper.lr_lambda.astype(ul.dtype) * ul, opt_state, state.diverged)
    ok = jnp.isfinite(aux.loss) & ~state.diverged
    ok = ok & jnp.all(jnp.isfinite(new.x)) & jnp.all(jnp.isfinite(new.lam))
    kept = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
    return kept._replace(diverged=~ok), aux
  return step


def candidate_margins(params, x_MD, y_hat) -> jax.Array:
  """q_k = y_hat_k Phi(x_hat_k) with the true ReLU (for the training-set-free ranking)."""
  return losses.margins(nets.apply(params, x_MD), y_hat)


