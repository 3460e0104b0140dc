"""The reconstruction attack of Haim et al. 2022, run as one compiled, vmapped and sharded sweep.

Unknowns: m candidates x_hat (m, d) with fixed balanced labels y_hat, and multipliers lam (m,). Loss:
  L_stat   = sum over parameter tensors || target - (1/m) sum_k lam_k grad_theta q_k(theta; x_hat_k) ||^2
  L_lambda = 5 sum_k relu(lambda_min - lam_k)^2          (not in the signed-lambda variant)
  L_prior  = sum relu(x_hat - 1)^2 + relu(-1 - x_hat)^2  (the box prior, in mean-subtracted space)
with q_k = y_hat_k Phi(x_hat_k) (binary) or Phi_y - max_{j != y} Phi_j (multiclass), target = theta (or
theta - theta_init when the attacker knows the initialization, Loo et al. 2024). sum_k c_k grad q_k is one
vector-Jacobian product. During the attack ReLU keeps its forward value but its derivative is sigmoid(alpha z),
a `custom_jvp` whose rule JAX differentiates again in the outer gradient, as the reference's autograd does
(for a true ReLU the x-gradient of grad_theta Phi would vanish almost everywhere).

The sweep: C configurations of (init scale, x lr, lambda_min, alpha, seed) advance together in one jitted
`lax.scan` of a vmapped step, in chunks of configurations that fit memory; with several devices the
configuration axis is sharded over a 1-D mesh.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrecon import losses
from jaxrecon import nets

PRIORS = ("box", "none", "sphere")
VARIANTS = ("binary", "multiclass", "signed")
OPTIMIZERS = ("sgd", "adam", "sumo")


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


class Hyper(NamedTuple):
  """Swept values, one entry per configuration (arrays of shape (C,))."""
  init_scale: jax.Array
  lr_x: jax.Array
  lambda_min: jax.Array
  alpha: jax.Array
  seed: jax.Array

  @property
  def size(self) -> int:
    return int(np.shape(self.lr_x)[0])

  def take(self, idx) -> "Hyper":
    return Hyper(*(np.asarray(v)[idx] for v in self))

  def rows(self) -> list:
    return [{k: (int(v[i]) if k == "seed" else float(v[i])) for k, v in self._asdict().items()}
            for i in range(self.size)]


# The reference's random sweep: log-uniform x lr and init scale, uniform lambda_min and alpha.
REFERENCE_RANGES = {"init_scale": (1e-6, 0.1), "lr_x": (1e-5, 1.0), "lambda_min": (0.01, 0.5),
                    "alpha": (10.0, 500.0)}
LOG_SWEPT = ("init_scale", "lr_x")


def random_sweep(key: jax.Array, n: int, ranges: Optional[dict] = None, seeds: int = 1) -> Hyper:
  """n configurations drawn from `ranges` ({name: (lo, hi)}; log-uniform for init_scale and lr_x).

  A range with lo == hi is a fixed value. Seeds cycle over 0..seeds-1.
  """
  ranges = {**REFERENCE_RANGES, **(ranges or {})}
  keys = dict(zip(REFERENCE_RANGES, jax.random.split(key, len(REFERENCE_RANGES))))
  vals = {}
  for name, (lo, hi) in ((k, ranges[k]) for k in REFERENCE_RANGES):
    if lo > hi or (name in LOG_SWEPT and lo <= 0):
      raise ValueError(f"bad range for {name}: ({lo}, {hi})")
    with jax.enable_x64(True):  # scoped: the same key gives the same sweep whatever the caller's x64 mode
      u = np.asarray(jax.random.uniform(keys[name], (n,), jnp.float64))
    if name in LOG_SWEPT:
      vals[name] = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    else:
      vals[name] = lo + u * (hi - lo)
  return Hyper(seed=np.arange(n) % max(seeds, 1), **vals)


def grid_sweep(init_scale: Sequence[float], lr_x: Sequence[float], lambda_min: Sequence[float],
               alpha: Sequence[float], seeds: Sequence[int] = (0,)) -> Hyper:
  """The Cartesian product of the given values (seed varies fastest)."""
  prod = list(itertools.product(init_scale, lr_x, lambda_min, alpha, seeds))
  if not prod:
    raise ValueError("empty grid")
  cols = list(zip(*prod))
  return Hyper(*(np.asarray(c, np.int32 if i == 4 else np.float64) for i, c in enumerate(cols)))


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """What is fixed across the configurations of one sweep.

  m: candidates per configuration (0 = twice the training set). variant: binary | multiclass | signed.
  prior: box (penalty outside [-box, box]) | none | sphere (candidates start on the sphere of radius
  `sphere_radius`, no penalty). match_init: target theta - theta_init. optimizer: sgd (momentum, the
  reference) | adam. chunk: configurations per compiled call (0 = all; rounded up to the device count).
  """
  m: int = 0
  steps: int = 1000
  optimizer: str = "sgd"
  momentum: float = 0.9
  lr_lambda: float = 1e-4
  lambda_weight: float = 5.0
  prior: str = "box"
  box: float = 1.0
  sphere_radius: float = 1.0
  variant: str = "binary"
  match_init: bool = False
  n_classes: int = 1
  dtype: str = "float32"
  chunk: int = 0
  log_every: int = 100

  def __post_init__(self):
    if self.prior not in PRIORS:
      raise ValueError(f"unknown prior {self.prior!r}; expected one of {PRIORS}")
    if self.variant not in VARIANTS:
      raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown attack optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
    if self.steps < 1 or self.m < 0 or self.chunk < 0 or self.log_every < 0:
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


def attack_target(params: nets.Params, params_init: Optional[nets.Params] = None) -> nets.Params:
  """What the weighted gradients must explain: theta, or theta - theta_init (Loo et al. 2024)."""
  if params_init is None:
    return params
  return jax.tree_util.tree_map(lambda p, p0: p - p0, params, params_init)


def weighted_gradient(params, x_MD, lam_M, y_hat, alpha) -> nets.Params:
  """(1/m) sum_k lam_k grad_theta q_k with the surrogate ReLU: one vector-Jacobian product."""
  act = lambda z: surrogate_relu(z, alpha)

  def weighted(p):
    q = losses.margins(nets.apply(p, x_MD, act), y_hat)
    return jnp.sum(lam_M * q) / x_MD.shape[0]
  return jax.grad(weighted)(params)


def stationarity_gap(params, target, x_MD, lam_M, y_hat, alpha, *, mean_scaled: bool = True) -> jax.Array:
  """||target - weighted gradient||^2, the attack's stationarity term.

  mean_scaled: lam are the attack's multipliers, weighted by 1/m as in the reference; False: lam are KKT
  multipliers themselves (sum_k lam_k grad q_k), e.g. a training set's with its transported multipliers."""
  lam = lam_M if mean_scaled else lam_M * x_MD.shape[0]
  g = weighted_gradient(params, x_MD, lam, y_hat, alpha)
  return sum(jnp.sum(jnp.square(t - u)) for t, u in
             zip(jax.tree_util.tree_leaves(target), jax.tree_util.tree_leaves(g)))


