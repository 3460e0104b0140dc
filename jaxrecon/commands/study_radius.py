r"""study_radius (the paper's synthetic experiment): no prior, no reliable reconstruction.

  jaxrecon-train --workdir=runs/sphere --n=100 --width=1000 --steps=1000
  jaxrecon-study-radius --train_workdir=runs/sphere --workdir=runs/study_radius

Candidates start on spheres of radius r x (the data's RMS norm), r in --radii, with no box penalty; every
radius runs in ONE compiled sweep (the flags of scripts/attack.py: each configuration at every radius, same
seed). Writes the sweep's attack workdir attack/, and metrics.jsonl, summary.json (final attack loss and mean
distance of the best 5 reconstructions to the training set against r, each radius's candidates pooled on
their own) and radius.png.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.experiments import studies

flags.DEFINE_string("train_workdir", None, "Training workdir to attack (its last checkpoint, or --step).")
flags.DEFINE_string("workdir", "runs/study_radius", "Output directory.")
CONFIG = attack_flags.binder(studies.RadiusStudyConfig(), prefix="reconstruct.",
                             skip=("seed", "reconstruct.sweep.radii", "reconstruct.attack.prior"))
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = CONFIG.build()
  studies.run_radius(config.__class__(**{**config.__dict__, "seed": config.reconstruct.sweep.seed}),
                     FLAGS.train_workdir, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-radius)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
