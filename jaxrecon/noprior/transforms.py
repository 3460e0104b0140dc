"""Merge and split transforms that build other KKT-consistent training sets ("No Prior, No Leakage").

On the cone where a point's activation pattern A(x) = {j : w_j . x > 0} is fixed, a 2-layer net is linear,
Phi(x) = g_A . x with g_A = sum_{j in A} v_j w_j, and grad_theta q(x) is linear in x. Hence:
- merge (Lemma 2): same-label, same-pattern points x1, x2 with multipliers l1, l2 are replaced by
  a x1 + (1 - a) x2, a = l1 / (l1 + l2), with multiplier l1 + l2;
- split (Lemma 3): x with multiplier l becomes x + a nu and x - b nu with multipliers l b / (a + b) and
  l a / (a + b); the stationarity sum is unchanged while both points keep x's pattern, the margin iff
  g_A . nu = 0.
Directions: orthogonal to the span of the data (exact at an exact KKT point), in the null space of the first
layer (exact for any depth and any training length when width < d: no pre-activation moves at all), or the
smallest right singular direction of the data matrix (Theorem 5), projected so that g_A . nu = 0.
All functions are pure and act on one point / direction; vmap them over points, directions and magnitudes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import kkt
from jaxrecon import nets


def activation_pattern(params, x_D: jax.Array) -> list:
  """The activation pattern of every hidden layer at x: a list of bool arrays (w_l,)."""
  zs = nets.preactivations(params, x_D[None, :])
  return [z[0] > 0 for z in zs[:-1]]


def same_pattern(params, x_D, z_D) -> jax.Array:
  """Whether two points have the same activation pattern in every hidden layer (the same linear cone)."""
  return jnp.all(jnp.stack([jnp.all(p == q) for p, q in zip(activation_pattern(params, x_D),
                                                             activation_pattern(params, z_D))]))


def linear_gradient(params, x_D: jax.Array) -> jax.Array:
  """g_A(x): the gradient of Phi in x on x's cone (Phi(z) = g_A . z on it, for bias-free nets)."""
  return jax.grad(lambda z: jnp.sum(nets.apply(params, z[None, :])))(x_D)


def merge(x1_D, x2_D, l1, l2):
  """(a x1 + (1 - a) x2, l1 + l2) with a = l1 / (l1 + l2)."""
  a = l1 / (l1 + l2)
  return a * x1_D + (1.0 - a) * x2_D, l1 + l2


def split(x_D, lam, nu_D, a, b):
  """((x + a nu, x - b nu), (lam b / (a + b), lam a / (a + b)))."""
  return (x_D + a * nu_D, x_D - b * nu_D), (lam * b / (a + b), lam * a / (a + b))


def max_safe_magnitude(params, x_D: jax.Array, nu_D: jax.Array) -> jax.Array:
  """The largest t >= 0 with x + s nu in x's first-layer pattern for all s in [0, t), in closed form.

  The pattern is A(x) = {j : z_j > 0}, z_j = w_j . x (+ b_j). An active neuron (z_j > 0) flips at
  s_j = -z_j / (w_j . nu) when w_j . nu < 0; an inactive one (z_j <= 0) at s_j = -z_j / (w_j . nu) when
  w_j . nu > 0, which is 0 for a pair exactly at the kink (z_j = 0 leaves the pattern at once). The answer is
  min_j s_j (inf when no neuron flips). One-sided: a symmetric split x +- t nu needs `max_safe_symmetric`.
  Exact for 2-layer nets; for deeper nets it bounds the first layer only.
  """
  z = nets.preactivations(params, x_D[None, :])[0][0]
  s = nets.preactivations(params, nu_D[None, :])[0][0] - (params[0]["b"] if "b" in params[0] else 0.0)
  flips = ((z > 0) & (s < 0)) | ((z <= 0) & (s > 0))
  t = jnp.where(flips, jnp.maximum(-z / jnp.where(s == 0, 1.0, s), 0.0), jnp.inf)
  return jnp.min(t)


def max_safe_symmetric(params, x_D: jax.Array, nu_D: jax.Array) -> jax.Array:
  """The largest t with BOTH x + s nu and x - s nu in x's pattern for s in [0, t): min(safe(nu), safe(-nu))."""
  return jnp.minimum(max_safe_magnitude(params, x_D, nu_D), max_safe_magnitude(params, x_D, -nu_D))


def _complement_direction(key: jax.Array, basis_DK: jax.Array) -> jax.Array:
  """A random unit vector orthogonal to the column span of `basis` (zero if the columns span R^d)."""
  u, s, _ = jnp.linalg.svd(basis_DK, full_matrices=True)
  tol = jnp.max(s) * max(basis_DK.shape) * jnp.finfo(basis_DK.dtype).eps
  sv = jnp.zeros((u.shape[1],), s.dtype).at[:s.shape[0]].set(s)
  comp = sv <= tol  # left singular vectors outside the span
  r = jax.random.normal(key, (basis_DK.shape[0],), basis_DK.dtype)
  nu = u @ jnp.where(comp, u.T @ r, 0.0)
  return nu / jnp.maximum(jnp.linalg.norm(nu), jnp.finfo(nu.dtype).tiny)


def orthogonal_direction(key: jax.Array, x_ND: jax.Array, extra_DK=None) -> jax.Array:
  """A unit vector orthogonal to every row of x (and to the columns of `extra`); zero if they span R^d."""
  basis = x_ND.T if extra_DK is None else jnp.concatenate([x_ND.T, extra_DK], axis=1)
  return _complement_direction(key, basis)


def first_layer_null_direction(key: jax.Array, params) -> jax.Array:
  """A unit nu with nu W_1 = 0 (exists when width_1 < d): no pre-activation of any layer moves."""
  return _complement_direction(key, params[0]["w"])