def attack_loss(xl, params, target, y_hat, alpha, lambda_min, config: AttackConfig):
  """(loss, Aux) for candidates and multipliers xl = (x (m, d), lam (m,))."""
  x, lam = xl
  stat = stationarity_gap(params, target, x, lam, y_hat, alpha)
  zero = jnp.zeros((), x.dtype)
  lam_pen = zero
  if config.variant != "signed":
    lam_pen = config.lambda_weight * jnp.sum(jnp.square(jax.nn.relu(lambda_min - lam)))
  prior = zero
  if config.prior == "box":
    prior = jnp.sum(jnp.square(jax.nn.relu(x - config.box)) + jnp.square(jax.nn.relu(-config.box - x)))
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
    from jaxrecon import sumo  # noqa: PLC0415
    return optax.partition({"x": sumo.scale_by_sumo(key=key), "lam": optax.trace(decay=config.momentum)},
                           ("x", "lam"))
  raise ValueError(config.optimizer)


def init_state(key: jax.Array, m: int, d: int, hyper_one: Hyper, config: AttackConfig,
               dtype) -> AttackState:
  """Candidates N(0, 1) * init_scale (or uniform on a sphere), multipliers U[0, 1), for one configuration."""
  key = jax.random.fold_in(key, hyper_one.seed)
  key_x, key_lam = jax.random.split(key)
  x = jax.random.normal(key_x, (m, d), dtype)
  if config.prior == "sphere":
    x = config.sphere_radius * x / jnp.linalg.norm(x, axis=1, keepdims=True)
  else:
    x = x * hyper_one.init_scale.astype(dtype)
  lam = jax.random.uniform(key_lam, (m,), dtype)
  opt = make_optimizer(config, jax.random.fold_in(key, 7))
  return AttackState(x, lam, opt.init((x, lam)), jnp.zeros((), bool))


