"""Are reconstructions copies of training points, or just points of the same distribution?

For every candidate: its distance to the closest training point and to the closest held-out point of the same
distribution. A candidate that copies a training point is far closer to train than to held-out; one that is
merely typical of the distribution is about as close to both. Every statistic is a proportion with its 95%
Wilson interval, meant to be read beside the same statistic on a null (fresh points, no attack).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxrecon import stats
from jaxrecon.attack import evaluate

def statistics(d_tr, d_ho, ncc_tr, ncc_ho, quantile: float = 0.01) -> dict:
  """The study's statistics for one candidate set, each a proportion with its 95% interval.

  closer_l2 / closer_ncc: fraction of candidates closer to a training point than to a held-out one.
  closest_symmetric: the same among the `quantile` of candidates closest to EITHER set (selected by
  min(d_train, d_heldout), which treats both sets alike, so a candidate that is merely typical of the
  distribution sits on either side with the same odds). closest_to_train: among the `quantile` closest to the
  TRAINING set (selection-biased: the selection already favours train; kept only beside its null).
  """
  closer = d_tr < d_ho
  k = max(1, int(round(quantile * d_tr.size)))
  sym = np.argsort(np.minimum(d_tr, d_ho), kind="stable")[:k]
  tr_sel = np.argsort(d_tr, kind="stable")[:k]
  out = {}
  for name, sel in (("closer_l2", closer), ("closer_ncc", ncc_tr > ncc_ho), ("closest_symmetric", closer[sym]),
                    ("closest_to_train", closer[tr_sel])):
    out[name] = {"fraction": float(np.mean(sel)), "n": int(sel.size), "ci95": stats.wilson(int(np.sum(sel)), sel.size)}
  out["median_dist_train"] = float(np.median(d_tr))
  out["median_dist_heldout"] = float(np.median(d_ho))
  return out


def distances(p, tr, ho):
  """(L2 distance to the closest training point, to the closest held-out point, best NCC with a training
  point, with a held-out point) for every row of p."""
  return (np.asarray(evaluate.nearest_distances(p, tr)), np.asarray(evaluate.nearest_distances(p, ho)),
          np.asarray(jnp.max(evaluate.ncc_matrix(p, tr), axis=1)), np.asarray(jnp.max(evaluate.ncc_matrix(p, ho), axis=1)))


