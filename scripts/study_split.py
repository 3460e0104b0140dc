r"""study_split (exact part): KKT sets at growing distance from the training set, by splitting points.

  python scripts/train.py --workdir=runs/sphere_w200 --width=200 --steps=2000
  python scripts/study_split.py --train_workdir=runs/sphere_w200 --workdir=runs/study_split

Needs a first layer narrower than d. Splits the --n_split largest-multiplier points along first-layer null
directions at 1e-2 .. 1e3 x the data radius; writes metrics.jsonl (eps_rel, delta, the attack's stationarity
loss per distance), summary.json and split.png. The width-above-d (approximate) part is not built yet.
"""

from absl import app
from absl import flags
import jax

from jaxrecon import split_study

flags.DEFINE_string("train_workdir", None, "Training workdir (first layer narrower than d).")
flags.DEFINE_string("workdir", "runs/study_split", "Output directory.")
flags.DEFINE_integer("n_split", 50, "Points to split.")
flags.DEFINE_list("factors", ["1e-2", "1e-1", "1", "10", "100", "1000"], "Distances / data radius.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = the last).")
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  jax.config.update("jax_enable_x64", True)
  config = split_study.SplitStudyConfig(factors=tuple(float(f) for f in FLAGS.factors), n_split=FLAGS.n_split,
                                        step=FLAGS.step)
  split_study.run(FLAGS.train_workdir, config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
