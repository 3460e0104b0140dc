r"""Attack throughput benchmark, written as JSON.

  python scripts/bench_attack.py --out=bench/attack.json

For each size (full: m=1000 candidates against 784-1000-1000-1; small: m=200 against 784-100-1), dtype and
sweep size: candidate-steps per second of one compiled sweep, the same configurations run one after another
through the same code (run_sweep with one configuration at a time; the compiled code is cached, so this
measures batching, not compilation), their ratio, and the same loop with every run compiling afresh (what
separate processes pay, as in the reference's one-process-per-run sweep). Also: the time of the matrix products an
attack step must do (forward, parameter VJP and the outer x-gradient through it), timed on their own with the
same shapes, against the measured per-step time of one configuration; the compiled sweep's memory (XLA's
memory analysis) and the process's peak RSS. On a GPU also the fraction of the device's matmul peak reached
(peak = the best rate of a large square matmul measured here). Pin threads with
XLA_FLAGS=--xla_cpu_multi_thread_eigen=true and OMP/OPENBLAS_NUM_THREADS when comparing machines.
"""

import sys
import json
import os
import resource
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp

from jaxrecon import workdir as wd
from jaxrecon.commands import cli
from jaxrecon import attack
from jaxrecon import nets
from jaxrecon import timing

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench/attack.json", "JSON output path.")
flags.DEFINE_list("sizes", ["small", "full"], "small (784-100-1, m=200) and/or full (784-1000-1000-1, m=1000).")
flags.DEFINE_list("dtypes", ["float32", "float64"], "dtypes to measure.")
flags.DEFINE_list("sweeps", ["1", "16"], "Sweep sizes (configurations in one compiled call).")
flags.DEFINE_integer("steps", 0, "Attack steps per measurement (0 = 200 small / 10 full).")
flags.DEFINE_integer("repeats", 3, "Repeats (median reported).")
flags.DEFINE_bool("sequential", True, "Also run the largest sweep one configuration at a time.")

SIZES = {"small": ((100,), 200), "full": ((1000, 1000), 1000)}


def matmul_shapes(sizes, m):
  """(M, K, N) of every matrix product in one attack step of an MLP with layer sizes `sizes`.

  Forward z_l = a_{l-1} W_l; parameter VJP dW_l = a_{l-1}^T delta_l, delta_{l-1} = delta_l W_l^T; the outer
  gradient reverses each: dW_l gives two products (both factors depend on x), the others one each.
  """
  shapes = []
  layers = list(zip(sizes[:-1], sizes[1:]))
  for fi, fo in layers:
    shapes.append((m, fi, fo))          # forward
    shapes.append((m, fo, fi))          # its reverse (cotangent of a_{l-1})
  for l, (fi, fo) in enumerate(layers):
    shapes.append((fi, m, fo))          # dW_l = a^T delta
    shapes += [(m, fo, fi), (m, fi, fo)]  # its reverse: d a = delta G^T, d delta = a G
    if l > 0:
      shapes.append((m, fo, fi))        # delta_{l-1} = delta_l W_l^T
      shapes.append((m, fi, fo))        # its reverse
  return shapes


def time_matmuls(shapes, dtype, repeats):
  keys = jax.random.split(jax.random.key(0), 2 * len(shapes))
  ops = [(jax.random.normal(keys[2 * i], (a, k), dtype), jax.random.normal(keys[2 * i + 1], (k, b), dtype))
         for i, (a, k, b) in enumerate(shapes)]
  mm = jax.jit(lambda ops: [x @ y for x, y in ops])
  times = timing.call_times(lambda: mm(ops), repeats)
  return statistics.median(times), sum(2.0 * a * k * b for a, k, b in shapes)


