"""How far a split reaches: KKT-consistent sets far from the training set, built by splitting support points.

Exact splits (first layer narrower than d): every direction nu with nu W_1 = 0 leaves all pre-activations
unchanged, so splitting a point x (multiplier l) into x + a nu, x - a nu (multipliers l/2, l/2) keeps the weighted
gradient, every margin and every activation pattern exactly, whatever a (`exact_rows`: all distances in one
vmapped, compiled call).

Approximate splits (any width; the paper's width 1000 > d): one support point split symmetrically along a unit
direction orthogonal to the data span and to g_A (so the margin and the stationarity sum are exact until a
neuron flips). For each direction kind (random in that subspace, 'importance'- and 'flip'-weighted, see
`transforms.weighted_direction`, and 'svd': Theorem 5's smallest singular direction of the data matrix, which
for n < d lies in the data's null space and for n >= d is the direction the data are thinnest in) and each of the largest-multiplier points, the magnitude is scanned on a log
grid and eps_rel recorded with the transported multipliers (`approx_rows`; the new set's best multipliers can
only do better, and the best split is re-checked with them).

The multipliers live at the normalized scale (`kkt.normalize`); `report` is a jitted `kkt.kkt_report`.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import stationarity_gap
from jaxrecon.noprior import transforms

# The registry of split direction kinds: name -> (key, params_n, x (N, D), point (D,)) -> a unit direction (D,).
# One entry adds a kind to `directions`, the split study's `--directions` and its figure.
DIRECTION_KINDS = {
    # orthogonal to the data span and to g_A(point) (Theorem 4's construction)
    "orthogonal": lambda key, p, x, point: transforms.orthogonal_direction(
        key, x, transforms.linear_gradient(p, point)[:, None]),
    "importance": lambda key, p, x, point: transforms.weighted_direction(p, x, point, "importance"),
    "flip": lambda key, p, x, point: transforms.weighted_direction(p, x, point, "flip"),
    # Theorem 5: the data's smallest singular direction, off g_A(point)
    "svd": lambda key, p, x, point: transforms.svd_direction(p, x, point)[0],
}
DIRECTIONS = tuple(DIRECTION_KINDS)  # the split study's default: every kind registered here
DirectionKind = Literal["orthogonal", "importance", "flip", "svd"]


def split_many(key, params, x, y, lam, idx, factor_radius):
  """Splits the points idx, each along its own first-layer null direction, at magnitude factor_radius."""
  keys = jax.random.split(key, idx.shape[0])
  nus = jax.vmap(lambda k: transforms.first_layer_null_direction(k, params))(keys)
  a = factor_radius
  z1 = x[idx] + a * nus
  z2 = x[idx] - a * nus
  x_new = jnp.concatenate([x.at[idx].set(z1), z2])
  y_new = jnp.concatenate([y, y[idx]])
  lam_new = jnp.concatenate([lam.at[idx].set(lam[idx] / 2), lam[idx] / 2])
  return x_new, y_new, lam_new


@jax.jit
def _split_sets(key, params, x, y, lam, idx, radii):
  """split_many at each magnitude of radii (F,): stacked sets (F, ...)."""
  return jax.vmap(lambda r: split_many(key, params, x, y, lam, idx, r))(radii)


def _set_terms(params_n, xs, ys, ls, alpha):
  """(the attack's stationarity term at a set with its own multipliers, eps_rel with them transported)."""
  stat = stationarity_gap(params_n, params_n, xs, ls, ys.astype(xs.dtype), alpha, mean_scaled=False)
  eps = nets.param_norm(kkt.stationarity_residual(params_n, xs, ys, ls)) / nets.param_norm(params_n)
  return stat, eps


_set_terms_one = jax.jit(_set_terms, static_argnames=("alpha",))


@functools.partial(jax.jit, static_argnames=("alpha",))
def _set_terms_many(params_n, xs, ys, ls, alpha):
  return jax.vmap(lambda a, b, c: _set_terms(params_n, a, b, c, alpha))(xs, ys, ls)


def exact_rows(key, params_n, x, y, lam, radius, report, *, factors, n_split: int, alpha: float):
  """Exact splits of the n_split largest-multiplier points at distances factor x radius: (a row per factor,
  the true set's attack stationarity / ||theta||^2). alpha: surrogate slope of the attack's stationarity term
  (large = the true ReLU). Compiled once per shape (module-level programs), whatever the checkpoint."""
  idx = jnp.argsort(-lam)[:n_split]
  sets = _split_sets(key, params_n, x, y, lam, idx, jnp.asarray(factors, x.dtype) * radius)
  # one set at a time: the report forms per-example gradients (N x params), too big to batch over factors
  reps = [report(params_n, sets[0][i], sets[1][i]) for i in range(len(factors))]
  stat, eps_t = _set_terms_many(params_n, *sets, alpha=alpha)
  stat_true, eps_t_true = (float(v) for v in _set_terms_one(params_n, x, y, lam, alpha=alpha))
  theta_sq = float(optax.tree.norm(params_n, squared=True))
  rows = []
  for i, f in enumerate(factors):
    d_set = float(jnp.max(evaluate.nearest_distances(sets[0][i], x)))
    rows.append({"part": "exact", "factor": f, "distance": d_set, "distance_over_radius": d_set / radius,
                 "eps_rel": float(reps[i].eps_rel), "delta": float(reps[i].delta),
                 "eps_rel_transported": float(eps_t[i]), "true_eps_rel_transported": eps_t_true,
                 "attack_stat_rel": float(stat[i]) / theta_sq})
  return rows, stat_true / theta_sq


def directions(key, params_n, x, point, kinds):
  """(len(kinds), D): one direction per kind of `DIRECTION_KINDS`, each with the same key."""
  unknown = [k for k in kinds if k not in DIRECTION_KINDS]
  if unknown:
    raise ValueError(f"unknown direction kind {unknown[0]!r}; expected one of {', '.join(DIRECTION_KINDS)}")
  return jnp.stack([DIRECTION_KINDS[kind](key, params_n, x, point) for kind in kinds])


class Curves(NamedTuple):
  """Symmetric splits x_i -> x_i +- t nu of the chosen points along each direction kind, at every magnitude t."""
  eps: jax.Array    # (points, kinds, magnitudes) eps_rel with the transported multipliers
  delta: jax.Array  # (points, kinds, magnitudes) delta of the split set: max_j lam_j (q_j - 1), new points included
  q_min: jax.Array  # (points, kinds, magnitudes) smaller margin of the two new points (feasible iff >= 1)
  safe: jax.Array   # (points, kinds) closed-form pattern-safe magnitude
  nus: jax.Array    # (points, kinds, d) the directions
  eps0: jax.Array   # () the true set's eps_rel with its multipliers
  delta0: jax.Array  # () the true set's delta


@functools.partial(jax.jit, static_argnames=("kinds",))
def approx_curves(key, params_n, x, y, lam, idx, ts, kinds) -> Curves:
  """eps_rel (transported multipliers), delta and the new points' margin for symmetric splits of the points idx
  along each direction kind at every magnitude in ts (Lemmas 6-7: a split of an (eps, delta)-KKT set is an
  (eps', delta')-KKT set; both count), plus the closed-form pattern-safe magnitudes and the directions."""
  theta_n = nets.param_norm(params_n)
  r0 = kkt.stationarity_residual(params_n, x, y, lam)
  dl = lam * (kkt.margins_of(params_n, x, y) - 1.0)

  def one_point(i):
    nus = directions(key, params_n, x, x[i], kinds)
    safe = jax.vmap(lambda nu: transforms.max_safe_symmetric(params_n, x[i], nu))(nus)  # x +- t nu
    yi = y[i].astype(x.dtype)
    rest = jnp.max(jnp.where(jnp.arange(x.shape[0]) == i, -jnp.inf, dl))  # delta of the untouched points

    def at(nu, t):
      change = transforms.split_stationarity_change(params_n, x[i], yi, lam[i], nu, t, t)
      eps = nets.param_norm(jax.tree_util.tree_map(lambda r, c: r - c, r0, change)) / theta_n
      q = kkt.margins_of(params_n, jnp.stack([x[i] + t * nu, x[i] - t * nu]), jnp.stack([y[i], y[i]]))
      return eps, jnp.maximum(rest, jnp.max(0.5 * lam[i] * (q - 1.0))), jnp.min(q)
    eps, delta, qmin = jax.vmap(lambda nu: jax.lax.map(lambda t: at(nu, t), ts))(nus)
    return eps, delta, qmin, safe, nus
  eps, delta, qmin, safe, nus = jax.lax.map(one_point, idx)
  return Curves(eps, delta, qmin, safe, nus, nets.param_norm(r0) / theta_n, jnp.max(dl))


def largest_within(curve, ts, limit):
  """The largest magnitude t in ts such that curve <= limit on every grid point up to t (0 if none)."""
  ok = np.cumprod(np.asarray(curve) <= limit).astype(bool)
  return float(ts[ok][-1]) if ok.any() else 0.0


def approx_rows(key, params_n, x, y, lam, radius, base_eps, report, *, kinds, n_points: int, grid, tol: float):
  """Approximate splits of the n_points largest-multiplier points along each direction kind, magnitudes on
  the log grid (lo, hi, count) of log10(magnitude / radius): (a row per kind with its best point's curve, the
  base residual, the grid / radius, the best split re-checked with its own best multipliers or None)."""
  lo, hi, count = grid
  ts = jnp.asarray(np.logspace(lo, hi, int(count)) * radius, x.dtype)
  idx = jnp.argsort(-lam)[:n_points]
  c = approx_curves(key, params_n, x, y, lam, idx, ts, tuple(kinds))
  curves, safe, nus, eps0 = np.asarray(c.eps), np.asarray(c.safe), c.nus, c.eps0
  ts_np = np.asarray(ts)
  limit = (1.0 + tol) * float(eps0)
  # Theorems 8-9: the attacker who knows delta (and feasibility) admits only splits that keep both
  d_limit = float(c.delta0) + tol * max(abs(float(c.delta0)), 1e-12)
  kept_delta = (np.asarray(c.delta) <= d_limit) & (np.asarray(c.q_min) >= 1.0 - tol)
  rows, best = [], None
  for k, kind in enumerate(kinds):
    reach = [largest_within(curves[p, k], ts_np, limit) for p in range(len(idx))]
    reach_d = [largest_within(np.where(kept_delta[p, k], curves[p, k], np.inf), ts_np, limit)
               for p in range(len(idx))]
    p = int(np.argmax(reach))
    row = {"part": "approx", "direction": kind, "point": int(idx[p]), "lam": float(lam[idx[p]]),
           "safe_over_radius": float(min(safe[p, k], ts_np[-1])) / radius,
           "within_tol_over_radius": reach[p] / radius,
           "within_tol_delta_over_radius": max(reach_d) / radius,
           "eps_rel_curve": curves[p, k].tolist()}
    rows.append(row)
    if best is None or reach[p] > best[0]:
      best = (reach[p], p, k)
  # re-check the best split with the new set's own best multipliers
  reach, p, k = best
  check = None
  if reach > 0:
    i = int(idx[p])
    (z1, z2), _ = transforms.split(x[i], lam[i], nus[p, k], reach, reach)
    xs = jnp.concatenate([x.at[i].set(z1), z2[None]])
    ys = jnp.concatenate([y, y[i:i + 1]])
    rep = report(params_n, xs, ys)
    check = {"direction": kinds[k], "distance_over_radius": reach / radius,
             "eps_rel_best_multipliers": float(rep.eps_rel), "delta": float(rep.delta),
             "true_eps_rel": float(base_eps)}
  return rows, float(eps0), ts_np / radius, check


