"""The attack flags shared by scripts/attack.py and scripts/main.py, and their ReconstructConfig."""

from absl import flags

from jaxrecon import attack
from jaxrecon import reconstruct

_A = attack.AttackConfig()
# Flags that scripts/main.py also has for training get the prefix "attack_" there (define(prefix=...)).
_R = {k: [str(v) for v in r] for k, r in attack.REFERENCE_RANGES.items()}
P = ""


def define(prefix: str = "") -> None:
  """Defines the attack flags; `prefix` goes on the ones whose names training flags also use."""
  global P
  P = prefix
  flags.DEFINE_integer("configs", 16, "Random sweep: configurations (all run in one compiled sweep).")
  flags.DEFINE_enum("sweep", "random", ["random", "grid"], "random (draws from the ranges) | grid (product of the lists).")
  flags.DEFINE_list("init_scale", _R["init_scale"],
                    "Candidate init std: lo,hi (random, log-uniform), one value (fixed), or the grid values.")
  flags.DEFINE_list("lr_x", _R["lr_x"], "Candidate learning rate: lo,hi (log-uniform) | value | grid values.")
  flags.DEFINE_list("lambda_min", _R["lambda_min"], "lambda_min: lo,hi (uniform) | value | grid values.")
  flags.DEFINE_list("alpha", _R["alpha"], "Surrogate ReLU slope alpha: lo,hi (uniform) | value | grid values.")
  flags.DEFINE_integer("seeds", 1, "Seeds per configuration (grid) / seeds cycled over (random).")
  flags.DEFINE_integer(P + "steps", _A.steps, "Attack steps per configuration.")
  flags.DEFINE_integer("m", 0, "Candidates per configuration (0 = twice the training set).")
  flags.DEFINE_enum(P + "optimizer", _A.optimizer, ["sgd", "adam", "sumo"], "sgd (momentum 0.9, the reference) | adam | sumo.")
  flags.DEFINE_float("lr_lambda", _A.lr_lambda, "Learning rate of the multipliers.")
  flags.DEFINE_enum("prior", _A.prior, ["box", "none", "sphere"], "box | none | sphere (init on a sphere, no penalty).")
  flags.DEFINE_float("sphere_radius", _A.sphere_radius, "Radius of the init sphere for --prior=sphere.")
  flags.DEFINE_enum("variant", "auto", ["auto", "binary", "multiclass", "signed"],
                  "auto | binary | multiclass | signed (nets trained with weight decay).")
  flags.DEFINE_bool("match_init", False, "Match theta - theta_init (the attacker knows the initialization).")
  flags.DEFINE_enum(P + "dtype", _A.dtype, ["float32", "float64"], "Attack dtype.")
  flags.DEFINE_integer("chunk", 0, "Configurations per compiled call (0 = all at once).")
  flags.DEFINE_integer(P + "log_every", _A.log_every, "Metrics row and progress line every this many steps.")
  flags.DEFINE_integer("pool_top", 0, "Pool the candidates of the best this-many configurations (0 = all).")
  flags.DEFINE_float("theta_scale", 1.0, "Multiply the attacked weights by this before the attack.")
  flags.DEFINE_float("theta_norm", 0.0, "If > 0, rescale the attacked weights to this norm instead.")
  flags.DEFINE_integer(P + "seed", 0, "Seed of the sweep and the candidates.")

FLAGS = flags.FLAGS


def _range(name):
  vals = [float(v) for v in FLAGS[name].value]
  if len(vals) == 1:
    return (vals[0], vals[0])
  if len(vals) != 2:
    raise flags.ValidationError(f"--{name}: give lo,hi or one value for a random sweep")
  return tuple(vals)


def config_from_flags(step=None) -> reconstruct.ReconstructConfig:
  names = list(attack.REFERENCE_RANGES)
  if FLAGS.sweep == "grid":
    sweep = reconstruct.SweepConfig(kind="grid", grid={k: [float(v) for v in FLAGS[k].value] for k in names},
                                    seeds=FLAGS.seeds, seed=FLAGS[P + "seed"].value)
  else:
    sweep = reconstruct.SweepConfig(configs=FLAGS.configs, kind=FLAGS.sweep,
                                    ranges={k: _range(k) for k in names}, seeds=FLAGS.seeds,
                                    seed=FLAGS[P + "seed"].value)
  variant = "binary" if FLAGS.variant == "auto" else FLAGS.variant
  acfg = attack.AttackConfig(
      m=FLAGS.m, steps=FLAGS[P + "steps"].value, optimizer=FLAGS[P + "optimizer"].value, lr_lambda=FLAGS.lr_lambda,
      prior=FLAGS.prior, sphere_radius=FLAGS.sphere_radius, variant=variant, match_init=FLAGS.match_init,
      dtype=FLAGS[P + "dtype"].value, chunk=FLAGS.chunk, log_every=FLAGS[P + "log_every"].value)
  return reconstruct.ReconstructConfig(attack=acfg, sweep=sweep, step=step, theta_scale=FLAGS.theta_scale,
                                       theta_norm=FLAGS.theta_norm,
                                       pool_top=FLAGS.pool_top)
