"""The attack as one compiled, vmapped and sharded sweep over configurations.

C configurations of (init scale, x lr, lambda_min, alpha, seed, start radius, lambda lr, init shift) advance
together in one jitted
compiled loop of a vmapped step (`loss.make_step`), in chunks of configurations that fit memory; with several
devices the configuration axis is sharded over a 1-D mesh. A sweep reports its progress after every segment
of `log_every` steps and resumes from such a report with exactly the same computation.
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
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrecon import nets
from jaxrecon import report
from jaxrecon.attack.loss import (AttackConfig, AttackState, Aux, attack_target, candidate_labels,
                                  init_state, make_step)


class Hyper(NamedTuple):
  """Swept values, one entry per configuration (arrays of shape (C,)).

  radius: the sphere the candidates start on under the 'sphere' prior (unused by the other priors).
  lr_lambda: the multipliers' learning rate.
  shift: the candidates start at shift + (their random start) and the box prior is [shift - box, shift + box]
    in every coordinate (the init shift of the "No Prior, No Leakage" grid)."""
  init_scale: jax.Array
  lr_x: jax.Array
  lambda_min: jax.Array
  alpha: jax.Array
  seed: jax.Array
  radius: jax.Array
  lr_lambda: jax.Array
  shift: jax.Array

  @property
  def size(self) -> int:
    return int(np.shape(self.lr_x)[0])

  def take(self, idx) -> "Hyper":
    return Hyper(*(np.asarray(v)[idx] for v in self))

  def as_arrays(self, dtype) -> "Hyper":
    """Device arrays: seeds int32, the rest in the attack's dtype."""
    return Hyper(*(jnp.asarray(v, jnp.int32 if k == "seed" else dtype) for k, v in self._asdict().items()))

  def at_radii(self, radii: Sequence[float]) -> "Hyper":
    """Every configuration at every radius (radius varies slowest): one sweep for a radius study."""
    radii = np.asarray(radii, np.float64)
    reps = {k: np.tile(np.asarray(v), radii.size) for k, v in self._asdict().items()}
    return Hyper(**{**reps, "radius": np.repeat(radii, self.size)})

  def rows(self) -> list:
    return [{k: (int(v[i]) if k == "seed" else float(v[i])) for k, v in self._asdict().items()}
            for i in range(self.size)]


# The reference's random sweep: log-uniform x lr and init scale, uniform lambda_min and alpha.
REFERENCE_RANGES = {"init_scale": (1e-6, 0.1), "lr_x": (1e-5, 1.0), "lambda_min": (0.01, 0.5),
                    "alpha": (10.0, 500.0)}


LOG_SWEPT = ("init_scale", "lr_x")


