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
from jaxrecon import stats


def membership_score(params, x_ND: jax.Array, margin) -> jax.Array:
  """|Phi(x)| / m for each row of x (label-free: only queries of the network)."""
  return jnp.abs(nets.apply(params, x_ND)) / margin


def decide(score, threshold: float = 0.9) -> jax.Array:
  """Member iff |Phi(x)| >= threshold * m."""
  return score >= threshold


def membership_report(score_members, score_nonmembers, threshold: float = 0.9) -> dict:
  """AUC, TPR at FPR 1% and 0.1%, and the decision at `threshold`, for scores |Phi(x)| / m_used.

  The variants differ only in m_used: the true margin (m known), |Phi(x_leak)| of one leaked training point,
  or a lower bound m_lo <= m (m only bounded: every member still reaches the threshold, fresh points are
  rejected while |Phi| < threshold * m_lo). The AUC does not depend on m_used; the decision does.
  """
  sm, sn = np.asarray(score_members, np.float64), np.asarray(score_nonmembers, np.float64)
  fpr, tpr = stats.roc(sm, sn)
  return {"auc": stats.auc(np.concatenate([sm, sn]), np.arange(sm.size + sn.size) < sm.size),
          "tpr_at_fpr_0.01": stats.tpr_at_fpr(fpr, tpr, 0.01),
          "tpr_at_fpr_0.001": stats.tpr_at_fpr(fpr, tpr, 0.001), "threshold": threshold,
          "tpr": float(np.mean(sm >= threshold)), "fpr": float(np.mean(sn >= threshold)),
          "members_within_10pct": float(np.mean(np.abs(sm - 1.0) <= 0.1)),
          "fresh_reaching_margin": float(np.mean(sn >= 0.9))}


MEMBERSHIP_DATASETS = ("parity_sphere", "two_gaussians")  # membership_data's distributions


def membership_data(key, name: str, n: int, d: int, sep: float):
  if name == "parity_sphere":
    return data_lib.parity_sphere(key, n, d, dtype=jnp.float64)
  if name == "two_gaussians":
    return data_lib.two_gaussians(key, n, d, sep=sep, dtype=jnp.float64)
  raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(MEMBERSHIP_DATASETS)}")


