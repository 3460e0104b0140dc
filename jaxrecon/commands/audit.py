r"""Audit a model trained elsewhere: the reconstruction attack on a PyTorch export, evaluated if you hold the data.

  python -c "import torch; ...; torch.save(model.state_dict(), 'model.pt')"
  jaxrecon-audit --model=model.pt --n_train=500 --workdir=runs/audit
  jaxrecon-audit --model=model.pt --data=train.npz --image_shape=28,28,1 --workdir=runs/audit

The model: a torch.save'd state_dict (.pt / .pth, read without running the file's code), .safetensors or .npz;
nn.Linear layers with ReLU between, no bias after the first layer (anything else is refused, naming the
layer). --data: an .npz with x (N, D) and y (N,: +-1, or 0/1 read as -1/+1), optionally mean (D,) and
x_heldout (points of the same distribution the model did not see: the membership non-members, the credit
competitors and nulls), in the space the model was trained in. --protocol: the attack's preset, as
jaxrecon-attack's (fast by default). Writes report.md (the verdict first), summary.json, candidates.npz (with
a training-set-free margin ranking), metrics.jsonl and, with data, curve.png (with the baselines),
credited.png (images), roc.png and membership_scores.npz (in_scores / out_scores, for jax_privacy's
CanaryScoreAuditor).
"""

import sys

from absl import flags

from jaxrecon.attack import protocols
from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import audit as audit_job

flags.DEFINE_string("workdir", "runs/audit", "Output directory.")
_A = attack_flags.binder_args()  # the attack's and the sweep's flags, named as in jaxrecon-attack
CONFIG = config_flags.Binder(
    audit_job.preset(protocols.DEFAULT), names=_A["names"],
    choices={**_A["choices"], "protocol": tuple(protocols.PROTOCOLS)},
    parsers={**_A["parsers"], "image_shape": lambda v: tuple(int(a) for a in v)}, skip=_A["skip"],
    help={"protocol": "The preset the attack's flags start from: fast | reference (as jaxrecon-attack's)."})
FLAGS = flags.FLAGS


def main(argv):
  del argv
  audit_job.run(CONFIG.build(audit_job.preset(FLAGS.protocol)), FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-audit)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
