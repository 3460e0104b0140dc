"""The attack's hyperparameter space: the swept values of a sweep (`Hyper`), drawn at random or on a grid, and
the sweep's configuration (`SweepConfig`) that builds them. `sweep` runs them."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import workdir as wd


class Hyper(NamedTuple):
  """Swept values, one entry per configuration (arrays of shape (C,)).

  radius: the sphere the candidates start on under the 'sphere' prior (unused by the other priors).
  lr_lambda: the multipliers' learning rate.
  shift: the candidates start at shift + (their random start) and the box prior is [shift - box, shift + box]
    in every coordinate (the init shift of the "No Prior, No Leakage" grid)."""
  init_scale: jax.Array
  lr_x: jax.Array
  lambda_min: jax.Array
  alpha: jax.Array
  seed: jax.Array
  radius: jax.Array
  lr_lambda: jax.Array
  shift: jax.Array

  @property
  def size(self) -> int:
    return int(np.shape(self.lr_x)[0])

  def take(self, idx) -> "Hyper":
    return Hyper(*(np.asarray(v)[idx] for v in self))

  def as_arrays(self, dtype) -> "Hyper":
    """Device arrays: seeds int32, the rest in the attack's dtype."""
    return Hyper(*(jnp.asarray(v, jnp.int32 if k == "seed" else dtype) for k, v in self._asdict().items()))

  def at_radii(self, radii: Sequence[float]) -> "Hyper":
    """Every configuration at every radius (radius varies slowest): one sweep for a radius study."""
    radii = np.asarray(radii, np.float64)
    reps = {k: np.tile(np.asarray(v), radii.size) for k, v in self._asdict().items()}
    return Hyper(**{**reps, "radius": np.repeat(radii, self.size)})

  def rows(self) -> list:
    return [{k: (int(v[i]) if k == "seed" else float(v[i])) for k, v in self._asdict().items()}
            for i in range(self.size)]


# The reference's random sweep: log-uniform x lr and init scale, uniform lambda_min and alpha.
REFERENCE_RANGES = {"init_scale": (1e-6, 0.1), "lr_x": (1e-5, 1.0), "lambda_min": (0.01, 0.5),
                    "alpha": (10.0, 500.0)}


LOG_SWEPT = ("init_scale", "lr_x")


def random_sweep(key: jax.Array, n: int, ranges: Optional[dict] = None, seeds: int = 1,
                 radius: float = 1.0, lr_lambda: float = 1e-4, shift: float = 0.0) -> Hyper:
  """n configurations drawn from `ranges` ({name: (lo, hi)}; log-uniform for init_scale and lr_x).

  A range with lo == hi is a fixed value. Seeds cycle over 0..seeds-1. Every configuration starts at
  `radius` (sphere prior; `Hyper.at_radii` gives several) and shares `lr_lambda` and `shift`.
  """
  ranges = {**REFERENCE_RANGES, **(ranges or {})}
  keys = dict(zip(REFERENCE_RANGES, jax.random.split(key, len(REFERENCE_RANGES))))
  vals = {}
  for name, (lo, hi) in ((k, ranges[k]) for k in REFERENCE_RANGES):
    if lo > hi or (name in LOG_SWEPT and lo <= 0):
      raise ValueError(f"bad range for {name}: ({lo}, {hi})")
    with jax.enable_x64(True):  # scoped: the same key gives the same sweep whatever the caller's x64 mode
      u = np.asarray(jax.random.uniform(keys[name], (n,), jnp.float64))
    if name in LOG_SWEPT:
      vals[name] = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    else:
      vals[name] = lo + u * (hi - lo)
  return Hyper(seed=np.arange(n) % max(seeds, 1), radius=np.full(n, float(radius)),
               lr_lambda=np.full(n, float(lr_lambda)), shift=np.full(n, float(shift)), **vals)