def one_sweep(params, hyper, d, cfg):
  res = attack.run_sweep(jax.random.key(0), params, hyper, d, cfg, n_train=cfg.m // 2, log=None)
  return res.wall_s, res.compile_s


def bench_size(size, dtype, sweeps, steps, repeats, sequential):
  widths, m = SIZES[size]
  d = 784
  steps = steps or (200 if size == "small" else 10)
  params = nets.init(jax.random.key(0), nets.MLPConfig(d_in=d, widths=widths), jnp.dtype(dtype))
  out = {"size": size, "dtype": dtype, "m": m, "widths": list(widths), "steps": steps}
  # Moderate values so no configuration diverges (a frozen configuration would still cost the same).
  ranges = {"lr_x": (1e-3, 1e-2), "init_scale": (1e-3, 1e-2)}
  cfg = attack.AttackConfig(m=m, steps=steps, log_every=steps, dtype=dtype)
  for c in sweeps:
    hyper = attack.random_sweep(jax.random.key(c), c, ranges)
    one_sweep(params, hyper, d, cfg)  # compile
    walls = [one_sweep(params, hyper, d, cfg)[0] for _ in range(repeats)]
    wall = statistics.median(walls)
    out[f"sweep{c}"] = {"wall_s": wall, "walls": walls, "candidate_steps_per_s": c * m * steps / wall,
                        "ms_per_step_per_config": 1e3 * wall / steps / c}
  c = max(sweeps)
  hyper = attack.random_sweep(jax.random.key(c), c, ranges)
  if sequential and c > 1:
    seq = []
    for _ in range(repeats):
      t = time.perf_counter()
      for i in range(c):
        one_sweep(params, hyper.take([i]), d, cfg)
      seq.append(time.perf_counter() - t)
    swept = [one_sweep(params, hyper, d, cfg)[0] for _ in range(repeats)]
    # The same loop when every run compiles afresh (separate processes, as the reference runs its sweep):
    t = time.perf_counter()
    for i in range(c):
      attack.make_sweep_runner.cache_clear()
      attack.sweep._init_fn.cache_clear()  # noqa: SLF001
      jax.clear_caches()
      one_sweep(params, hyper.take([i]), d, cfg)
    recompile = time.perf_counter() - t
    out["sequential_recompiling"] = {"configs": c, "wall_s": recompile,
                                     "speedup": recompile / statistics.median(swept)}
    out["sequential"] = {"configs": c, "wall_s": statistics.median(seq), "walls": seq,
                         "sweep_wall_s": statistics.median(swept),
                         "speedup": statistics.median(seq) / statistics.median(swept)}
  # Matrix products alone vs one configuration's step.
  sizes = (d,) + tuple(widths) + (1,)
  mm_s, flops = time_matmuls(matmul_shapes(sizes, m), jnp.dtype(dtype), max(repeats, 5))
  step_s = out["sweep1"]["wall_s"] / steps if "sweep1" in out else float("nan")
  out["matmuls"] = {"count": len(matmul_shapes(sizes, m)), "gflop_per_step": flops / 1e9,
                    "matmul_s": mm_s, "step_s": step_s, "step_over_matmul": step_s / mm_s,
                    "achieved_gflops_step": flops / step_s / 1e9, "achieved_gflops_matmul": flops / mm_s / 1e9}
  peak = timing.matmul_peak(jnp.dtype(dtype), size=4096 if jax.default_backend() != "cpu" else 2048)
  out["matmuls"].update(peak_gflops=peak / 1e9, step_fraction_of_peak=flops / step_s / peak)
  # Compiled memory of the largest sweep.
  runner = attack.make_sweep_runner(cfg)
  hyper = attack.random_sweep(jax.random.key(c), c, ranges)
  h = hyper.as_arrays(dtype)
  states = attack.sweep._init_fn(m, d, cfg, jnp.dtype(dtype))(jax.random.key(0), h)
  y = attack.candidate_labels(m).astype(dtype)
  try:
    mem = runner.lower(states, h, params, params, y, steps).compile().memory_analysis()
    out["memory"] = {"configs": c, "temp_bytes": int(mem.temp_size_in_bytes),
                     "argument_bytes": int(mem.argument_size_in_bytes),
                     "output_bytes": int(mem.output_size_in_bytes)}
  except Exception as e:  # memory_analysis is not available on every backend
    out["memory"] = {"error": str(e)}
  return out


def main(argv):
  del argv
  sweeps = sorted(int(s) for s in FLAGS.sweeps)
  results = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
             "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "runs": []}
  for size in FLAGS.sizes:
    for dtype in FLAGS.dtypes:
      r = bench_size(size, dtype, sweeps, FLAGS.steps, FLAGS.repeats, FLAGS.sequential)
      results["runs"].append(r)
      print(json.dumps(r, indent=1))
  results["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  wd.write_json(FLAGS.out, results)  # atomic; makes the folder
  print(f"wrote {FLAGS.out}")


def console():
  """The console entry point (python scripts/bench_attack.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