def random_sweep(key: jax.Array, n: int, ranges: Optional[dict] = None, seeds: int = 1,
                 radius: float = 1.0, lr_lambda: float = 1e-4, shift: float = 0.0) -> Hyper:
  """n configurations drawn from `ranges` ({name: (lo, hi)}; log-uniform for init_scale and lr_x).

  A range with lo == hi is a fixed value. Seeds cycle over 0..seeds-1. Every configuration starts at
  `radius` (sphere prior; `Hyper.at_radii` gives several) and shares `lr_lambda` and `shift`.
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
  return Hyper(seed=np.arange(n) % max(seeds, 1), radius=np.full(n, float(radius)),
               lr_lambda=np.full(n, float(lr_lambda)), shift=np.full(n, float(shift)), **vals)


def grid_sweep(init_scale: Sequence[float], lr_x: Sequence[float], lambda_min: Sequence[float],
               alpha: Sequence[float], seeds: Sequence[int] = (0,), radius: Sequence[float] = (1.0,),
               lr_lambda: Sequence[float] = (1e-4,), shift: Sequence[float] = (0.0,)) -> Hyper:
  """The Cartesian product of the given values (radius varies slowest, then shift, lr_lambda, init_scale,
  lr_x, lambda_min, alpha; seed fastest)."""
  names = ("init_scale", "lr_x", "lambda_min", "alpha", "seed")
  prod = [dict(zip(names, rest), radius=r, shift=s, lr_lambda=ll) for r in radius for s in shift
          for ll in lr_lambda for rest in itertools.product(init_scale, lr_x, lambda_min, alpha, seeds)]
  if not prod:
    raise ValueError("empty grid")
  return Hyper(**{k: np.asarray([p[k] for p in prod], np.int32 if k == "seed" else np.float64)
                  for k in Hyper._fields})


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """Which configurations run: `configs` random draws (log-uniform for init_scale and lr_x, uniform for the
  others) or the Cartesian product of the listed values; each at every start radius of `radii`.

  Attributes:
    kind: random (configs draws from the ranges) | grid (the product of the values).
    configs: Random sweep: configurations (all run in one compiled sweep).
    init_scale: Candidate init std: lo,hi (random), one value (fixed), or the grid values.
    lr_x: Candidate learning rate: lo,hi (random) | one value | the grid values.
    lambda_min: Lower bound of the multipliers' penalty: lo,hi | one value | the grid values.
    alpha: Surrogate ReLU slope: lo,hi | one value | the grid values.
    seeds: Seeds per configuration (grid) / seeds cycled over (random).
    seed: Seed of the sweep and the candidates.
    radii: Sphere prior: start radii, in units of the attacked data's RMS norm (the job's unit); every
      configuration runs at each radius.
    lr_lambda: The multipliers' learning rates (grid values, or one value for a random sweep); empty = the
      attack's lr_lambda.
    shift: Init shifts (grid values, or one value): candidates start at shift + their random start and the
      box prior moves with them to [shift - box, shift + box].
  """
  kind: str = "random"
  configs: int = 16
  init_scale: tuple = REFERENCE_RANGES["init_scale"]
  lr_x: tuple = REFERENCE_RANGES["lr_x"]
  lambda_min: tuple = REFERENCE_RANGES["lambda_min"]
  alpha: tuple = REFERENCE_RANGES["alpha"]
  seeds: int = 1
  seed: int = 0
  radii: tuple = (1.0,)
  lr_lambda: tuple = ()
  shift: tuple = (0.0,)

  @staticmethod
  def from_dict(d: dict) -> "SweepConfig":
    return SweepConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

  def validate(self) -> None:
    """Raises ValueError naming the field of a sweep that cannot run."""
    if self.kind not in ("random", "grid"):
      raise ValueError(f"sweep kind must be 'random' or 'grid'; got {self.kind!r}")
    if self.kind == "random" and self.configs < 1:
      raise ValueError(f"configs must be >= 1; got {self.configs}")
    if not self.radii or min(self.radii) <= 0:
      raise ValueError(f"radii must be positive, got {self.radii}")
    for name in (*REFERENCE_RANGES, "lr_lambda", "shift", "radii"):
      bad = [v for v in tuple(getattr(self, name)) if not math.isfinite(float(v))]
      if bad:
        raise ValueError(f"{name}: every value must be a finite number; got {tuple(getattr(self, name))}")
    for name in REFERENCE_RANGES:
      v = tuple(getattr(self, name))
      if not v or (self.kind == "random" and len(v) > 2):
        raise ValueError(f"{name}: give lo,hi or one value for a random sweep (or the values of a grid); "
                         f"got {v}")
      if self.kind == "random" and (v[0] > v[-1] or (name in LOG_SWEPT and v[0] <= 0)):
        raise ValueError(f"bad range for {name}: {v}")
    for name in ("lr_lambda", "shift"):
      v = tuple(getattr(self, name))
      if self.kind == "random" and len(v) > 1:
        raise ValueError(f"{name}: one value for a random sweep (several make a grid); got {v}")
    if not self.shift or (self.lr_lambda and min(self.lr_lambda) < 0):
      raise ValueError(f"shift needs a value and lr_lambda must be >= 0; got {self.shift}, {self.lr_lambda}")

  def hyper(self, key: jax.Array, radius_unit: float = 1.0, lr_lambda: float = 1e-4) -> Hyper:
    """The swept values; start radii are radii x radius_unit; `lr_lambda` when the sweep names none (the
    attack's)."""
    self.validate()
    lrs = tuple(float(v) for v in self.lr_lambda) or (float(lr_lambda),)
    if self.kind == "random":
      ranges = {k: (float(getattr(self, k)[0]), float(getattr(self, k)[-1])) for k in REFERENCE_RANGES}
      base = random_sweep(key, self.configs, ranges, self.seeds, lr_lambda=lrs[0], shift=float(self.shift[0]))
    else:
      base = grid_sweep(*(tuple(getattr(self, k)) for k in REFERENCE_RANGES), tuple(range(max(self.seeds, 1))),
                        lr_lambda=lrs, shift=tuple(float(v) for v in self.shift))
    return base.at_radii([r * radius_unit for r in self.radii])


@functools.lru_cache(maxsize=32)
def make_sweep_runner(config: AttackConfig, mesh: Optional[Mesh] = None) -> Callable:
  """jit((states, hyper, params, target, y_hat, length) -> (states, Aux of the last step)).

  Cached per (config, mesh), so repeated sweeps with the same shapes reuse the compiled code.
  The configuration axis is vmapped; `length` (>= 1) steps run in one compiled loop whose trip count is
  traced, so segments of every length share one program. With a mesh, states and hyper are sharded along
  their leading (configuration) axis and the network is replicated.
  """
  vstep = jax.vmap(make_step(config), in_axes=(0, 0, None, None, None))

  def run(states, hyper, params, target, y_hat, length):
    # the loop's carry holds the last step's Aux (one scalar per configuration, in the candidates' dtype)
    aux0 = Aux(*(jnp.zeros(states.x.shape[:1], states.x.dtype) for _ in Aux._fields))
    body = lambda _, carry: vstep(carry[0], hyper, params, target, y_hat)
    return lax.fori_loop(0, length, body, (states, aux0))

  if mesh is None:
    return jax.jit(run, donate_argnums=0)
  sharded = NamedSharding(mesh, P("configs"))
  replicated = NamedSharding(mesh, P())
  return jax.jit(run, donate_argnums=0,
                 in_shardings=(sharded, sharded, replicated, replicated, replicated, replicated),
                 out_shardings=(sharded, sharded))


@functools.lru_cache(maxsize=32)
def _init_fn(m: int, d: int, config: AttackConfig, dtype, with_start: bool = False) -> Callable:
  if with_start:
    vinit = jax.vmap(lambda key, h, x0: init_state(key, m, d, h, config, dtype, x0), in_axes=(None, 0, None))
    return jax.jit(lambda key, h, x0: vinit(key, h, x0))  # a plain signature, so x0 can be bound by keyword
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


class _Problem(NamedTuple):
  """What every configuration of a sweep shares: the attacked net in the attack's dtype and the labels."""
  params: nets.Params
  target: nets.Params
  y_hat: jax.Array
  m: int
  dtype: jnp.dtype


def _problem(params, config: AttackConfig, params_init, n_train) -> _Problem:
  dtype = jnp.dtype(config.dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax_enable_x64")
  if config.match_init and params_init is None:
    raise ValueError("match_init needs the initial parameters (params_init)")
  m = config.m or 2 * (n_train or 0)
  if m < 2:
    raise ValueError("number of candidates m must be >= 2 (set config.m or pass n_train)")
  cast = lambda tree: jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), tree)
  params = cast(params)
  target = attack_target(params, cast(params_init) if config.match_init else None, config.target,
                         config.sign_tol)
  n_classes = config.n_classes if config.variant == "multiclass" else 1
  y_hat = candidate_labels(m, n_classes)
  if n_classes == 1:
    y_hat = y_hat.astype(dtype)
  return _Problem(params, target, y_hat, m, dtype)


