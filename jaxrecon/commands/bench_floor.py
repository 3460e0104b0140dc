r"""Why the attack on a 3-layer net stalls (issue 28, item 1): the init's share of the trained weights, per layer.

  python scripts/train.py --workdir=runs/t500 --dataset=mnist --data_dir=bundled --n=500 --width=1000,1000 \
      --first_bias --steps=6000 --relaxed=False
  python scripts/bench_floor.py --train_workdir=runs/t500 --out=bench/flagship/floor.json

For every checkpoint of a training run, per layer l (the first layer's bias counted with W1):
- ||W_l||^2, ||W_l - W_l(0)||^2 (what training added) and ||W_l(0)||^2 (the init);
- the balancedness invariant ||W_{l+1}||^2 - ||W_l||^2, which gradient FLOW conserves exactly (Du, Hu & Lee
  2018) and GD conserves up to its step size: with a 1e-4 first layer and PyTorch's default middle layer
  (U(+-1/sqrt(1000)), 10^6 entries, E||W2(0)||^2 = 10^6 / 3,000 = 333.3) it starts at about 333;
- the truth's floor: min over lambda >= 0 of ||theta - sum_i lambda_i grad q_i(x_i)||^2 with the TRUE training
  points (the exact KKT residual, NNLS), in the raw weights' units (the reference attack's loss, which it
  cannot go below by finding the training set), split per layer: the part no choice of multipliers on the
  true points removes;
- the same residual with theta replaced by theta - theta(0) (the attack told the init, `--match_init`).
Writes JSON with a row per checkpoint and the machine.
"""

import sys
import os
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import kkt
from jaxrecon import nnls
from jaxrecon import stationarity
from jaxrecon import workdir as wd
from jaxrecon import report
from jaxrecon.commands import cli
from jaxrecon.experiments import train as train_job

FLAGS = flags.FLAGS
flags.DEFINE_string("train_workdir", None, "A training workdir (scripts/train.py output) of a 3-layer net.")
flags.DEFINE_string("out", "bench/flagship/floor.json", "Where the JSON goes.")
flags.DEFINE_list("steps", [], "Only these checkpoint steps (empty = every one after step 0).")


def _layer_sq(params) -> list:
  return [float(sum(jnp.sum(jnp.square(v)) for v in layer.values())) for layer in params]


@jax.jit
def _floor(params, x, y):
  """Per-layer squared residual of theta - sum lambda_i grad q_i at the NNLS multipliers (raw units)."""
  tparams, _ = stationarity.normalize(params, x, y)
  lam = kkt.best_multipliers(tparams, x, y).x
  r = stationarity.stationarity_residual(tparams, x, y, lam)
  scale = stationarity.tree_norm(params) / stationarity.tree_norm(tparams)  # the residual is 1-homogeneous
  return [sum(jnp.sum(jnp.square(v)) for v in layer.values()) * scale ** 2 for layer in r]


@jax.jit
def _floor_minus_init(params, init, x, y):
  """min_lambda>=0 ||(theta - theta0) - sum lambda_i grad q_i(theta)||^2 per layer (raw units)."""
  G = stationarity.gram(params, x, y)
  delta = jax.tree_util.tree_map(jnp.subtract, params, init)
  _, vjp = jax.vjp(lambda p: stationarity.margins_of(p, x, y), params)
  _, jvp = jax.jvp(lambda p: stationarity.margins_of(p, x, y), (params,), (delta,))
  lam = nnls.nnls_gram(G, jvp).x
  r = jax.tree_util.tree_map(jnp.subtract, delta, vjp(lam)[0])
  return [sum(jnp.sum(jnp.square(v)) for v in layer.values()) for layer in r]


def main(_):
  if not FLAGS.train_workdir:
    raise ValueError("--train_workdir is required (a training workdir of a 3-layer net)")
  cfg, ds, ckpts = train_job.load_run(FLAGS.train_workdir)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  init = dict(ckpts)[0] if ckpts and ckpts[0][0] == 0 else None
  if init is None:
    raise ValueError(f"{FLAGS.train_workdir}: no step-0 checkpoint (the init is needed)")
  want = {int(s) for s in FLAGS.steps}
  rows = []
  init_sq = _layer_sq(init)
  for step, params in ckpts:
    if step == 0 or (want and step not in want):
      continue
    t0 = time.time()
    w_sq = _layer_sq(params)
    moved = _layer_sq(jax.tree_util.tree_map(jnp.subtract, params, init))
    floor = [float(v) for v in _floor(params, x, y)]
    floor_init = [float(v) for v in _floor_minus_init(params, init, x, y)]
    q = stationarity.margins_of(params, x, y)
    row = {"step": step, "theta_sq": float(sum(w_sq)), "layer_sq": w_sq, "init_sq": init_sq, "moved_sq": moved,
           "balance": [w_sq[i + 1] - w_sq[i] for i in range(len(w_sq) - 1)],
           "init_share": [i / max(w, 1e-300) for i, w in zip(init_sq, w_sq)],
           "truth_floor_sq": floor, "truth_floor_total": float(sum(floor)),
           "eps_rel": float(np.sqrt(sum(floor) / sum(w_sq))),
           "truth_floor_minus_init_sq": floor_init, "q_min": float(jnp.min(q)), "wall_s": time.time() - t0}
    rows.append(row)
    print(f"step {step:>7d}  ||theta||^2 {row['theta_sq']:.4g}  layers {[f'{v:.4g}' for v in w_sq]}  "
          f"moved {[f'{v:.3g}' for v in moved]}  balance {[f'{v:.4g}' for v in row['balance']]}  "
          f"truth's floor {[f'{v:.4g}' for v in floor]} (eps_rel {row['eps_rel']:.3f})  "
          f"minus init {[f'{v:.4g}' for v in floor_init]}", flush=True)
  res = {"train_workdir": os.path.abspath(FLAGS.train_workdir), "train_config": wd.to_jsonable(cfg),
         "n_train": int(x.shape[0]), "rows": rows, "machine": report.machine()}
  wd.write_json(FLAGS.out, res)  # atomic; makes the folder
  print(f"wrote {FLAGS.out}")


def console():
  """The console entry point (python scripts/bench_floor.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
