"""The attack as one compiled, vmapped and sharded sweep over configurations.

C configurations of (init scale, x lr, lambda_min, alpha, seed, start radius, lambda lr, init shift) advance
together in one jitted
compiled loop of a vmapped step (`loss.make_step`), in chunks of configurations that fit memory; with several
devices the configuration axis is sharded over a 1-D mesh. A sweep reports its progress after every segment
of `log_every` steps and resumes from such a report with exactly the same computation.
"""

from __future__ import annotations

import functools
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
from jaxrecon.attack.hyper import (LOG_SWEPT, REFERENCE_RANGES, Hyper, SweepConfig,  # noqa: F401 (re-exported)
                                   grid_sweep, random_sweep)
from jaxrecon.attack.loss import (AttackConfig, AttackState, Aux, attack_target, candidate_labels,
                                  init_state, make_step)


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
  rows made after `resume`.

  Args:
    key: the candidates' random starts (one key; each configuration folds in its seed).
    params: the attacked net (cast to config.dtype).
    hyper: the swept values, one entry per configuration (`hyper.random_sweep`, `grid_sweep`,
      `SweepConfig.hyper`).
    d: the candidates' dimension.
    config: the attack (loss, optimizer, prior, steps, log_every, chunk, dtype).
    params_init: the net at initialization (config.match_init attacks theta - theta_init).
    n_train: the training set's size when config.m is 0 (m = 2 n_train candidates).
    mesh: a 1-D mesh named 'configs' to shard the configurations over (`config_mesh()`), or None.
    log: progress lines (None: silent).
    on_rows, on_progress, resume: the hooks above.
    x_start: (m, d) every configuration's candidates start at x_start + their random start (a basin test
      starts them at the training points).

  Returns:
    SweepResult: every configuration's final candidates x (C, m, d) and multipliers (C, m), the candidates'
    labels, the final attack loss and stationarity term (NaN where a configuration diverged), the diverged
    flags, the history rows, the wall time and the first call's (compile) time.
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


def _segments(runner, states, h: Hyper, prob: _Problem, configs, step: int, until: int, seg: int, t0: float):
  """Advances `states` from `step` to `until`, one compiled call per segment of at most `seg` steps. Yields
  (step, states, aux, row, seconds) after each: `row` is the segment's history row over `configs` (the live
  configurations; padding rows beyond them are dropped), `seconds` the call's wall time."""
  k = len(configs)
  while step < until:
    length = min(seg, until - step)
    ts = time.time()
    states, aux = runner(states, h, prob.params, prob.target, prob.y_hat, length)
    aux = jax.device_get(aux)
    te = time.time()
    step += length
    row = {"step": step, "configs": [int(i) for i in configs],
           **{f: [float(v) for v in np.asarray(getattr(aux, f))[:k]] for f in Aux._fields}, "wall_s": te - t0}
    yield step, states, aux, row, length, te - ts


def _run_chunk(run: _Run, states, h: Hyper, prob: _Problem, idx, step: int, total: int,
               config: AttackConfig, mesh, hooks: dict):
  """Advances one chunk of configurations from `step` to config.steps, a segment per compiled call."""
  c0 = int(idx[0])
  last = None
  for step, states, _, last, length, secs in _segments(make_sweep_runner(config, mesh), states, h, prob, idx, step,
                                                       config.steps, config.log_every or config.steps, run.t0):
    if run.first_call:
      run.compile_s += secs  # the first call compiles (and runs one segment)
      run.first_call = False
    run.history.append(last)
    run.n_rows += 1
    if hooks["on_rows"] is not None:
      hooks["on_rows"]([last])
    if hooks["log"] is not None:
      _log_progress(hooks["log"], last, c0, idx.size, total, step, config.steps,
                    length * idx.size * prob.m / max(secs, 1e-9), run.t0, run.t0 + last["wall_s"])
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
    for step, states, aux, row, length, secs in _segments(runner, states, h, prob, alive, step, mark, seg, t0):
      if first:
        compile_s, first = secs, False
      k = alive.size
      div = np.asarray(jax.device_get(states.diverged))[:k]
      out["loss"][alive] = np.where(div, np.nan, np.asarray(aux.loss)[:k])
      out["stat"][alive] = np.where(div, np.nan, np.asarray(aux.stat)[:k])
      out["diverged"][alive] = div
      history.append(row)
      if log is not None:
        _log_progress(log, row, 0, k, total, step, config.steps, length * k * m / max(secs, 1e-9), t0,
                      t0 + row["wall_s"])
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