def _restore(states, saved):
  """The chunk's states from a SweepProgress's states (a pytree or its list of leaves)."""
  leaves, treedef = jax.tree_util.tree_flatten(states)
  saved = jax.tree_util.tree_leaves(saved)
  if len(saved) != len(leaves):
    raise ValueError(f"resume state has {len(saved)} arrays, this config's state {len(leaves)}")
  return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v, t.dtype) for t, v in zip(leaves, saved)])


class _Run:
  """The mutable bookkeeping of one run_sweep call: finished configurations, rows, clocks."""

  def __init__(self, resume: SweepProgress):
    self.done = {f: [getattr(resume, f)] for f in ("x", "lam", "loss", "stat", "diverged")}
    self.history = []
    self.n_rows = resume.rows
    self.t0 = time.time() - resume.wall_s
    self.compile_s = 0.0
    self.first_call = True

  def progress(self, c0: int, step: int, states) -> SweepProgress:
    return SweepProgress(c0, step, None if states is None else jax.device_get(states),
                         *(np.concatenate(v) for v in self.done.values()), self.n_rows, time.time() - self.t0)

  def finish_chunk(self, states, last, k: int):
    states = jax.device_get(states)
    diverged = np.asarray(states.diverged)[:k]
    last_loss = np.asarray(last["loss"]) if last is not None else np.full(k, np.nan)
    last_stat = np.asarray(last["stat"]) if last is not None else np.full(k, np.nan)
    for f, v in (("x", np.asarray(states.x)[:k]), ("lam", np.asarray(states.lam)[:k]),
                 ("loss", np.where(diverged, np.nan, last_loss)),  # a diverged configuration has no final loss
                 ("stat", np.where(diverged, np.nan, last_stat)), ("diverged", diverged)):
      self.done[f].append(v)


