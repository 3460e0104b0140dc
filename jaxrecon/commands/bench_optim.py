r"""Optimizer benchmark: AdamW, optax Muon, optax GaLore and SUMO on two small CPU tasks, written as JSON + PNG.

  python scripts/bench_optim.py --out=bench/optim.json

The job is `jaxrecon.experiments.optim_bench` (its docstring: the tasks, the methods, SUMO's paired
ablation); this command binds its config to flags. Math-library threads are pinned to one
(OMP/OpenBLAS/MKL) before JAX starts: multithreaded LAPACK makes small SVDs on 2 cores much slower.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_v, "1")

import json  # noqa: E402
import sys  # noqa: E402

from absl import flags  # noqa: E402

from jaxrecon.commands import cli  # noqa: E402
from jaxrecon.commands import config_flags  # noqa: E402
from jaxrecon.experiments import optim_bench  # noqa: E402

FLAGS = flags.FLAGS
CONFIG = config_flags.Binder(optim_bench.OptimBenchConfig())
flags.DEFINE_string("out", "bench/optim.json", "JSON output (a PNG is written beside it).")
flags.DEFINE_bool("extend", False, "Add these runs to those already in --out (e.g. more learning rates).")


def main(argv):
  del argv
  runs = ()
  if FLAGS.extend and os.path.exists(FLAGS.out):
    with open(FLAGS.out) as f:
      runs = tuple(json.load(f)["runs"])
  optim_bench.run(CONFIG.build(), FLAGS.out, runs=runs, log=cli.progress)


def console():
  """The console entry point (python scripts/bench_optim.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