def make_step(config: AttackConfig) -> Callable:
  """(state, hyper_one, params, target, y_hat) -> (state, Aux): one attack step of one configuration."""
  opt = make_optimizer(config)
  grad_fn = jax.value_and_grad(attack_loss, has_aux=True)

  def step(state: AttackState, hyper: Hyper, params, target, y_hat):
    (_, aux), (gx, gl) = grad_fn((state.x, state.lam), params, target, y_hat, hyper.alpha,
                                 hyper.lambda_min, config)
    (ux, ul), opt_state = opt.update((gx, gl), state.opt_state, (state.x, state.lam))
    new = AttackState(state.x - hyper.lr_x.astype(ux.dtype) * ux,
                      state.lam - config.lr_lambda * ul, opt_state, state.diverged)
    ok = jnp.isfinite(aux.loss) & ~state.diverged
    ok = ok & jnp.all(jnp.isfinite(new.x)) & jnp.all(jnp.isfinite(new.lam))
    kept = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
    return kept._replace(diverged=~ok), aux
  return step


@functools.lru_cache(maxsize=32)
def make_sweep_runner(config: AttackConfig, mesh: Optional[Mesh] = None) -> Callable:
  """jit((states, hyper, params, target, y_hat, length) -> (states, Aux of the last step)).

  Cached per (config, mesh), so repeated sweeps with the same shapes reuse the compiled code.
  The configuration axis is vmapped; `length` steps run in one lax.scan. With a mesh, states and hyper are
  sharded along their leading (configuration) axis and the network is replicated.
  """
  vstep = jax.vmap(make_step(config), in_axes=(0, 0, None, None, None))

  def run(states, hyper, params, target, y_hat, length):
    def body(s, _):
      return vstep(s, hyper, params, target, y_hat)
    states, aux = lax.scan(body, states, None, length=length)
    return states, jax.tree_util.tree_map(lambda a: a[-1], aux)

  if mesh is None:
    return jax.jit(run, static_argnums=5, donate_argnums=0)
  sharded = NamedSharding(mesh, P("configs"))
  replicated = NamedSharding(mesh, P())
  return jax.jit(run, static_argnums=5, donate_argnums=0,
                 in_shardings=(sharded, sharded, replicated, replicated, replicated),
                 out_shardings=(sharded, sharded))


@functools.lru_cache(maxsize=32)
def _init_fn(m: int, d: int, config: AttackConfig, dtype) -> Callable:
  return jax.jit(jax.vmap(lambda key, h: init_state(key, m, d, h, config, dtype), in_axes=(None, 0)))


def config_mesh(devices: Optional[Sequence] = None) -> Optional[Mesh]:
  """A 1-D mesh named 'configs' over the devices when there are several, else None."""
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) < 2:
    return None
  return Mesh(np.asarray(devices), ("configs",))