def run_sweep(key: jax.Array, params: nets.Params, hyper: Hyper, d: int, config: AttackConfig, *,
              params_init: Optional[nets.Params] = None, n_train: Optional[int] = None,
              mesh: Optional[Mesh] = None, log: Optional[Callable] = print,
              on_rows: Optional[Callable] = None, resume: Optional[SweepProgress] = None,
              on_progress: Optional[Callable] = None, x_start: Optional[np.ndarray] = None) -> SweepResult:
  """Runs every configuration of `hyper` for config.steps steps; returns their final states and history.

  Configurations advance in chunks of config.chunk (all at once by default), each chunk one compiled scan per
  `log_every` steps; chunks are padded to a multiple of the mesh size. `on_rows(rows)` receives each history
  row as it is made (for metrics.jsonl). `on_progress(make)` is called after every segment; `make()` builds
  the SweepProgress there (it copies every state to the host, so a caller calls it only when it saves);
  passing one back as `resume` continues the sweep from there with exactly the same computation (segments
  are fixed by log_every and steps, not by when the run stopped). The history of a resumed sweep holds the
  rows made after `resume`. x_start (m, d): every configuration's candidates start at x_start + their random
  start (a basin test starts them at the training points).
  """
  prob = _problem(params, config, params_init, n_train)
  m, dtype = prob.m, prob.dtype
  n_dev = 1 if mesh is None else mesh.size
  total = hyper.size
  chunk = int(math.ceil((config.chunk or total) / n_dev) * n_dev)
  seg = config.log_every or config.steps
  if resume is None:
    empty = np.zeros((0,))
    resume = SweepProgress(0, 0, None, np.zeros((0, m, d), dtype), np.zeros((0, m), dtype), empty, empty,
                           np.zeros((0,), bool), 0, 0.0)
  if resume.c0 % chunk or resume.step % seg:
    raise ValueError(f"cannot resume at configuration {resume.c0}, step {resume.step}: not a chunk/segment "
                     f"boundary of this config (chunk {chunk}, log_every {seg})")
  if x_start is not None and np.shape(x_start) != (m, d):
    raise ValueError(f"x_start must have shape (m, d) = ({m}, {d}); got {np.shape(x_start)}")
  init_fn = _init_fn(m, d, config, dtype, x_start is not None)
  if x_start is not None:
    init_fn = functools.partial(init_fn, x0=jnp.asarray(x_start, dtype))
  run = _Run(resume)
  for c0 in range(resume.c0, total, chunk):
    idx = np.arange(c0, min(c0 + chunk, total))
    pad = np.concatenate([idx, np.full(chunk - idx.size, idx[-1])]) if idx.size < chunk else idx
    h = hyper.take(pad).as_arrays(dtype)
    states = init_fn(key, h)
    start = 0
    if c0 == resume.c0 and resume.states is not None:
      states, start = _restore(states, resume.states), resume.step
    if mesh is not None:
      states, h = jax.device_put((states, h), NamedSharding(mesh, P("configs")))
    states, last = _run_chunk(run, states, h, prob, idx, start, total, config, mesh,
                              dict(log=log, on_rows=on_rows, on_progress=on_progress))
    run.finish_chunk(states, last, idx.size)
    if on_progress is not None and c0 + chunk < total:
      on_progress(lambda c0=c0: run.progress(c0 + chunk, 0, None))
  x, lam, loss, stat, div = (np.concatenate(v) for v in run.done.values())
  return SweepResult(x, lam, np.asarray(prob.y_hat), loss, stat, div.astype(bool), run.history,
                     time.time() - run.t0, run.compile_s)