def svd_direction(params, x_ND: jax.Array, point_D: jax.Array) -> tuple:
  """(nu, sigma_min): the smallest right singular direction of the data matrix, projected off g_A(point).

  At an exact KKT point |w_j . u| <= |v_j| ||lambda|| sigma_min for the unprojected u (Theorem 5, derived).
  """
  _, s, vt = jnp.linalg.svd(x_ND, full_matrices=True)
  u = vt[-1]
  sigma = jnp.where(x_ND.shape[0] >= x_ND.shape[1], s[-1], 0.0)
  g = linear_gradient(params, point_D)
  nu = u - (u @ g) / jnp.maximum(g @ g, jnp.finfo(g.dtype).tiny) * g
  return nu / jnp.maximum(jnp.linalg.norm(nu), jnp.finfo(nu.dtype).tiny), sigma


def neuron_importance(params) -> jax.Array:
  """|outgoing weights| of each first-layer neuron: |v_j| for 2-layer nets, ||W_2[j, :]|| for deeper ones."""
  return jnp.linalg.norm(params[1]["w"], axis=1)


def weighted_direction(params, x_ND: jax.Array, point_D: jax.Array, kind: str = "flip") -> jax.Array:
  """The unit nu orthogonal to the data span and to g_A(point) that least moves the first layer, weighted.

  Minimizes sum_j c_j (w_j . nu)^2 over that subspace (the smallest eigenvector of the weighted first-layer
  Gram matrix restricted to it) with
  - kind='importance': c_j = |v_j|^2 (the pre-activation change weighted by what a flip of j costs, ~|v_j|);
  - kind='flip': c_j = |v_j|^2 / (w_j . point)^2, i.e. the squared inverse of the magnitude at which neuron j
    flips along nu, weighted by its cost: it keeps the important neurons near their kink still.
  Returns zeros if the data and g_A span R^d (then no direction keeps the margin and the span exactly).
  """
  g = linear_gradient(params, point_D)
  basis = jnp.concatenate([x_ND.T, g[:, None]], axis=1)
  u, s, _ = jnp.linalg.svd(basis, full_matrices=True)
  tol = jnp.max(s) * max(basis.shape) * jnp.finfo(basis.dtype).eps
  rank = jnp.sum(s > tol)
  comp = jnp.arange(u.shape[1]) >= rank  # columns of u outside the span
  w = params[0]["w"]  # (d, width)
  c = neuron_importance(params) ** 2
  if kind == "flip":
    z = point_D @ w
    c = c / jnp.maximum(z * z, jnp.finfo(z.dtype).tiny)
  elif kind != "importance":
    raise ValueError(f"unknown direction kind {kind!r}; expected 'flip' or 'importance'")
  c = c / jnp.max(c)
  wu = w.T @ u  # (width, d): pre-activation change per basis direction
  gram = wu.T @ (c[:, None] * wu)
  # keep only the admissible block; the span's coordinates get an eigenvalue above every admissible one
  big = jnp.trace(gram) + 1.0
  gram = gram * (comp[:, None] & comp[None, :]) + jnp.diag(jnp.where(comp, 0.0, big))
  _, vecs = jnp.linalg.eigh(gram)
  nu = u @ vecs[:, 0]
  ok = jnp.any(comp)
  return jnp.where(ok, nu / jnp.linalg.norm(nu), 0.0)


def split_stationarity_change(params, x_D, y, lam, nu_D, a, b):
  """sum_new lam' grad q - lam grad q(x) for one split x -> (x + a nu, x - b nu): the change of the weighted
  gradient (a params-shaped pytree; zero while both points keep x's pattern). One vector-Jacobian product."""
  (z1, z2), (l1, l2) = split(x_D, lam, nu_D, a, b)
  pts = jnp.stack([x_D, z1, z2])
  ys = jnp.stack([y, y, y])
  return kkt.weighted_gradient(params, pts, ys, jnp.stack([-lam, l1, l2]))


class Kept(NamedTuple):
  """What a transform kept: stationarity (the weighted gradient), margins and activation patterns."""
  weighted_gradient_change: jax.Array  # ||sum lam' grad q(new) - sum lam grad q(old)|| / ||theta||
  max_margin_change: jax.Array         # max |q(new point) - q(original point)| over the new points
  patterns_kept: jax.Array             # every new point has its origin's pattern


def check_split(params, x_ND, y_N, lam_N, i: int, nu_D, a, b) -> Kept:
  """Splits point i of (x, y, lam) along nu with magnitudes a, b and reports what was kept."""
  (z1, z2), (l1, l2) = split(x_ND[i], lam_N[i], nu_D, a, b)
  x_new = jnp.concatenate([x_ND.at[i].set(z1), z2[None, :]])
  y_new = jnp.concatenate([y_N, y_N[i:i + 1]])
  lam_new = jnp.concatenate([lam_N.at[i].set(l1), l2[None]])
  g_old = kkt.weighted_gradient(params, x_ND, y_N, lam_N)
  g_new = kkt.weighted_gradient(params, x_new, y_new, lam_new)
  diff = nets.param_norm(jax.tree_util.tree_map(lambda u, v: u - v, g_new, g_old))
  q_old = kkt.margins_of(params, x_ND[i:i + 1], y_N[i:i + 1])[0]
  q_new = kkt.margins_of(params, jnp.stack([z1, z2]), jnp.stack([y_N[i], y_N[i]]))
  kept = same_pattern(params, x_ND[i], z1) & same_pattern(params, x_ND[i], z2)
  return Kept(diff / nets.param_norm(params), jnp.max(jnp.abs(q_new - q_old)), kept)
