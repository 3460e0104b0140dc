"""Recovery measured the way the sphere experiment of "No Prior, No Leakage" needs it.

For a bias-free ReLU net the prior-free attack loss is invariant under (x_hat, lam) -> (c x_hat, lam / c):
Phi(c x) = c Phi(x) and grad_theta Phi(c x) = c grad_theta Phi(x), so a candidate that points along a training
point can sit at any distance from it. Distance alone then shows that symmetry, not a far KKT-consistent set.
Besides the authors' distances (mean and minimum distance to the training set, the mean distance of the 5
closest candidates) this module measures, per candidate:
- its best cosine and best NCC (cosine of the mean-centred vectors: blind to a constant added to every
  coordinate) with a training point AND with a held-out point of the same distribution (a set of the same
  size): a candidate that recovers a training point matches it better than any held-out point; one that is
  merely typical of the distribution matches both alike;
- its margin ratio |Phi(x_hat)| / q_min (q_min = min_i y_i Phi(x_i), the trained net's margin): 1 for a
  candidate on the margin; by homogeneity it grows like the candidate's scale;
- its norm relative to the data's RMS norm.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import losses
from jaxrecon import nets
from jaxrecon.attack import evaluate

BEST = 5


class Recovery(NamedTuple):
  """Per-candidate numbers of one candidate set (each (m,))."""
  dist: jax.Array          # L2 distance to the nearest training point
  cos_train: jax.Array     # best cosine with a training point
  cos_heldout: jax.Array   # best cosine with a held-out point
  ncc_train: jax.Array     # best NCC with a training point
  ncc_heldout: jax.Array   # best NCC with a held-out point
  margin_ratio: jax.Array  # |Phi(x_hat)| / q_min
  norm_ratio: jax.Array    # ||x_hat|| / RMS norm of the training points


def cosine_matrix(a_ND: jax.Array, b_MD: jax.Array) -> jax.Array:
  """(N, M) cosine of every pair of rows."""
  unit = lambda v: v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), jnp.finfo(v.dtype).tiny)
  return unit(a_ND) @ unit(b_MD).T


def train_margin(params: nets.Params, x_train: jax.Array, y_train: jax.Array) -> jax.Array:
  """q_min = min_i y_i Phi(x_i) (true ReLU)."""
  return jnp.min(losses.margins(nets.apply(params, x_train), y_train))


@jax.jit
def recovery(params: nets.Params, cands: jax.Array, x_train: jax.Array, y_train: jax.Array,
             x_heldout: jax.Array) -> Recovery:
  """The per-candidate numbers of `cands` (m, d) against the training set and a held-out set."""
  q_min = train_margin(params, x_train, y_train)
  rms = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(x_train), axis=1)))
  phi = nets.apply(params, cands)
  return Recovery(
      dist=evaluate.nearest_distances(cands, x_train),
      cos_train=jnp.max(cosine_matrix(cands, x_train), axis=1),
      cos_heldout=jnp.max(cosine_matrix(cands, x_heldout), axis=1),
      ncc_train=jnp.max(evaluate.ncc_matrix(cands, x_train), axis=1),
      ncc_heldout=jnp.max(evaluate.ncc_matrix(cands, x_heldout), axis=1),
      margin_ratio=jnp.abs(phi) / q_min,
      norm_ratio=jnp.linalg.norm(cands, axis=1) / rms)


def _top_mean(v: np.ndarray, k: int, largest: bool) -> float:
  v = np.sort(np.asarray(v, np.float64))
  return float(np.mean(v[-k:] if largest else v[:k]))


def summarize(rec: Recovery, data_radius: float, best: int = BEST) -> dict:
  """One configuration's row: the authors' distances (also in units of the data radius) and the
  scale-invariant recovery of its `best` candidates (by each measure's own ranking), with the held-out
  comparison beside each."""
  r = {k: np.asarray(v, np.float64) for k, v in rec._asdict().items()}
  k = min(best, r["dist"].size)
  by_ncc = np.argsort(-r["ncc_train"], kind="stable")[:k]
  return {
      "mean_dist": float(np.mean(r["dist"])), "min_dist": float(np.min(r["dist"])),
      "best5_dist": _top_mean(r["dist"], k, largest=False),
      "best5_dist_rel": _top_mean(r["dist"], k, largest=False) / data_radius,
      # the authors' logged numbers are SQUARED L2 (their l2_dist has no square root): the same three, squared
      "mean_sq_dist": float(np.mean(np.square(r["dist"]))), "min_sq_dist": float(np.min(r["dist"]) ** 2),
      "best5_sq_dist": _top_mean(np.square(r["dist"]), k, largest=False),
      "best5_cos_train": _top_mean(r["cos_train"], k, True), "best5_cos_heldout": _top_mean(r["cos_heldout"], k, True),
      "best5_ncc_train": _top_mean(r["ncc_train"], k, True), "best5_ncc_heldout": _top_mean(r["ncc_heldout"], k, True),
      "frac_ncc_closer_train": float(np.mean(r["ncc_train"] > r["ncc_heldout"])),
      "median_margin_ratio": float(np.median(r["margin_ratio"])),
      "best5_margin_ratio": float(np.median(r["margin_ratio"][by_ncc])),
      "median_norm_ratio": float(np.median(r["norm_ratio"])),
      "best5_norm_ratio": float(np.median(r["norm_ratio"][by_ncc])),
  }


def perp_weight_fraction(params: nets.Params, x_ND) -> float:
  """||P_perp W_1|| / ||theta||: the part of the first layer outside the span of the training points (Frobenius
  norms), relative to the whole parameter norm. At an exact KKT point it is 0 (every first-layer row lies in the
  data span); what gradient steps never remove of the initialization stays here and bounds the splits."""
  x = np.asarray(x_ND, np.float64)
  w = np.asarray(params[0]["w"], np.float64)  # (d, width)
  q, r = np.linalg.qr(x.T)  # (d, n) orthonormal basis of the span (rank-deficient columns give tiny r_ii)
  keep = np.abs(np.diag(r)) > np.abs(r).max() * max(x.shape) * np.finfo(np.float64).eps
  q = q[:, keep]
  perp = w - q @ (q.T @ w)
  return float(np.linalg.norm(perp) / np.asarray(nets.param_norm(params), np.float64))
