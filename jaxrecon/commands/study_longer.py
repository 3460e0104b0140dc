r"""study_longer: "trained longer, less susceptible", tested with exact residuals and scale-invariant recovery.

  jaxrecon-study-longer --workdir=runs/study_longer          # the CPU-scale default (n 50, d 64, width 256)

Trains one bias-free net on the sphere data twice (the fast schedule for --fast_steps, plain GD at --gd_lr for
--gd_steps: a gradient-flow proxy); at every checkpoint that separates the data reports the exact eps_rel,
delta and ||P_perp W_1|| / ||theta||, and attacks the net (rescaled to margin 1) with --seeds seeds of one
setting three ways: prior-free, a weak box prior (--weak_prior), and a basin test (candidates started at the
training points plus --basin_noise x radius noise). Scores: best-5 NCC with training points vs held-out points,
the margin ratio, the basin drift, each with bootstrap intervals over seeds; then the split study's reach at
every checkpoint. Writes train_*/, split_*/, metrics.jsonl, candidates_*.npz, summary.json and longer.png.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.commands import train_flags
from jaxrecon.experiments import longer

flags.DEFINE_string("workdir", "runs/study_longer", "Output directory.")
_T = train_flags.binder_args()  # data.* and widths named as in jaxrecon-train
_A = attack_flags.binder_args(names={"attack.steps": "attack_steps", "attack.log_every": "attack_log_every"})
CONFIG = config_flags.Binder(
    longer.LongerStudyConfig(), names={**_T["names"], **_A["names"]}, choices={**_T["choices"], **_A["choices"]},
    parsers={**_T["parsers"], **_A["parsers"]}, help=_A["help"], clash_prefix="attack_",
    skip=(*_T["skip"], *_A["skip"], "data.task", "data.selection", "data.subtract_mean", "data.offset",
          "data.parity_k", "data.gaussian_sep", "data.data_dir", "attack.variant", "attack.match_init",
          "attack.prior", "attack.prior_weight", "attack.dtype", "attack.chunk", "sweep.radii", "sweep.configs",
          "sweep.seed"))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  longer.run(CONFIG.build(), FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-longer)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
