r"""study_leakage: do training choices (optimizer, weight decay, classes) change what the attack recovers?

  jaxrecon-study-leakage --workdir=runs/study_leakage                     # synthetic sphere data, n 20
  jaxrecon-study-leakage --dataset=mnist --data_dir=$DATA/mnist --n=20 --workdir=runs/study_leakage_mnist
  jaxrecon-study-leakage --dataset=mnist --task=multiclass --n=50 --recipes=gd,adam,gd_plain,gd_wd ...

Trains the same data and net with each recipe (GD's direction, Adam, Muon, SUMO, plain GD with and without
weight decay), measures the exact l2 KKT residual and each norm's max-margin stationarity (l2, l_inf for
Adam, spectral for Muon; weight decay's own stationarity), and attacks each net with the attack command's
protocol (--protocol, default fast) for every --targets (theta: l2 stationarity, sign: l_inf), plus the
signed-multiplier variant with weight decay. Writes train_*/ and attack_*/ run folders, metrics.jsonl,
summary.json (the table and the verdict) and leakage.png. --tiny: a smoke run (numbers mean nothing).
"""

import dataclasses
import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.commands import train_flags
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import leakage

flags.DEFINE_string("workdir", "runs/study_leakage", "Output directory.")
flags.DEFINE_enum("protocol", "fast", list(attack_job.PROTOCOLS), "The attack's preset; flags given override it.")
flags.DEFINE_bool("tiny", False, "A smoke run (few steps; numbers mean nothing).")
_T, _A = train_flags.binder_args("train."), attack_flags.binder_args("attack.")
CONFIG = config_flags.Binder(
    leakage.LeakageConfig(), names={**_T["names"], **_A["names"], "attack.attack.optimizer": "attack_optimizer"}, choices={**_T["choices"], **_A["choices"]},
    parsers={**_T["parsers"], **_A["parsers"]}, help=_A["help"], clash_prefix="attack_",
    skip=(*_T["skip"], *_A["skip"], "train.optimizer", "train.lr", "train.weight_decay", "attack.attack.target",
          "attack.attack.variant", "attack.sweep.seed", "attack.step", "train.seed"))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  base = dataclasses.replace(leakage.LeakageConfig(), attack=attack_job.PROTOCOLS[FLAGS.protocol])
  config = CONFIG.build(base, **{"train.data.seed": FLAGS.seed})
  if FLAGS.tiny:
    config = leakage.tiny(config)
  leakage.run(config, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-leakage)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
