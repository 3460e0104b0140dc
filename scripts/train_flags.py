"""The training flags shared by scripts/train.py and scripts/main.py, and their TrainConfig."""

from absl import flags

from jaxrecon import data as data_lib
from jaxrecon import train

_D = train.TrainConfig()
flags.DEFINE_enum("dataset", "sphere", ["sphere", "parity_sphere", "two_gaussians", "mnist", "cifar10"],
                  "Training data.")
flags.DEFINE_string("data_dir", None, "Directory with MNIST IDX or CIFAR-10 binary files.")
flags.DEFINE_enum("task", "binary", ["binary", "multiclass"], "binary (odd/even, vehicles/animals) or multiclass.")
flags.DEFINE_integer("n", 500, "Training points (balanced over classes for image sets).")
flags.DEFINE_integer("n_test", 1000, "Test points (0 = the whole test split for image sets).")
flags.DEFINE_integer("d", 784, "Input dimension of synthetic sets.")
flags.DEFINE_enum("selection", "first", ["first", "random"],
                  "Image selection: first (file order, as the reference) or random.")
flags.DEFINE_float("offset", 0.0, "Constant added to every input after mean subtraction.")
flags.DEFINE_list("width", [str(w) for w in _D.widths], "Hidden widths, e.g. 1000 or 1000,1000.")
flags.DEFINE_list("init_scales", ["1e-4"],
                  "Per-layer init std (N(0,1)*s); 'default' or missing = PyTorch's U(+-1/sqrt(fan_in)).")
flags.DEFINE_bool("first_bias", False, "First-layer bias (keeps the net homogeneous).")
flags.DEFINE_enum("loss", _D.loss, list(train.LOSSES), "Training loss.")
flags.DEFINE_string("optimizer", _D.optimizer,
                    "gd | normalized_gd | log_normalized_gd | relative_gd (lr = the relative step ||step||/||theta|| at loss >= 1/e, then divided by -log Loss) | sumo | an optax name (adam, sgd, ...).")
flags.DEFINE_float("lr", _D.lr, "Learning rate (for normalized_gd: the step is lr / loss).")
flags.DEFINE_float("lr_cap", _D.lr_cap, "normalized_gd: cap on the effective step lr / loss.")
flags.DEFINE_float("momentum", _D.momentum, "Momentum for gd / normalized_gd.")
flags.DEFINE_integer("steps", _D.steps, "Training steps.")
flags.DEFINE_float("target_loss", 0.0, "Stop once the training loss is at or below this (0 = never).")
flags.DEFINE_float("max_wall_s", 0.0, "Stop after this many seconds of training (0 = no limit).")
flags.DEFINE_integer("log_every", _D.log_every, "Metrics row and progress line every this many steps.")
flags.DEFINE_enum("dtype", _D.dtype, ["float32", "float64"], "Parameter and data dtype.")
flags.DEFINE_integer("seed", 0, "Seed for data and initialization.")
flags.DEFINE_float("kink_tol", _D.kink_tol, "Relative |w.x| below which a pair is at the ReLU kink.")
flags.DEFINE_bool("relaxed", _D.relaxed, "Also solve the relaxed KKT residual (kink neighbourhood) at each checkpoint.")

FLAGS = flags.FLAGS


def _scales(values):
  out = tuple(None if v.lower() in ("default", "none") else float(v) for v in values)
  return out or None


def config_from_flags() -> train.TrainConfig:
  data = data_lib.DataConfig(name=FLAGS.dataset, n=FLAGS.n, d=FLAGS.d, n_test=FLAGS.n_test,
                             data_dir=FLAGS.data_dir, task=FLAGS.task, selection=FLAGS.selection,
                             offset=FLAGS.offset, seed=FLAGS.seed)
  return train.TrainConfig(
      data=data, widths=tuple(int(w) for w in FLAGS.width), init_scales=_scales(FLAGS.init_scales),
      first_bias=FLAGS.first_bias, loss=FLAGS.loss, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
      lr_cap=FLAGS.lr_cap, momentum=FLAGS.momentum, steps=FLAGS.steps, target_loss=FLAGS.target_loss,
      max_wall_s=FLAGS.max_wall_s, log_every=FLAGS.log_every, dtype=FLAGS.dtype, seed=FLAGS.seed,
      kink_tol=FLAGS.kink_tol, relaxed=FLAGS.relaxed)