def grid_sweep(init_scale: Sequence[float], lr_x: Sequence[float], lambda_min: Sequence[float],
               alpha: Sequence[float], seeds: Sequence[int] = (0,), radius: Sequence[float] = (1.0,),
               lr_lambda: Sequence[float] = (1e-4,), shift: Sequence[float] = (0.0,)) -> Hyper:
  """The Cartesian product of the given values (radius varies slowest, then shift, lr_lambda, init_scale,
  lr_x, lambda_min, alpha; seed fastest)."""
  names = ("init_scale", "lr_x", "lambda_min", "alpha", "seed")
  prod = [dict(zip(names, rest), radius=r, shift=s, lr_lambda=ll) for r in radius for s in shift
          for ll in lr_lambda for rest in itertools.product(init_scale, lr_x, lambda_min, alpha, seeds)]
  if not prod:
    raise ValueError("empty grid")
  return Hyper(**{k: np.asarray([p[k] for p in prod], np.int32 if k == "seed" else np.float64)
                  for k in Hyper._fields})


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """Which configurations run: `configs` random draws (log-uniform for init_scale and lr_x, uniform for the
  others) or the Cartesian product of the listed values; each at every start radius of `radii`.

  Attributes:
    kind: random (configs draws from the ranges) | grid (the product of the values).
    configs: Random sweep: configurations (all run in one compiled sweep).
    init_scale: Candidate init std: lo,hi (random), one value (fixed), or the grid values.
    lr_x: Candidate learning rate: lo,hi (random) | one value | the grid values.
    lambda_min: Lower bound of the multipliers' penalty: lo,hi | one value | the grid values.
    alpha: Surrogate ReLU slope: lo,hi | one value | the grid values.
    seeds: Seeds per configuration (grid) / seeds cycled over (random).
    seed: Seed of the sweep and the candidates.
    radii: Sphere prior: start radii, in units of the attacked data's RMS norm (the job's unit); every
      configuration runs at each radius.
    lr_lambda: The multipliers' learning rates (grid values, or one value for a random sweep); empty = the
      attack's lr_lambda.
    shift: Init shifts (grid values, or one value): candidates start at shift + their random start and the
      box prior moves with them to [shift - box, shift + box].
  """
  kind: str = "random"
  configs: int = 16
  init_scale: tuple = REFERENCE_RANGES["init_scale"]
  lr_x: tuple = REFERENCE_RANGES["lr_x"]
  lambda_min: tuple = REFERENCE_RANGES["lambda_min"]
  alpha: tuple = REFERENCE_RANGES["alpha"]
  seeds: int = 1
  seed: int = 0
  radii: tuple = (1.0,)
  lr_lambda: tuple = ()
  shift: tuple = (0.0,)

  @staticmethod
  def from_dict(d: dict) -> "SweepConfig":
    return wd.config_from_dict(SweepConfig, d)

  def validate(self) -> None:
    """Raises ValueError naming the field of a sweep that cannot run."""
    if self.kind not in ("random", "grid"):
      raise ValueError(f"sweep kind must be 'random' or 'grid'; got {self.kind!r}")
    if self.kind == "random" and self.configs < 1:
      raise ValueError(f"configs must be >= 1; got {self.configs}")
    if not self.radii or min(self.radii) <= 0:
      raise ValueError(f"radii must be positive, got {self.radii}")
    for name in (*REFERENCE_RANGES, "lr_lambda", "shift", "radii"):
      bad = [v for v in tuple(getattr(self, name)) if not math.isfinite(float(v))]
      if bad:
        raise ValueError(f"{name}: every value must be a finite number; got {tuple(getattr(self, name))}")
    for name in REFERENCE_RANGES:
      v = tuple(getattr(self, name))
      if not v or (self.kind == "random" and len(v) > 2):
        raise ValueError(f"{name}: give lo,hi or one value for a random sweep (or the values of a grid); "
                         f"got {v}")
      if self.kind == "random" and (v[0] > v[-1] or (name in LOG_SWEPT and v[0] <= 0)):
        raise ValueError(f"bad range for {name}: {v}")
    for name in ("lr_lambda", "shift"):
      v = tuple(getattr(self, name))
      if self.kind == "random" and len(v) > 1:
        raise ValueError(f"{name}: one value for a random sweep (several make a grid); got {v}")
    if not self.shift or (self.lr_lambda and min(self.lr_lambda) < 0):
      raise ValueError(f"shift needs a value and lr_lambda must be >= 0; got {self.shift}, {self.lr_lambda}")

  def hyper(self, key: jax.Array, radius_unit: float = 1.0, lr_lambda: float = 1e-4) -> Hyper:
    """The swept values; start radii are radii x radius_unit; `lr_lambda` when the sweep names none (the
    attack's)."""
    self.validate()
    lrs = tuple(float(v) for v in self.lr_lambda) or (float(lr_lambda),)
    if self.kind == "random":
      ranges = {k: (float(getattr(self, k)[0]), float(getattr(self, k)[-1])) for k in REFERENCE_RANGES}
      base = random_sweep(key, self.configs, ranges, self.seeds, lr_lambda=lrs[0], shift=float(self.shift[0]))
    else:
      base = grid_sweep(*(tuple(getattr(self, k)) for k in REFERENCE_RANGES), tuple(range(max(self.seeds, 1))),
                        lr_lambda=lrs, shift=tuple(float(v) for v in self.shift))
    return base.at_radii([r * radius_unit for r in self.radii])
