r"""Time to quality: the reference protocol against jaxrecon's fast path, one machine, one run (issue 16).

  taskset -c 0 python scripts/bench_quality.py --data_dir=$DATA/mnist --workdir=runs/bench_quality \
      --out=bench/quality.json

MNIST odd/even, n = 20 (10 per class), 784-200-1 with a first-layer bias. The reference path: GD lr 0.01 for
10^6 steps, then --ref_configs configurations of the reference's random sweep (SGD momentum, float64, 50,000
steps, pooled), evaluated after each; the fast path: relative_gd for 2,000 steps, then the attack command's
default protocol (8 configurations in float32, weights at norm 10, 3,000 steps); and the levers (the fast path
with one change each: successive halving, float64, Adam, the reference-trained net). Writes
the run folder of `jaxrecon.experiments.quality` (metrics.jsonl, summary.json, quality.png, quality.npz) and a
copy of summary.json at --out. About 45 minutes on one core of a 2-core CPU; --tiny is a 1-minute smoke run.
On a GPU the same command runs there; the device and its measured matmul peak go in the summary.
"""

import dataclasses
import os
import shutil
import sys

from absl import flags
import jax

from jaxrecon import timing
from jaxrecon import workdir as wd
from jaxrecon.commands import cli
from jaxrecon.experiments import quality

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/bench_quality", "Run folder.")
flags.DEFINE_string("out", "bench/quality.json", "Copy of summary.json (empty: none).")
_DATA = os.environ.get("JAXRECON_DATA_DIR")
flags.DEFINE_string("data_dir", os.path.join(_DATA, "mnist") if _DATA else "",
                    "MNIST IDX directory (default: $JAXRECON_DATA_DIR/mnist).")
flags.DEFINE_integer("n", 20, "Training images (balanced odd/even).")
flags.DEFINE_list("width", ["200"], "Hidden widths.")
flags.DEFINE_integer("ref_configs", 6, "Reference sweep configurations run (of its ~100).")
flags.DEFINE_integer("ref_train_steps", 1_000_000, "Reference GD steps (lr 0.01).")
flags.DEFINE_integer("ref_attack_steps", 50_000, "Reference attack steps per configuration.")
flags.DEFINE_list("levers", list(quality.LEVERS), f"Levers to measure: {', '.join(quality.LEVERS)}.")
flags.DEFINE_bool("tiny", False, "A smoke run (few steps; numbers mean nothing).")


def main(argv):
  del argv
  widths = tuple(int(w) for w in FLAGS.width)
  data = dataclasses.replace(quality.DATA, data_dir=FLAGS.data_dir, n=FLAGS.n)
  ref_train = dataclasses.replace(quality.REFERENCE_TRAIN, data=data, widths=widths, steps=FLAGS.ref_train_steps)
  fast_train = dataclasses.replace(quality.FAST_TRAIN, data=data, widths=widths)
  ref_attack = quality.REFERENCE_ATTACK
  ref_attack = dataclasses.replace(ref_attack, attack=dataclasses.replace(ref_attack.attack,
                                                                          steps=FLAGS.ref_attack_steps))
  config = quality.QualityConfig(reference_train=ref_train, reference_attack=ref_attack,
                                 ref_configs=FLAGS.ref_configs, fast_train=fast_train, levers=tuple(FLAGS.levers))
  if FLAGS.tiny:
    config = quality.tiny(config)
  peaks = {d: timing.matmul_peak(d, 256 if FLAGS.tiny else 2048) / 1e9 for d in ("float32", "float64")}
  print(f"device {jax.devices()[0].device_kind}: matmul peak {peaks['float32']:.0f} GFLOP/s (float32), "
        f"{peaks['float64']:.0f} (float64)")
  summary = quality.run(config, FLAGS.workdir)
  summary = dict(summary, matmul_peak_gflops=peaks, command=" ".join(sys.argv))
  wd.write_json(os.path.join(FLAGS.workdir, "summary.json"), summary)
  if FLAGS.out:
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    shutil.copy(os.path.join(FLAGS.workdir, "summary.json"), FLAGS.out)
    shutil.copy(os.path.join(FLAGS.workdir, "quality.png"), os.path.splitext(FLAGS.out)[0] + ".png")


def console():
  """The console entry point (python scripts/bench_quality.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
