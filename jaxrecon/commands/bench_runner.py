r"""The attack's scan runner against a plain jitted step of the same loss (issue 28, item 3), side by side.

  taskset -c 0 python scripts/bench_runner.py --dtypes=float32,float64 --out=bench/attack/runner.json

At the reference's full size (1,000 candidates of 784 pixels against 784-1000-1000-1 with a first-layer bias):
- plain: `jax.jit(make_step(config))` on one configuration, called once per step (what a hand-written loop does);
- vmap1: the same step vmapped over a configuration axis of size 1, called once per step;
- runner: `sweep.make_sweep_runner(config)`, the library's compiled loop (`lax.fori_loop` over the vmapped
  step, traced trip count), `steps` steps in one call.
Each is timed `repeats` times over `steps` steps after a compile call; the medians (ms per step) and the ratios
to plain go to the JSON with the machine. Each stage is also set against its matmul floor: the FLOPs XLA counts
for one step (`timing.xla_flops`) over this machine's measured square-matmul rate in that dtype
(`timing.matmul_peak`): `floor_ms` and `ratio_to_floor`. The training stage is one full-batch GD step of the
logistic loss on `train_n` inputs through the same net (what the reference's training repeats 10^6 times).
Pin to one core (`taskset -c 0`) for single-thread figures.
"""

import sys
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp

from jaxrecon import nets
from jaxrecon import report
from jaxrecon import timing
from jaxrecon import train
from jaxrecon.attack import loss as attack_loss
from jaxrecon.attack import sweep as attack_sweep
from jaxrecon import workdir as wd
from jaxrecon.commands import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench/attack/runner.json", "Where the JSON goes.")
flags.DEFINE_list("dtypes", ["float32", "float64"], "The attack's dtypes.")
flags.DEFINE_list("widths", ["1000", "1000"], "Hidden widths of the attacked net.")
flags.DEFINE_integer("d", 784, "Input size.")
flags.DEFINE_integer("m", 1000, "Candidates.")
flags.DEFINE_integer("steps", 8, "Steps per timing.")
flags.DEFINE_integer("repeats", 3, "Timings per variant (median reported).")
flags.DEFINE_integer("train_n", 500, "Training inputs of the training stage (0 = no training stage).")


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
  peak = timing.matmul_peak(dtype)
  flops = timing.xla_flops(plain, one, hyper_one, *args)
  floor_ms = 1000 * flops / peak
  row = {"dtype": dtype, "ms_per_step": ms, "ms_all": {k: [1000 * t for t in v] for k, v in times.items()},
         "ratio_to_plain": {k: ms[k] / ms["plain"] for k in ms}, "matmul_peak_flops": peak,
         "attack_step": {"flops": flops, "floor_ms": floor_ms, "ratio_to_floor": {k: v / floor_ms for k, v in ms.items()}}}
  if FLAGS.train_n:
    row["train_step"] = train_stage(params, dtype, peak)
  return row


def train_stage(params, dtype: str, peak: float) -> dict:
  """One full-batch GD step (logistic loss) on train_n random inputs: ms (median), XLA's FLOPs, the floor."""
  x = jax.random.normal(jax.random.key(3), (FLAGS.train_n, FLAGS.d), jnp.dtype(dtype))
  y = jnp.where(jnp.arange(FLAGS.train_n) % 2 == 0, 1, -1)

  @jax.jit
  def gd_step(p):
    g = jax.grad(train.loss_fn)(p, x, y, "logistic")
    return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)

  times = timing.call_times(lambda: gd_step(params), FLAGS.repeats * FLAGS.steps)
  ms = 1000 * statistics.median(times)
  flops = timing.xla_flops(gd_step, params)
  return {"n": FLAGS.train_n, "ms_per_step": ms, "flops": flops, "floor_ms": 1000 * flops / peak,
          "ratio_to_floor": ms / (1000 * flops / peak)}


def main(argv):
  del argv
  rows = []
  for dtype in FLAGS.dtypes:
    r = bench(dtype)
    rows.append(r)
    print(f"{dtype}: " + ", ".join(f"{k} {v:.1f} ms/step ({r['ratio_to_plain'][k]:.3f}x plain)"
                                   for k, v in r["ms_per_step"].items())
          + f"; attack step {r['attack_step']['flops'] / 1e9:.2f} GFLOP, floor {r['attack_step']['floor_ms']:.1f} ms "
          f"at {r['matmul_peak_flops'] / 1e9:.1f} GFLOP/s", flush=True)
    if "train_step" in r:
      t = r["train_step"]
      print(f"{dtype}: training step (n {t['n']}) {t['ms_per_step']:.1f} ms, {t['flops'] / 1e9:.2f} GFLOP, floor "
            f"{t['floor_ms']:.1f} ms ({t['ratio_to_floor']:.2f}x)", flush=True)
  out = {"size": {"m": FLAGS.m, "d": FLAGS.d, "widths": FLAGS.widths}, "steps": FLAGS.steps,
         "repeats": FLAGS.repeats, "rows": rows, "machine": report.machine(),
         "cpu_affinity": len(os.sched_getaffinity(0))}
  wd.write_json(FLAGS.out, out)  # atomic; makes the folder
  print(f"wrote {FLAGS.out}")


def console():
  """The console entry point (python scripts/bench_runner.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