def _run_chunk(run: _Run, states, h: Hyper, prob: _Problem, idx, step: int, total: int,
               config: AttackConfig, mesh, hooks: dict):
  """Advances one chunk of configurations from `step` to config.steps, a segment per compiled call."""
  runner = make_sweep_runner(config, mesh)
  seg = config.log_every or config.steps
  c0 = int(idx[0])
  last = None
  while step < config.steps:
    length = min(seg, config.steps - step)
    ts = time.time()
    states, aux = runner(states, h, prob.params, prob.target, prob.y_hat, length)
    aux = jax.device_get(aux)
    te = time.time()
    if run.first_call:
      run.compile_s += te - ts  # the first call compiles (and runs one segment)
      run.first_call = False
    step += length
    last = {"step": step, "configs": [int(i) for i in idx],
            **{k: [float(v) for v in np.asarray(getattr(aux, k))[:idx.size]] for k in Aux._fields},
            "wall_s": te - run.t0}
    run.history.append(last)
    run.n_rows += 1
    if hooks["on_rows"] is not None:
      hooks["on_rows"]([last])
    if hooks["log"] is not None:
      _log_progress(hooks["log"], last, c0, idx.size, total, step, config.steps,
                    length * idx.size * prob.m / max(te - ts, 1e-9), run.t0, te)
    if hooks["on_progress"] is not None and step < config.steps:
      hooks["on_progress"](lambda step=step, states=states: run.progress(c0, step, states))
  return states, last


def flat_rows(row: dict) -> list:
  """One history row (a segment: lists over its configurations) as one row per configuration, the form a
  table reader wants (`pandas.read_json(path, lines=True)`): step, config, loss, stat, lam_pen, prior, wall_s."""
  return [{"step": row["step"], "config": c, **{k: row[k][j] for k in Aux._fields}, "wall_s": row["wall_s"]}
          for j, c in enumerate(row["configs"])]


def _log_progress(log, row, c0, k, total, step, steps, rate, t0, now):
  done = (c0 + k * step / steps) / total
  elapsed = now - t0
  finite = np.isfinite(row["loss"])
  best = np.nanmin(np.where(finite, row["loss"], np.nan)) if np.any(finite) else float("nan")
  log(f"configs {c0 + 1}-{c0 + k}/{total}  step {step}/{steps}  best loss {best:.4g}  "
      f"{rate:,.0f} candidate-steps/s  left {report.fmt_time(elapsed / max(done, 1e-9) - elapsed)}")



