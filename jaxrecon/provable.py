"""Provable privacy attacks on 2-layer ReLU nets at KKT points (2410.07632).

Model: Phi(x) = sum_j v_j relu(w_j . x + b_j) (first-layer bias, no output bias), params as in `nets`:
({'w': (d, k), 'b': (k,)}, {'w': (k, 1)}). At a KKT point of the max-margin problem with margin
m = min_i y_i Phi(x_i), support points sit exactly at |Phi(x_i)| = m.

Univariate reconstruction (d = 1): Phi is piecewise linear with kinks at -b_j / w_j. The attack outputs every
solution of |Phi(x)| = m on each linear piece, and the endpoints of pieces lying flat at +-m; at least a
quarter of this set are training points when theta is an exact KKT point (THEORY.md section 4). Trained
networks carry many neurons with negligible |v_j w_j|: their kinks are dropped (`neuron_tol`, relative to the
largest |v_j w_j|) and their small contribution stays in the pieces' slopes and intercepts.

Membership inference (d >> n^2, nearly orthogonal data): training points have |Phi(x)| = m, fresh points
|Phi(x)| = o(m). Score |Phi(x)| / m; decide "member" when it reaches a threshold c in (0, 1).

The candidate set has a data-dependent size, so the univariate attack runs in numpy on the trained weights;
the membership scores are jittable JAX.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import train


def _two_layer(params):
  if len(params) != 2 or "b" not in params[0]:
    raise ValueError("the provable attacks need a 2-layer net with a first-layer bias (first_bias=True)")
  w = np.asarray(params[0]["w"], np.float64)  # (d, k)
  b = np.asarray(params[0]["b"], np.float64)  # (k,)
  v = np.asarray(params[1]["w"], np.float64)[:, 0]  # (k,)
  return w, b, v


# ---------------------------------------------------------------------------------------------------------
# Training many small nets at once


def fit_many(key: jax.Array, x_SND: jax.Array, y_SN: jax.Array, config: train.TrainConfig,
             warmup: Optional[train.TrainConfig] = None):
  """Trains one 2-layer net (first-layer bias) per leading index of x and y, all in one compiled call.

  Returns (params stacked over S, margins q (S, N), log loss (S,)). Uses config's widths, init_scales, loss,
  optimizer, lr and steps; one subkey per set. `warmup` (optimizer, lr, steps) runs first, e.g. Adam to fit
  data that plain or loss-normalized GD from a small init fits slowly; `config` then takes over.
  """
  cfg = nets.MLPConfig(d_in=x_SND.shape[-1], widths=tuple(config.widths), n_out=1,
                       init_scales=config.init_scales, first_bias=True)
  phases = [c for c in (warmup, config) if c is not None and c.steps > 0]
  opts = [train.make_optimizer(c) for c in phases]
  steps = [train.make_train_step(c, o, norm) for c, (o, norm) in zip(phases, opts)]

  def one(k, x, y):
    params = nets.init(k, cfg, x.dtype)
    for c, (opt, _), step in zip(phases, opts, steps):
      state = train.TrainState(params, opt.init(params))
      state, _ = jax.lax.scan(lambda s, _, step=step: step(s, x, y), state, None, length=c.steps)
      params = state.params
    q = kkt.margins_of(params, x, y)
    return params, q, train.log_loss_fn(params, x, y, config.loss)

  keys = jax.random.split(key, x_SND.shape[0])
  return jax.jit(jax.vmap(one))(keys, x_SND, y_SN)


def init_many(key: jax.Array, d: int, n_sets: int, config: train.TrainConfig, dtype=None):
  """The initial parameters `fit_many` starts from (same subkeys), stacked over sets (dtype: config.dtype)."""
  dtype = jnp.dtype(dtype or config.dtype)
  cfg = nets.MLPConfig(d_in=d, widths=tuple(config.widths), n_out=1, init_scales=config.init_scales,
                       first_bias=True)
  keys = jax.random.split(key, n_sets)
  return jax.vmap(lambda k: nets.init(k, cfg, dtype))(keys)


# ---------------------------------------------------------------------------------------------------------
# KKT facts the theory uses


def balancedness(params) -> np.ndarray:
  """Per neuron (v_j^2 - ||w_j||^2 - b_j^2) / (v_j^2 + ||w_j||^2 + b_j^2): 0 at a KKT point of (P)
  (and conserved by gradient flow from a balanced init), up to GD's discretization error."""
  w, b, v = _two_layer(params)
  in_sq = np.sum(w ** 2, axis=0) + b ** 2
  return (v ** 2 - in_sq) / np.maximum(v ** 2 + in_sq, np.finfo(np.float64).tiny)


