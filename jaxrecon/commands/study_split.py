r"""study_split: KKT sets at growing distance from the training set, by splitting points, per checkpoint.

  jaxrecon-train --workdir=runs/sphere_w200 --width=200 --steps=2000
  jaxrecon-study-split --train_workdir=runs/sphere_w200 --workdir=runs/study_split --steps=

Exact part (first layer narrower than d): splits the --n_split largest-multiplier points along first-layer null
directions at 1e-2 .. 1e3 x the data radius (eps_rel, delta, the attack's stationarity loss per distance).
Approximate part (any width): splits one support point along directions orthogonal to the data span and g_A,
reporting the largest magnitude with eps_rel within --tol of the true set's. Writes metrics.jsonl,
summary.json, split.png, split_approx.png. --steps= (empty) studies every checkpoint.
"""

import sys

from absl import flags

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import split as split_job
from jaxrecon.noprior.split import DIRECTION_KINDS

flags.DEFINE_string("train_workdir", None, "Training workdir (first layer narrower than d).")
flags.DEFINE_string("workdir", "runs/study_split", "Output directory.")
CONFIG = config_flags.Binder(split_job.SplitStudyConfig(), choices={"exact": ("auto", "yes", "no")},
                             parsers={"directions": lambda v: tuple(_direction(d) for d in v)})
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def _direction(name: str) -> str:
  if name not in DIRECTION_KINDS:
    raise ValueError(f"--directions: {name!r} is not one of {', '.join(DIRECTION_KINDS)}")
  return name


def main(argv):
  del argv
  split_job.run(FLAGS.train_workdir, CONFIG.build(), FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-split)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
