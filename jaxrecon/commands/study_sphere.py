r"""study_sphere: the synthetic experiment of "No Prior, No Leakage" at its authors' protocol.

  jaxrecon-study-sphere --workdir=runs/study_sphere            # the CPU-scale reduction (about 4 minutes)
  jaxrecon-study-sphere --workdir=runs/study_sphere_full --full # the authors' sizes (a GPU job)

Trains a bias-free d-W-W-1 net on n // 2 points per class of the radius --sphere_radius sphere about
--sphere_shift * ones (the flags of jaxrecon-train), then attacks it with the authors' grid of 108 settings
and no prior (the flags of jaxrecon-attack, with an attack_ prefix where training uses the same name:
--attack_steps, --attack_seed, ...; --prior_weight, --lambda_weight, --init_shift, --sweep_lr_lambda), all in
one compiled sweep. Writes train/, attack/, chance/, metrics.jsonl (one row per configuration: the authors'
distances, the scale-invariant recovery against held-out points, margin and norm ratios), recovery.npz,
summary.json and sphere.png. --full sets the authors' sizes (n 500, widths 1000,1000, 1,000 candidates,
50,001 attack steps) over whatever the size flags say.
"""

import dataclasses
import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.commands import train_flags
from jaxrecon.experiments import sphere

flags.DEFINE_string("workdir", "runs/study_sphere", "Output directory.")
flags.DEFINE_bool("full", False, "The authors' sizes: n 500, widths 1000,1000, 1,000 candidates, 50,001 steps.")
_T, _A = train_flags.binder_args("train."), attack_flags.binder_args("reconstruct.")
CONFIG = config_flags.Binder(
    sphere.SphereStudyConfig(), names={**_T["names"], **_A["names"]}, choices={**_T["choices"], **_A["choices"]},
    parsers={**_T["parsers"], **_A["parsers"]}, help=_A["help"], clash_prefix="attack_",
    skip=(*_T["skip"], *_A["skip"], "reconstruct.step", "reconstruct.theta_scale", "reconstruct.theta_norm",
          "seed"))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = CONFIG.build(**{"train.data.seed": FLAGS.seed})
  config = dataclasses.replace(config, seed=config.reconstruct.sweep.seed)
  if FLAGS.full:
    config = sphere.authors_protocol(config)
  sphere.run(config, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-sphere)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
