"""Membership inference (2410.07632): in high dimension (d >> n^2, nearly orthogonal data) training points of a
2-layer net at a KKT point have |Phi(x)| = m and fresh points |Phi(x)| = o(m). Score |Phi(x)| / m; decide
"member" when it reaches a threshold c in (0, 1). The scores are jittable JAX; the ROC is numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import nets


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


def tpr_at_fpr_interval(score_members, score_nonmembers, max_fpr: float, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> tuple:
  """Percentile bootstrap interval of TPR at FPR <= max_fpr (members and non-members resampled separately)."""
  sm, sn = np.asarray(score_members, np.float64), np.asarray(score_nonmembers, np.float64)
  rng = np.random.default_rng(seed)
  vals = []
  for _ in range(n_boot):
    fpr, tpr = roc(sm[rng.integers(0, sm.size, sm.size)], sn[rng.integers(0, sn.size, sn.size)])
    vals.append(tpr_at_fpr(fpr, tpr, max_fpr))
  a = (1.0 - level) / 2.0
  return (float(np.quantile(vals, a)), float(np.quantile(vals, 1.0 - a)))


def membership_data(key, name: str, n: int, d: int, sep: float):
  if name == "parity_sphere":
    return data_lib.parity_sphere(key, n, d, dtype=jnp.float64)
  if name == "two_gaussians":
    return data_lib.two_gaussians(key, n, d, sep=sep, dtype=jnp.float64)
  raise ValueError(f"unknown dataset {name!r}; expected parity_sphere or two_gaussians")


