r"""The attack's scan runner against a plain jitted step of the same loss (issue 28, item 3), side by side.

  taskset -c 0 python scripts/bench_runner.py --dtypes=float32,float64 --out=bench/attack/runner.json

At the reference's full size (1,000 candidates of 784 pixels against 784-1000-1000-1 with a first-layer bias):
- plain: `jax.jit(make_step(config))` on one configuration, called once per step (what a hand-written loop does);
- vmap1: the same step vmapped over a configuration axis of size 1, called once per step;
- runner: `sweep.make_sweep_runner(config)`, the library's compiled loop (`lax.fori_loop` over the vmapped
  step, traced trip count), `steps` steps in one call.
Each is timed `repeats` times over `steps` steps after a compile call; the medians (ms per step) and the ratios
to plain go to the JSON with the machine. Pin to one core (`taskset -c 0`) for single-thread figures.
"""

import json
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp

from jaxrecon import nets
from jaxrecon import report
from jaxrecon.attack import loss as attack_loss
from jaxrecon.attack import sweep as attack_sweep
from jaxrecon.commands import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench/attack/runner.json", "Where the JSON goes.")
flags.DEFINE_list("dtypes", ["float32", "float64"], "The attack's dtypes.")
flags.DEFINE_list("widths", ["1000", "1000"], "Hidden widths of the attacked net.")
flags.DEFINE_integer("d", 784, "Input size.")
flags.DEFINE_integer("m", 1000, "Candidates.")
flags.DEFINE_integer("steps", 8, "Steps per timing.")
flags.DEFINE_integer("repeats", 3, "Timings per variant (median reported).")


def _timed(fn, state, steps):
  state = jax.tree_util.tree_map(jnp.copy, state)
  state = fn(state, 1)  # compile and warm
  jax.block_until_ready(state)
  t = time.perf_counter()
  state = fn(state, steps)
  jax.block_until_ready(state)
  return (time.perf_counter() - t) / steps


def bench(dtype: str) -> dict:
  config = attack_loss.AttackConfig(steps=FLAGS.steps, dtype=dtype, m=FLAGS.m)
  widths = tuple(int(w) for w in FLAGS.widths)
  mlp = nets.MLPConfig(d_in=FLAGS.d, widths=widths, n_out=1, init_scales=(1e-4,) + (None,) * len(widths),
                       first_bias=True)
  params = nets.init(jax.random.key(0), mlp, jnp.dtype(dtype))
  hyper = attack_sweep.SweepConfig(configs=1).hyper(jax.random.key(1)).as_arrays(jnp.dtype(dtype))
  prob = attack_sweep._problem(params, config, None, FLAGS.m // 2)
  states = attack_sweep._init_fn(FLAGS.m, FLAGS.d, config, jnp.dtype(dtype))(jax.random.key(2), hyper)
  one = jax.tree_util.tree_map(lambda v: v[0], states)
  hyper_one = jax.tree_util.tree_map(lambda v: v[0], hyper)
  args = (prob.params, prob.target, prob.y_hat)
  step = attack_loss.make_step(config)
  plain = jax.jit(step, donate_argnums=0)
  vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, None)), donate_argnums=0)
  runner = attack_sweep.make_sweep_runner(config)

  def loop(fn, h):
    def run(s, n):
      for _ in range(n):
        s, _ = fn(s, h, *args)
      return s
    return run

  variants = {"plain": (loop(plain, hyper_one), one), "vmap1": (loop(vstep, hyper), states),
              "runner": (lambda s, n: runner(s, hyper, *args, n)[0], states)}
  times = {k: [] for k in variants}
  for _ in range(FLAGS.repeats):  # interleaved, so a slow spell of the machine hits every variant
    for k, (fn, s) in variants.items():
      times[k].append(_timed(fn, s, FLAGS.steps))
  ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
  return {"dtype": dtype, "ms_per_step": ms, "ms_all": {k: [1000 * t for t in v] for k, v in times.items()},
          "ratio_to_plain": {k: ms[k] / ms["plain"] for k in ms}}


def main(argv):
  del argv
  rows = []
  for dtype in FLAGS.dtypes:
    r = bench(dtype)
    rows.append(r)
    print(f"{dtype}: " + ", ".join(f"{k} {v:.1f} ms/step ({r['ratio_to_plain'][k]:.3f}x plain)"
                                   for k, v in r["ms_per_step"].items()), flush=True)
  out = {"size": {"m": FLAGS.m, "d": FLAGS.d, "widths": FLAGS.widths}, "steps": FLAGS.steps,
         "repeats": FLAGS.repeats, "rows": rows, "machine": report.machine(),
         "cpu_affinity": len(os.sched_getaffinity(0))}
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(out, f, indent=1)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  cli.run(main)