class SweepResult(NamedTuple):
  x: np.ndarray          # (C, m, d) final candidates
  lam: np.ndarray        # (C, m)
  y_hat: np.ndarray      # (m,)
  loss: np.ndarray       # (C,) loss at the last step (NaN where the configuration diverged)
  stat: np.ndarray       # (C,)
  diverged: np.ndarray   # (C,) bool
  history: list          # rows {step, loss: [C], stat: [C], ...}
  wall_s: float
  compile_s: float


def _fmt_time(s: float) -> str:
  s = max(0.0, s)
  return f"{s / 3600:.1f}h" if s >= 3600 else (f"{s / 60:.1f}m" if s >= 60 else f"{s:.0f}s")


class SweepProgress(NamedTuple):
  """Where a sweep stands, enough to resume it bit-identically: configurations [0, c0) are finished (their
  final x, lam, loss, stat, diverged), the chunk starting at c0 is at `step` with `states` (None at a chunk
  start); `rows` history rows were made so far, in `wall_s` seconds."""
  c0: int
  step: int
  states: Optional[AttackState]
  x: np.ndarray
  lam: np.ndarray
  loss: np.ndarray
  stat: np.ndarray
  diverged: np.ndarray
  rows: int
  wall_s: float


def run_sweep(key: jax.Array, params: nets.Params, hyper: Hyper, d: int, config: AttackConfig, *,
              params_init: Optional[nets.Params] = None, n_train: Optional[int] = None,
              mesh: Optional[Mesh] = None, log: Optional[Callable] = print,
              on_rows: Optional[Callable] = None, resume: Optional[SweepProgress] = None,
              on_progress: Optional[Callable] = None) -> SweepResult:
  """Runs every configuration of `hyper` for config.steps steps; returns their final states and history.

  Configurations advance in chunks of config.chunk (all at once by default), each chunk one compiled scan per
  `log_every` steps; chunks are padded to a multiple of the mesh size. `on_rows(rows)` receives each history
  row as it is made (for metrics.jsonl). `on_progress(make)` is called after every segment; `make()` builds
  the SweepProgress there (it copies every state to the host, so a caller calls it only when it saves);
  passing one back as `resume` continues the sweep from there with exactly the same computation (segments
  are fixed by log_every and steps, not by when the run stopped). The history of a resumed sweep holds the
  rows made after `resume`.
  """
  dtype = jnp.dtype(config.dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax_enable_x64")
  if config.match_init and params_init is None:
    raise ValueError("match_init needs the initial parameters (params_init)")
  m = config.m or 2 * (n_train or 0)
  if m < 2:
    raise ValueError("number of candidates m must be >= 2 (set config.m or pass n_train)")
  params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
  target = attack_target(params, jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params_init)
                         if config.match_init else None)
  n_classes = config.n_classes if config.variant == "multiclass" else 1
  y_hat = candidate_labels(m, n_classes)
  if n_classes == 1:
    y_hat = y_hat.astype(dtype)

  n_dev = 1 if mesh is None else mesh.size
  total = hyper.size
  chunk = config.chunk or total
  chunk = int(math.ceil(chunk / n_dev) * n_dev)
  runner = make_sweep_runner(config, mesh)
  init_fn = _init_fn(m, d, config, dtype)
  seg = config.log_every or config.steps
  if resume is None:
    empty = np.zeros((0,))
    resume = SweepProgress(0, 0, None, np.zeros((0, m, d), dtype), np.zeros((0, m), dtype), empty, empty,
                           np.zeros((0,), bool), 0, 0.0)
  if resume.c0 % chunk or resume.step % seg:
    raise ValueError(f"cannot resume at configuration {resume.c0}, step {resume.step}: not a chunk/segment "
                     f"boundary of this config (chunk {chunk}, log_every {seg})")
  done = {f: [getattr(resume, f)] for f in ("x", "lam", "loss", "stat", "diverged")}
  history = []
  n_rows = resume.rows
  t0 = time.time() - resume.wall_s
  compile_s = 0.0
  first_call = True
  for c0 in range(resume.c0, total, chunk):
    idx = np.arange(c0, min(c0 + chunk, total))
    pad = np.concatenate([idx, np.full(chunk - idx.size, idx[-1])]) if idx.size < chunk else idx
    h = hyper.take(pad)
    h = Hyper(*(jnp.asarray(v, jnp.int32 if i == 4 else dtype) for i, v in enumerate(h)))
    states = init_fn(key, h)
    step = 0
    if c0 == resume.c0 and resume.states is not None:
      leaves, treedef = jax.tree_util.tree_flatten(states)  # resume.states: a pytree or its list of leaves
      saved = jax.tree_util.tree_leaves(resume.states)
      if len(saved) != len(leaves):
        raise ValueError(f"resume state has {len(saved)} arrays, this config's state {len(leaves)}")
      states = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v, t.dtype) for t, v in zip(leaves, saved)])
      step = resume.step
    if mesh is not None:
      sh = NamedSharding(mesh, P("configs"))
      states, h = jax.device_put((states, h), sh)
    last = None
    while step < config.steps:
      length = min(seg, config.steps - step)
      ts = time.time()
      states, aux = runner(states, h, params, target, y_hat, length)
      aux = jax.device_get(aux)
      te = time.time()
      if first_call:
        compile_s += te - ts  # the first call compiles (and runs one segment)
        first_call = False
      step += length
      last = {"step": step, "configs": [int(i) for i in idx],
              **{k: [float(v) for v in np.asarray(getattr(aux, k))[:idx.size]] for k in Aux._fields},
              "wall_s": te - t0}
      history.append(last)
      n_rows += 1
      if on_rows is not None:
        on_rows([last])
      if log is not None:
        _log_progress(log, last, c0, idx.size, total, step, config.steps, length * idx.size * m / max(te - ts, 1e-9),
                      t0, te)
      if on_progress is not None and step < config.steps:
        on_progress(lambda c0=c0, step=step, states=states, n_rows=n_rows: SweepProgress(
            c0, step, jax.device_get(states), *(np.concatenate(v) for v in done.values()), n_rows,
            time.time() - t0))
    states = jax.device_get(states)
    k = idx.size
    diverged = np.asarray(states.diverged)[:k]
    last_loss = np.asarray(last["loss"]) if last is not None else np.full(k, np.nan)
    last_stat = np.asarray(last["stat"]) if last is not None else np.full(k, np.nan)
    for f, v in (("x", np.asarray(states.x)[:k]), ("lam", np.asarray(states.lam)[:k]),
                 ("loss", np.where(diverged, np.nan, last_loss)),  # a diverged configuration has no final loss
                 ("stat", np.where(diverged, np.nan, last_stat)), ("diverged", diverged)):
      done[f].append(v)
    if on_progress is not None and c0 + chunk < total:
      on_progress(lambda c0=c0, n_rows=n_rows: SweepProgress(
          c0 + chunk, 0, None, *(np.concatenate(v) for v in done.values()), n_rows, time.time() - t0))
  x, lam, loss, stat, div = (np.concatenate(v) for v in done.values())
  return SweepResult(x, lam, np.asarray(y_hat), loss, stat, div.astype(bool), history,
                     time.time() - t0, compile_s)


def _log_progress(log, row, c0, k, total, step, steps, rate, t0, now):
  done = (c0 + k * step / steps) / total
  elapsed = now - t0
  finite = np.isfinite(row["loss"])
  best = np.nanmin(np.where(finite, row["loss"], np.nan)) if np.any(finite) else float("nan")
  log(f"configs {c0 + 1}-{c0 + k}/{total}  step {step}/{steps}  best loss {best:.4g}  "
      f"{rate:,.0f} candidate-steps/s  left {_fmt_time(elapsed / max(done, 1e-9) - elapsed)}")


def candidate_margins(params, x_MD, y_hat) -> jax.Array:
  """q_k = y_hat_k Phi(x_hat_k) with the true ReLU (for the training-set-free ranking)."""
  return losses.margins(nets.apply(params, x_MD), y_hat)
