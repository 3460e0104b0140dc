r"""study_split: KKT sets at growing distance from the training set, by splitting points, per checkpoint.

  python scripts/train.py --workdir=runs/sphere_w200 --width=200 --steps=2000
  python scripts/study_split.py --train_workdir=runs/sphere_w200 --workdir=runs/study_split --steps=

Exact part (first layer narrower than d): splits the --n_split largest-multiplier points along first-layer null
directions at 1e-2 .. 1e3 x the data radius (eps_rel, delta, the attack's stationarity loss per distance).
Approximate part (any width): splits one support point along directions orthogonal to the data span and g_A,
reporting the largest magnitude with eps_rel within --tol of the true set's. Writes metrics.jsonl,
summary.json, split.png, split_approx.png. --steps= (empty) studies every checkpoint.
"""

from absl import flags

import cli
from jaxrecon import split_study

flags.DEFINE_string("train_workdir", None, "Training workdir (first layer narrower than d).")
flags.DEFINE_string("workdir", "runs/study_split", "Output directory.")
flags.DEFINE_integer("n_split", 50, "Points to split.")
flags.DEFINE_list("factors", ["1e-2", "1e-1", "1", "10", "100", "1000"], "Distances / data radius.")
flags.DEFINE_list("steps", ["-1"], "Checkpoint steps (-1 = the last; empty = all but step 0).")
flags.DEFINE_enum("exact", "auto", ["auto", "yes", "no"], "Exact (null-space) part: auto = when width < d.")
flags.DEFINE_bool("approx", True, "Approximate part (one support point, orthogonal directions).")
flags.DEFINE_integer("n_points", 5, "Approximate part: largest-multiplier points tried.")
flags.DEFINE_float("tol", 0.01, "Approximate part: allowed relative increase of eps_rel.")
flags.DEFINE_integer("grid_count", 81, "Approximate part: magnitudes on the log grid 1e-4 .. 1e4 x radius.")
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = split_study.SplitStudyConfig(factors=tuple(float(f) for f in FLAGS.factors), n_split=FLAGS.n_split,
                                        steps=tuple(int(v) for v in FLAGS.steps), exact=FLAGS.exact,
                                        approx=FLAGS.approx, n_points=FLAGS.n_points, tol=FLAGS.tol,
                                        grid=(-4.0, 4.0, FLAGS.grid_count))
  split_study.run(FLAGS.train_workdir, config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
