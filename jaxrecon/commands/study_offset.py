r"""study_offset: a secret offset added to the training inputs as a defence.

  jaxrecon-study-offset --workdir=runs/study_offset --dataset=mnist --data_dir=DIR --n=50 \
      --lr=1 --steps=2000 --offsets=0,0.25,0.5,1,2

For each offset: trains (the flags of scripts/train.py) on inputs shifted by the
offset after mean removal, then attacks the last checkpoint with the usual box prior (the flags of
scripts/attack.py, with an attack_ prefix where training uses the same name: --attack_steps,
--attack_optimizer, --attack_seed, ...; the attacker does not know the offset) with the same sweep, once per
--prior_weights (0 = no prior). Each row also counts the training points outside the attacker's box and the
true set's own prior penalty (is the defence making the prior wrong?). Writes offset_<o>/train,
offset_<o>/attack, metrics.jsonl, summary.json (SSIM and good counts, or distances for vector data, against
the offset) and offset.png.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import train_flags
from jaxrecon.experiments import studies

TRAIN = train_flags.binder()
flags.DEFINE_string("workdir", "runs/study_offset", "Output directory.")
flags.DEFINE_list("offsets", ["0", "0.25", "0.5", "1", "2"], "Secret offsets added to every input.")
flags.DEFINE_list("prior_weights", ["1"], "Weights of the attacker's box prior, one attack each (0 = no prior).")
ATTACK = attack_flags.binder(studies.STUDY_ATTACK, clash_prefix="attack_", skip=("step", "attack.prior_weight"))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  tcfg = train_flags.config_from_flags(TRAIN)
  config = studies.OffsetStudyConfig(train=tcfg, offsets=tuple(float(o) for o in FLAGS.offsets),
                                     reconstruct=ATTACK.build(), seed=FLAGS.attack_seed,
                                     prior_weights=tuple(float(w) for w in FLAGS.prior_weights))
  studies.run_offset(config, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-offset)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