def kink_identity_residual(params, x, y, lam) -> np.ndarray:
  """Per neuron |sum_{i active} lam_i y_i (1 + kink_j x_i)| / sum_{i active} lam_i |1 + kink_j x_i| (d = 1).

  Stationarity in w_j and b_j: w_j = v_j sum_{i active} lam_i y_i x_i and b_j = v_j sum_{i active} lam_i y_i;
  the kink kink_j = -b_j / w_j satisfies w_j kink_j + b_j = 0, hence sum_{i active} lam_i y_i (1 + kink_j x_i)
  = 0. (THEORY.md states sum lam_i y_i (x_i - kink_j) = 0; that sum is in fact (w_j^2 + b_j^2) / (v_j w_j),
  i.e. v_j / w_j when balanced -- see `kink_sum`, and the tests.) Neurons active on no point read 0.
  """
  w, b, v = _two_layer(params)
  if w.shape[0] != 1:
    raise ValueError("the kink identity is for univariate data (d = 1)")
  x = np.asarray(x, np.float64).reshape(-1)
  y = np.asarray(y, np.float64)
  lam = np.asarray(lam, np.float64)
  w = w[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    kink = np.where(w != 0, -b / w, 0.0)
  active = (np.outer(x, w) + b[None, :]) > 0  # (n, k)
  terms = (lam * y)[:, None] * active * (1.0 + np.outer(x, kink))
  num = np.abs(np.sum(terms, axis=0))
  den = np.sum(np.abs(terms), axis=0)
  return np.where(den > 0, num / np.maximum(den, np.finfo(np.float64).tiny), 0.0)


def kink_sum(params, x, y, lam) -> np.ndarray:
  """Per neuron sum_{i active} lam_i y_i (x_i - kink_j), which a KKT point makes (w_j^2 + b_j^2) / (v_j w_j)."""
  w, b, v = _two_layer(params)
  x = np.asarray(x, np.float64).reshape(-1)
  w = w[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    kink = np.where(w != 0, -b / w, 0.0)
  active = (np.outer(x, w) + b[None, :]) > 0
  return np.sum((np.asarray(lam) * np.asarray(y, np.float64))[:, None] * active
                * (x[:, None] - kink[None, :]), axis=0)


# ---------------------------------------------------------------------------------------------------------
# Univariate reconstruction


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


# ---------------------------------------------------------------------------------------------------------
# Membership inference


def membership_score(params, x_ND: jax.Array, margin) -> jax.Array:
  """|Phi(x)| / m for each row of x (label-free: only queries of the network)."""
  return jnp.abs(nets.apply(params, x_ND)) / margin


def decide(score, threshold: float = 0.9) -> jax.Array:
  """Member iff |Phi(x)| >= threshold * m."""
  return score >= threshold


def roc(score_members, score_nonmembers) -> tuple:
  """(fpr, tpr) over all thresholds (descending), from (0, 0) to (1, 1)."""
  s = np.concatenate([np.asarray(score_members, np.float64), np.asarray(score_nonmembers, np.float64)])
  lab = np.concatenate([np.ones(np.size(score_members)), np.zeros(np.size(score_nonmembers))])
  order = np.argsort(-s, kind="stable")
  s, lab = s[order], lab[order]
  distinct = np.concatenate([np.flatnonzero(np.diff(s) != 0), [s.size - 1]])
  tp = np.cumsum(lab)[distinct]
  fp = np.cumsum(1 - lab)[distinct]
  tpr = np.concatenate([[0.0], tp / max(lab.sum(), 1)])
  fpr = np.concatenate([[0.0], fp / max((1 - lab).sum(), 1)])
  return fpr, tpr


def auc_from_roc(fpr, tpr) -> float:
  return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def tpr_at_fpr(fpr, tpr, max_fpr: float) -> float:
  """The largest TPR whose FPR is at most max_fpr."""
  ok = np.asarray(fpr) <= max_fpr
  return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def membership_report(score_members, score_nonmembers, threshold: float = 0.9) -> dict:
  """AUC, TPR at FPR 1% and 0.1%, and the decision at `threshold`, for scores |Phi(x)| / m_used.

  The variants differ only in m_used: the true margin (m known), |Phi(x_leak)| of one leaked training point,
  or a lower bound m_lo <= m (m only bounded: every member still reaches the threshold, fresh points are
  rejected while |Phi| < threshold * m_lo). The AUC does not depend on m_used; the decision does.
  """
  sm, sn = np.asarray(score_members, np.float64), np.asarray(score_nonmembers, np.float64)
  fpr, tpr = roc(sm, sn)
  return {"auc": auc_from_roc(fpr, tpr), "tpr_at_fpr_0.01": tpr_at_fpr(fpr, tpr, 0.01),
          "tpr_at_fpr_0.001": tpr_at_fpr(fpr, tpr, 0.001), "threshold": threshold,
          "tpr": float(np.mean(sm >= threshold)), "fpr": float(np.mean(sn >= threshold)),
          "members_within_10pct": float(np.mean(np.abs(sm - 1.0) <= 0.1)),
          "fresh_reaching_margin": float(np.mean(sn >= 0.9))}
