r"""The recovery measure's calibration (jaxrecon.credit), written as JSON.

  python scripts/bench_credit.py --data_dir=PATH/TO/mnist --out=bench/credit.json

Per-candidate credit rates of pools whose truth is known: equal mixtures of k = 2, 3, 5, 10 training points
(convex and signed: the false-positive rate the rule must keep under 5%), noisy copies at relative noise 0.25 /
0.5 / 1 (the detection rate), and fresh held-out points (chance). Settings: the unit sphere in R^784 (n 500,
cosine) and, with --data_dir, MNIST (500 training digits, 1,000 reference held-out digits, 2,000 fresh ones,
mean subtracted, NCC).
"""

import sys
import json

from absl import flags
import jax
import numpy as np

from jaxrecon import credit
from jaxrecon import data
from jaxrecon import workdir as wd
from jaxrecon.commands import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with the MNIST IDX files (optional).")
flags.DEFINE_string("out", "bench/credit.json", "Where the JSON goes.")
flags.DEFINE_integer("n", 500, "Training points.")
flags.DEFINE_integer("size", 2000, "Candidates per pool kind (a quarter per k / noise level).")


def main(_):
  res = {"rule": credit.Rule()._asdict(), "n_train": FLAGS.n}
  x, _ = data.sphere(jax.random.key(0), FLAGS.n + 3000, 784, dtype=np.float64)
  x = np.asarray(x)
  res["sphere_d784"] = credit.calibrate(jax.random.key(1), x[:FLAGS.n], x[FLAGS.n:FLAGS.n + 1000],
                                        x[FLAGS.n + 1000:], size=FLAGS.size)
  if FLAGS.data_dir:
    img, _ = data.read_mnist(FLAGS.data_dir, "train")
    img = img.reshape(len(img), -1).astype(np.float64) / 255.0
    idx = np.random.default_rng(0).permutation(len(img))[:FLAGS.n + 3000]
    tr, held, null = img[idx[:FLAGS.n]], img[idx[FLAGS.n:FLAGS.n + 1000]], img[idx[FLAGS.n + 1000:]]
    mean = tr.mean(axis=0)
    res["mnist"] = credit.calibrate(jax.random.key(3), tr - mean, held - mean, null - mean,
                                    credit.Rule(similarity="ncc"), size=FLAGS.size)
  wd.write_json(FLAGS.out, res)  # atomic; makes the folder
  print(json.dumps(res, indent=1))


def console():
  """The console entry point (python scripts/bench_credit.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
