"""The KKT job: residuals of every checkpoint of a training workdir: kkt.jsonl, summary.json and a log-log PNG.

Outputs go to <train_workdir>/kkt/ by default (so the training run's own summary.json is kept).

The report is vmapped over stacked checkpoints and compiled once (`lax.map` in batches bounds memory).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import kkt
from jaxrecon import losses
from jaxrecon import plotting
from jaxrecon import report
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.experiments import train as train_job


@dataclasses.dataclass(frozen=True)
class KKTConfig:
  """The KKT job.

  Attributes:
    kink_tol: Relative |w.x| below which a pair counts as near its ReLU kink (the relaxed residual).
    relaxed: Also solve the relaxed KKT residual (kink neighbourhood).
    batch_size: Checkpoints evaluated together (vmap) inside one compiled lax.map.
    min_step: Skip the checkpoints before this step (step 0 is not a fitted network).
    steps: Only these steps (None = all).
  """
  kink_tol: float = 1e-3
  relaxed: bool = True
  batch_size: int = 4          # checkpoints evaluated together (vmap) inside one compiled lax.map
  min_step: int = 1            # skip the initial checkpoints (step 0 is not a fitted network)
  steps: Optional[tuple] = None  # only these steps

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.positive(self, "kink_tol")
    validation.at_least(self, 1, "batch_size")
    validation.at_least(self, 0, "min_step")
    if self.steps is not None:
      validation.each_at_least(self, 0, "steps")


def reports_over(params_stack, x, y, *, kink_tol: float, relaxed: bool, loss: str,
                 batch_size: int) -> kkt.KKTReport:
  """kkt_report for each leading-axis slice of params_stack (C, ...): one compiled call."""
  fn = functools.partial(kkt.kkt_report, kink_tol=kink_tol, relaxed=relaxed, loss=loss)
  return jax.lax.map(lambda p: fn(p, x, y), params_stack, batch_size=batch_size)


def run(train_workdir: str, config: KKTConfig = KKTConfig(), out_dir: Optional[str] = None,
        log: Callable = print) -> dict:
  """Writes kkt.jsonl (one row per checkpoint), summary.json and kkt.png to out_dir (default <run>/kkt)."""
  config.validate()
  out_dir = out_dir or os.path.join(train_workdir, "kkt")
  if os.path.realpath(out_dir) == os.path.realpath(train_workdir):
    raise wd.RunDirError(f"the KKT output folder {out_dir} is the training workdir itself (its summary.json "
                         "would be overwritten); leave --out_dir empty for <workdir>/kkt or choose another")
  wd.check_kind(out_dir, "kkt")
  tcfg, ds, ckpts = train_job.load_run(train_workdir)
  ckpts = [(s, p) for s, p in ckpts if s >= config.min_step
           and (config.steps is None or s in config.steps)]
  if not ckpts:
    raise ValueError(f"{train_workdir}: no checkpoints to evaluate")
  dtype = jnp.dtype(tcfg.dtype)
  x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
  steps = [s for s, _ in ckpts]
  stack = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[p for _, p in ckpts])
  metrics = {r["step"]: r for r in wd.read_jsonl(os.path.join(train_workdir, "metrics.jsonl"))}
  log(f"KKT residuals of {len(steps)} checkpoints ({steps[0]}..{steps[-1]}) on {x.shape[0]} points")
  t0 = time.time()
  fn = jax.jit(functools.partial(reports_over, kink_tol=config.kink_tol,
                                 relaxed=config.relaxed, loss=tcfg.loss,
                                 batch_size=config.batch_size))
  reps = jax.block_until_ready(fn(stack, x, y))
  wall = time.time() - t0
  rows = []
  for i, step in enumerate(steps):
    rep = kkt.summarize(jax.tree_util.tree_map(lambda a: a[i], reps))
    q = kkt.margins_of(ckpts[i][1], x, y)
    row = {"step": step, "loss": float(losses.mean_loss(tcfg.loss, q)),
           "log10_loss": float(losses.log_mean_loss(tcfg.loss, q) / np.log(10.0)),
           "wall_s": metrics.get(step, {}).get("wall_s"), **rep}
    rows.append(row)
    relaxed = (f"{report.fmt_relaxed(row)} to {row['relax_radius']:.2g} x radius, " if config.relaxed else "")
    log(f"step {step:>9d}  log10 loss {row['log10_loss']:9.2f}  eps_rel {row['eps_rel']:.4f}  "
        f"({relaxed}cert {row['cert_eps_rel']:.4f})  "
        f"delta {row['delta']:.3e}  support {row['support_size']}  kinks {row['kink_pairs']}")
  last = rows[-1]
  summary = {"steps": steps, "final": last, "eval_wall_s": wall, "kink_tol": config.kink_tol,
             "relaxed": config.relaxed, "train_workdir": os.path.abspath(train_workdir)}
  with wd.claim(out_dir, "kkt"):
    wd.write_json(os.path.join(out_dir, "config.json"), config)
    wd.write_jsonl(os.path.join(out_dir, "kkt.jsonl"), rows)
    wd.write_json(os.path.join(out_dir, "summary.json"), summary)
    plotting.kkt_residuals(rows, os.path.join(out_dir, "kkt.png"),
                   title=f"KKT residuals: {os.path.basename(os.path.abspath(train_workdir))}")
  log(f"wrote {out_dir}/kkt.jsonl, summary.json, kkt.png ({wall:.1f}s)")
  return summary