def run_halving(key: jax.Array, params: nets.Params, hyper: Hyper, d: int, config: AttackConfig, *,
                prune_at: Sequence[int] = (), keep: float = 0.5, params_init: Optional[nets.Params] = None,
                n_train: Optional[int] = None, mesh: Optional[Mesh] = None, log: Optional[Callable] = print,
                on_segment: Optional[Callable] = None) -> SweepResult:
  """Successive halving: every configuration starts; at each step of `prune_at` the live configurations are
  ranked by their attack loss (a signal that needs no training data; diverged ones last) and only the best
  ceil(keep x live) go on; the others stop there, their candidates and loss as they were at that step.

  Steps are the same computation as `run_sweep` (a configuration that is never pruned ends where it does
  there, tested to 1e-9). Each prune changes the number of configurations in the compiled call, so each rung
  compiles once. `on_segment(step, snapshot, row)` after every log segment: `row` is the segment's history
  row (its live configurations), `snapshot()` returns (x (C, m, d), loss (C,)) of every configuration as it
  stands (pruned ones at their last step), e.g. for an evaluation whose time the caller keeps off its clock.
  No resume: a killed halving sweep starts again.
  """
  if not 0 < keep <= 1:
    raise ValueError(f"keep must be in (0, 1]; got {keep}")
  prob = _problem(params, config, params_init, n_train)
  m, dtype = prob.m, prob.dtype
  n_dev = 1 if mesh is None else mesh.size
  total = hyper.size
  marks = sorted({int(s) for s in prune_at if 0 < int(s) < config.steps} | {config.steps})
  seg = config.log_every or config.steps
  out = {"x": np.zeros((total, m, d), dtype), "lam": np.zeros((total, m), dtype),
         "loss": np.full(total, np.nan), "stat": np.full(total, np.nan), "diverged": np.zeros(total, bool)}
  runner = make_sweep_runner(config, mesh)
  init_fn = _init_fn(m, d, config, dtype)
  t0, compile_s, history = time.time(), 0.0, []
  alive = np.arange(total)
  states = h = None
  step = 0

  def padded(idx):
    k = int(math.ceil(idx.size / n_dev) * n_dev)
    return np.concatenate([np.arange(idx.size), np.full(k - idx.size, idx.size - 1)])

  def snapshot():
    x, loss = out["x"].copy(), out["loss"].copy()
    x[alive] = np.asarray(jax.device_get(states.x))[:alive.size]
    return x, loss

  first = True
  for mark in marks:
    if states is None:
      rows = padded(alive)
      h = hyper.take(alive[rows]).as_arrays(dtype)
      states = init_fn(key, h)
      if mesh is not None:
        states, h = jax.device_put((states, h), NamedSharding(mesh, P("configs")))
    while step < mark:
      length = min(seg, mark - step)
      ts = time.time()
      states, aux = runner(states, h, prob.params, prob.target, prob.y_hat, length)
      aux = jax.device_get(aux)
      te = time.time()
      if first:
        compile_s, first = te - ts, False
      step += length
      k = alive.size
      div = np.asarray(jax.device_get(states.diverged))[:k]
      out["loss"][alive] = np.where(div, np.nan, np.asarray(aux.loss)[:k])
      out["stat"][alive] = np.where(div, np.nan, np.asarray(aux.stat)[:k])
      out["diverged"][alive] = div
      row = {"step": step, "configs": [int(i) for i in alive],
             **{f: [float(v) for v in np.asarray(getattr(aux, f))[:k]] for f in Aux._fields}, "wall_s": te - t0}
      history.append(row)
      if log is not None:
        _log_progress(log, row, 0, k, total, step, config.steps, length * k * m / max(te - ts, 1e-9), t0, te)
      if on_segment is not None:
        on_segment(step, snapshot, row)
    host = jax.device_get(states)
    out["x"][alive] = np.asarray(host.x)[:alive.size]
    out["lam"][alive] = np.asarray(host.lam)[:alive.size]
    if mark < config.steps:
      ranked = np.argsort(np.where(np.isfinite(out["loss"][alive]), out["loss"][alive], np.inf), kind="stable")
      sel = np.sort(ranked[:max(1, int(math.ceil(keep * alive.size)))])
      if log is not None:
        log(f"step {step}: keeping {sel.size} of {alive.size} configurations by attack loss")
      rows = padded(sel)
      alive = alive[sel]
      states = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[sel[rows]], states)
      h = hyper.take(alive[rows]).as_arrays(dtype)
      if mesh is not None:
        states, h = jax.device_put((states, h), NamedSharding(mesh, P("configs")))
  return SweepResult(out["x"], out["lam"], np.asarray(prob.y_hat), out["loss"], out["stat"], out["diverged"],
                     history, time.time() - t0, compile_s)
