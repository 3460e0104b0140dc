"""Univariate reconstruction (2410.07632): in d = 1, Phi is piecewise linear with kinks at -b_j / w_j. The attack
outputs every solution of |Phi(x)| = m on each linear piece, and the endpoints of pieces lying flat at +-m; at
least a quarter of this set are training points when theta is an exact KKT point (THEORY.md section 4).
Trained networks carry many neurons with negligible |v_j w_j|: their kinks are dropped (`neuron_tol`, relative
to the largest |v_j w_j|) and their small contribution stays in the pieces' slopes and intercepts.

The candidate set has a data-dependent size, so the attack runs in numpy on the trained weights.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import nets
from jaxrecon.provable.shallow import _two_layer


class UnivariateResult(NamedTuple):
  candidates: np.ndarray   # sorted candidate points
  kinks: np.ndarray        # the kept kinks (sorted)
  n_pieces: int
  flat_pieces: int         # pieces lying flat at +-m (their finite endpoints are candidates)
  kept_neurons: int


def margin_from_leak(params, x_leak) -> float:
  """The margin estimated from one leaked training point (a support point: |Phi(x)| = m)."""
  return float(jnp.abs(nets.apply(params, jnp.atleast_2d(jnp.asarray(x_leak)))[0]))


def univariate_candidates(params, margin: float, *, neuron_tol: float = 1e-3, flat_tol: float = 1e-6,
                          level_tol: float = 1e-6, merge_tol: float = 1e-9) -> UnivariateResult:
  """Every x with |Phi(x)| = margin on the linear pieces between the kept kinks, plus flat-piece endpoints.

  neuron_tol: drop the kinks of neurons with |v_j w_j| <= neuron_tol * max_j |v_j w_j|.
  flat_tol: a piece is flat when |slope| <= flat_tol * max_j |v_j w_j|; it is a candidate piece when also
    ||intercept| - margin| <= level_tol * margin (then its finite endpoints are output).
  merge_tol: candidates closer than merge_tol * (1 + |x|) are merged (a root at a shared endpoint).
  """
  w, b, v = _two_layer(params)
  if w.shape[0] != 1:
    raise ValueError("univariate reconstruction needs d = 1")
  if not margin > 0:
    raise ValueError(f"margin must be > 0, got {margin}")
  w = w[0]
  strength = np.abs(v * w)
  scale = float(np.max(strength)) if strength.size else 0.0
  keep = (strength > neuron_tol * scale) & (w != 0)
  kinks = np.unique(-b[keep] / w[keep])
  edges = np.concatenate([[-np.inf], kinks, [np.inf]])
  cands = []
  flat = 0
  for lo, hi in zip(edges[:-1], edges[1:]):
    if np.isinf(lo) and np.isinf(hi):
      t = 0.0
    elif np.isinf(lo):
      t = hi - 1.0
    elif np.isinf(hi):
      t = lo + 1.0
    else:
      t = 0.5 * (lo + hi)
    active = (w * t + b) > 0
    slope = float(np.sum(v[active] * w[active]))
    icpt = float(np.sum(v[active] * b[active]))
    if abs(slope) <= flat_tol * scale:
      if abs(abs(icpt) - margin) <= level_tol * margin:
        flat += 1
        cands += [e for e in (lo, hi) if np.isfinite(e)]
      continue
    for level in (margin, -margin):
      r = (level - icpt) / slope
      if lo <= r <= hi:
        cands.append(r)
  cands = np.sort(np.asarray(cands, np.float64))
  if cands.size:
    keep_c = np.concatenate([[True], np.diff(cands) > merge_tol * (1 + np.abs(cands[1:]))])
    cands = cands[keep_c]
  return UnivariateResult(cands, kinks, len(edges) - 1, flat, int(keep.sum()))


def fraction_training(candidates, x_train, tol: float) -> tuple:
  """(fraction of candidates within tol of a training point, fraction of training points recovered)."""
  c = np.asarray(candidates, np.float64).reshape(-1)
  xt = np.asarray(x_train, np.float64).reshape(-1)
  if c.size == 0:
    return 0.0, 0.0
  d = np.abs(c[:, None] - xt[None, :])
  return float(np.mean(d.min(axis=1) <= tol)), float(np.mean(d.min(axis=0) <= tol))


PATTERNS = ("random", "alternating", "blocks")  # univariate_data's label patterns


def univariate_data(key: jax.Array, n: int, pattern: str, seeds: int, jitter: float = 0.3):
  """(x (S, n, 1) sorted in [-1, 1], y (S, n)) with both labels present.

  Points are an evenly spaced grid moved by uniform jitter of +-jitter times the spacing, so neighbours with
  opposite labels are never arbitrarily close (uniform draws make some sets nearly unfittable in any budget).
  """
  key_x, key_y = jax.random.split(key)
  gap = 2.0 / n
  grid = -1.0 + gap * (jnp.arange(n) + 0.5)
  x = grid[None, :] + jitter * gap * jax.random.uniform(key_x, (seeds, n), jnp.float64, -1.0, 1.0)
  idx = jnp.arange(n)
  if pattern == "alternating":
    y = jnp.tile(jnp.where(idx % 2 == 0, 1, -1), (seeds, 1))
  elif pattern == "blocks":
    y = jnp.tile(jnp.where(idx < n // 2, -1, 1), (seeds, 1))
  elif pattern == "random":
    y = jnp.where(jax.random.bernoulli(key_y, 0.5, (seeds, n)), 1, -1)
    y = y.at[:, 0].set(1).at[:, 1].set(-1)  # both classes present
  else:
    raise ValueError(f"unknown label pattern {pattern!r}")
  return x[..., None], y.astype(jnp.int32)


