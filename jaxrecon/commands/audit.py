r"""Audit a model trained elsewhere: the reconstruction attack on a PyTorch export, evaluated if you hold the data.

  python -c "import numpy as np, torch; ..."   # np.savez("model.npz", **{k: v.numpy() for k, v in sd.items()})
  jaxrecon-audit --model=model.npz --n_train=500 --workdir=runs/audit
  jaxrecon-audit --model=model.safetensors --data=train.npz --image_shape=28,28,1 --workdir=runs/audit

The model: nn.Linear layers with ReLU between, no bias after the first layer (anything else is refused, naming
the layer). --data: an .npz with x (N, D) and y (N,), optionally mean (D,) and x_heldout, in the space the model
was trained in. Writes candidates.npz (with a training-set-free margin ranking), metrics.jsonl, summary.json and,
with data, the evaluation and curve.png. The sweep's flags are those of jaxrecon-attack.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import audit as audit_job

flags.DEFINE_string("workdir", "runs/audit", "Output directory.")
_A = attack_flags.binder_args()  # the attack's and the sweep's flags, named as in jaxrecon-attack
CONFIG = config_flags.Binder(
    audit_job.AuditConfig(), names=_A["names"], choices=_A["choices"],
    parsers={**_A["parsers"], "image_shape": lambda v: tuple(int(a) for a in v)}, skip=_A["skip"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  audit_job.run(CONFIG.build(), FLAGS.workdir)


def console():
  """The console entry point (jaxrecon-audit)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
