r"""KKT residuals (eps_rel, delta, support; the relaxed kink-neighbourhood residual) of every checkpoint of a training run.

  python scripts/kkt.py --train_workdir=runs/sphere

Writes kkt.jsonl (one row per checkpoint: step, loss, normalized_margin, eps_rel, delta, support_size, ...),
summary.json and kkt.png (log-log residuals against steps) into --out_dir (default: <train_workdir>/kkt).
"""

from absl import flags

import cli
from jaxrecon import diagnostics

flags.DEFINE_string("train_workdir", None, "A workdir written by scripts/train.py.")
flags.DEFINE_string("out_dir", None, "Where to write (default: <train_workdir>/kkt).")
flags.DEFINE_float("kink_tol", 1e-3, "Relative |w.x| below which a pair is at the ReLU kink.")
flags.DEFINE_bool("relaxed", True, "Also solve the relaxed residual (first-layer pairs within kink_tol of the kink freed).")
flags.DEFINE_integer("batch_size", 4, "Checkpoints evaluated together.")
flags.DEFINE_integer("min_step", 1, "Skip checkpoints before this step.")
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  diagnostics.run(FLAGS.train_workdir, diagnostics.KKTConfig(
      kink_tol=FLAGS.kink_tol, relaxed=FLAGS.relaxed, batch_size=FLAGS.batch_size,
      min_step=FLAGS.min_step), out_dir=FLAGS.out_dir)


if __name__ == "__main__":
  cli.run(main)
