r"""study_radius (the paper's synthetic experiment): no prior, no reliable reconstruction.

  python scripts/train.py --workdir=runs/sphere --n=100 --width=1000 --steps=1000
  python scripts/study_radius.py --train_workdir=runs/sphere --workdir=runs/study_radius

Candidates start on spheres of radius r x (the data's RMS norm), r in --radii, with no box penalty; one sweep
(the flags of scripts/attack.py) runs per radius with the same configurations and seed. Writes, per radius, an
attack workdir r<r>/, and metrics.jsonl, summary.json (final attack loss and mean distance of the best 5
reconstructions to the training set against r) and radius.png.
"""

from absl import flags

import cli
import attack_flags
from jaxrecon import studies

flags.DEFINE_string("train_workdir", None, "Training workdir to attack (its last checkpoint, or --step).")
flags.DEFINE_string("workdir", "runs/study_radius", "Output directory.")
flags.DEFINE_list("radii", ["1", "2", "4", "8", "16"], "Initialization radii / data radius.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the last).")
attack_flags.define()
flags.FLAGS.set_default("configs", 4)
flags.FLAGS.set_default("steps", 1000)
flags.FLAGS.set_default("theta_norm", 10.0)
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(attack_flags)


def main(argv):
  del argv
  config = studies.RadiusStudyConfig(radii=tuple(float(r) for r in FLAGS.radii),
                                     reconstruct=attack_flags.config_from_flags(step=FLAGS.step),
                                     seed=FLAGS.seed)
  studies.run_radius(config, FLAGS.train_workdir, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
