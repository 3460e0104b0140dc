"""The attack's flags: the fields of the attack job's ReconstructConfig (AttackConfig, SweepConfig and the
evaluation settings), declared once by config_flags.Binder, for scripts/attack.py, scripts/main.py and the
attack studies (whose own configs hold a ReconstructConfig under `prefix`)."""

from jaxrecon.commands import config_flags
from jaxrecon.attack import loss as attack_loss
from jaxrecon.experiments import attack as attack_job

_NONE = ("", "none", "auto", "default")


def _optional_int(value):
  return None if value is None or str(value).lower() in _NONE else int(value)


def _optional_bool(value):
  return None if value is None or str(value).lower() in _NONE else str(value).lower() in ("1", "true", "yes")


def _floats(values):
  return tuple(float(v) for v in values)


def _ints(values):
  return tuple(int(v) for v in values)


def binder_args(prefix: str = "", names=None) -> dict:
  """Binder keywords for a ReconstructConfig at `prefix` inside a larger config (names, choices, parsers)."""
  p = prefix
  return dict(
      names={p + "sweep.kind": "sweep", p + "sweep.lr_lambda": "sweep_lr_lambda", p + "sweep.shift": "init_shift",
             p + "attack.target": "attack_target", **(names or {})},
      choices={p + "attack.optimizer": attack_loss.OPTIMIZERS, p + "attack.prior": attack_loss.PRIORS,
               p + "attack.variant": attack_loss.VARIANTS, p + "attack.target": attack_loss.TARGETS,
               p + "attack.init": attack_loss.INITS,
               p + "attack.dtype": ("float32", "float64"),
               p + "sweep.kind": ("random", "grid")},
      parsers={p + "step": _optional_int, p + "half_res": _optional_bool, p + "sweep.lr_lambda": _floats,
               p + "prune_at": _ints, p + "attack.layer_weights": _floats},
      skip=(p + "attack.n_classes",),  # set from the attacked net
      help={p + "step": "Checkpoint step to attack (empty = the last).",
            p + "half_res": "NCC at half resolution: true | false | auto (= for colour images, as the reference)."})


def binder(default=attack_job.ReconstructConfig(), *, prefix: str = "", clash_prefix: str = "", skip=(),
           names=None) -> config_flags.Binder:
  """Flags for a config holding a ReconstructConfig at `prefix` ("" when `default` is one, else e.g.
  "reconstruct."); a name another binder already defined gets `clash_prefix` (scripts/main.py: attack_)."""
  args = binder_args(prefix, names)
  args["skip"] = (*args["skip"], *skip)
  return config_flags.Binder(default, clash_prefix=clash_prefix, **args)
