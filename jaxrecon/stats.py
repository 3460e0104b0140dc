"""The statistics every report uses: intervals over the unit that varies, exact binomial intervals, tests.

An interval is only as good as its unit: a rate over candidates of one run says nothing about another run.
`bootstrap_ci` resamples whatever units it is given (configurations, seeds, training sets) and callers name
the unit beside the interval. `clopper_pearson` is the exact binomial interval for k successes in n
independent trials; `wilson` the score interval; `permutation_test` compares two groups of units. `auc`, `roc`,
`tpr_at_fpr` and `tpr_at_fpr_interval` are the one ROC toolkit (membership inference, the attack's rankings).
"""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import numpy as np


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple:
  """Percentile bootstrap interval of the mean of `values`, one value per unit (NaNs dropped).

  Args:
    values: one number per independent unit (configuration, seed, training set).
    n_boot: bootstrap resamples.
    seed: the resampling's seed (the interval is a deterministic function of it).
    level: coverage, e.g. 0.95.
  Returns:
    (low, high); (nan, nan) for no finite value, (v, v) for a single unit.
  """
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  if v.size == 0:
    return (float("nan"), float("nan"))
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
  a = (1.0 - level) / 2.0
  return (float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a)))


def wilson(k: int, n: int, z: float = 1.96) -> tuple:
  """Wilson score interval of a binomial proportion k / n (z = 1.96: 95%); (nan, nan) for n = 0."""
  if n == 0:
    return (float("nan"), float("nan"))
  p = k / n
  den = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / den
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
  return (max(0.0, centre - half), min(1.0, centre + half))


def _beta_quantile(q: float, a: float, b: float) -> float:
  """Quantile of Beta(a, b) by bisection on the regularized incomplete beta (continued fraction)."""
  lo, hi = 0.0, 1.0
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    if _betainc(a, b, mid) < q:
      lo = mid
    else:
      hi = mid
  return 0.5 * (lo + hi)


def _betainc(a: float, b: float, x: float) -> float:
  """Regularized incomplete beta I_x(a, b) (Numerical Recipes' continued fraction, Lentz's method)."""
  if x <= 0.0:
    return 0.0
  if x >= 1.0:
    return 1.0
  ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
  if x > (a + 1.0) / (a + b + 2.0):
    return 1.0 - _betainc(b, a, 1.0 - x)
  tiny = 1e-300
  c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
  d = 1.0 / (d if abs(d) > tiny else tiny)
  f = d
  for m in range(1, 500):
    for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
      d = 1.0 + num * d
      d = 1.0 / (d if abs(d) > tiny else tiny)
      c = 1.0 + num / c
      c = c if abs(c) > tiny else tiny
      f *= c * d
    if abs(c * d - 1.0) < 1e-15:
      break
  return math.exp(ln_front) * f / a


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple:
  """Exact (Clopper-Pearson) interval of a binomial proportion: k successes in n independent trials.

  Returns:
    (low, high), with low = 0 at k = 0 and high = 1 at k = n; (nan, nan) for n = 0.
  """
  if n == 0:
    return (float("nan"), float("nan"))
  a = (1.0 - level) / 2.0
  lo = 0.0 if k == 0 else _beta_quantile(a, k, n - k + 1)
  hi = 1.0 if k == n else _beta_quantile(1.0 - a, k + 1, n - k)
  return (lo, hi)


def t_quantile(df: int, level: float = 0.95) -> float:
  """The two-sided Student t quantile: P(|T| <= t) = level for T with df degrees of freedom (exact, from the
  regularized incomplete beta: P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2))."""
  x = _beta_quantile(1.0 - level, df / 2.0, 0.5)
  return math.sqrt(df * (1.0 - x) / x)


def t_interval(values, level: float = 0.95) -> tuple:
  """(mean, half-width of the Student t interval) of a few values (seeds); half-width nan for one value."""
  v = np.asarray(values, np.float64)
  if v.size < 2:
    return float(v.mean()), float("nan")
  return float(v.mean()), float(t_quantile(v.size - 1, level) * v.std(ddof=1) / math.sqrt(v.size))


def permutation_test(a: Sequence[float], b: Sequence[float], n_perm: int = 10000, seed: int = 0) -> float:
  """Two-sided p-value for a difference of means between two groups of units (exact when the number of
  relabellings is at most n_perm, Monte Carlo with the +1 correction otherwise)."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  pooled = np.concatenate([a, b])
  observed = abs(a.mean() - b.mean())
  n, na = pooled.size, a.size
  tol = 1e-12 * max(1.0, abs(observed))
  if math.comb(n, na) <= n_perm:
    from itertools import combinations  # noqa: PLC0415
    hits = total = 0
    for idx in combinations(range(n), na):
      mask = np.zeros(n, bool)
      mask[list(idx)] = True
      hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - tol
      total += 1
    return hits / total
  rng = np.random.default_rng(seed)
  hits = 0
  for _ in range(n_perm):
    p = rng.permutation(pooled)
    hits += abs(p[:na].mean() - p[na:].mean()) >= observed - tol
  return (hits + 1) / (n_perm + 1)


def sign_flip_p(diffs) -> float:
  """Exact two-sided p of the paired sign-flip test of mean(diffs) = 0: the share of the 2^k sign patterns whose
  |mean| is at least the observed one (k paired differences, e.g. one per seed; 2 / 2^k is the smallest p)."""
  d = np.asarray(diffs, np.float64)
  observed = abs(d.mean())
  patterns = np.array(list(itertools.product((-1.0, 1.0), repeat=d.size)))
  return float(np.mean(np.abs((patterns * d).mean(axis=1)) >= observed - 1e-12))


def empirical_p(observed: float, null_values: Sequence[float]) -> float:
  """One-sided p-value of `observed` against replicates of a null: (#{null >= observed} + 1) / (R + 1)."""
  v = np.asarray(null_values, np.float64).ravel()
  return float((np.sum(v >= observed) + 1) / (v.size + 1))


def auc(score, positive) -> float:
  """Area under the ROC curve of `score` for the boolean labels `positive` (the Mann-Whitney statistic; ties
  count half; +-inf scores rank first / last); NaN when a class is empty."""
  score = np.asarray(score, np.float64).ravel()
  positive = np.asarray(positive, bool).ravel()
  n_pos, n_neg = int(positive.sum()), int((~positive).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  score = np.where(np.isfinite(score), score, np.where(score > 0, 1e300, -1e300))
  order = np.argsort(score, kind="stable")
  _, first, inverse, counts = np.unique(score[order], return_index=True, return_inverse=True, return_counts=True)
  ranks = np.empty(score.size)
  ranks[order] = (first + (counts + 1) / 2.0)[inverse]  # average 1-based rank over each run of ties
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc(score_members, score_nonmembers) -> tuple:
  """(fpr, tpr) over all thresholds (descending), from (0, 0) to (1, 1)."""
  s = np.concatenate([np.asarray(score_members, np.float64).ravel(),
                      np.asarray(score_nonmembers, np.float64).ravel()])
  lab = np.concatenate([np.ones(np.size(score_members)), np.zeros(np.size(score_nonmembers))])
  order = np.argsort(-s, kind="stable")
  s, lab = s[order], lab[order]
  distinct = np.concatenate([np.flatnonzero(np.diff(s) != 0), [s.size - 1]])
  tp = np.cumsum(lab)[distinct]
  fp = np.cumsum(1 - lab)[distinct]
  tpr = np.concatenate([[0.0], tp / max(lab.sum(), 1)])
  fpr = np.concatenate([[0.0], fp / max((1 - lab).sum(), 1)])
  return fpr, tpr


def tpr_at_fpr(fpr, tpr, max_fpr: float) -> float:
  """The largest TPR whose FPR is at most max_fpr, on a curve from `roc`."""
  ok = np.asarray(fpr) <= max_fpr
  return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


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


def _counts_at_thresholds(score_members, score_nonmembers, threshold=None):
  """(thresholds, tp, fp): members / non-members scoring >= each threshold (every distinct score and +inf,
  or the one given)."""
  sm = np.asarray(score_members, np.float64).ravel()
  sn = np.asarray(score_nonmembers, np.float64).ravel()
  t = (np.concatenate([np.union1d(sm, sn), [np.inf]]) if threshold is None
       else np.asarray([threshold], np.float64))
  tp = sm.size - np.searchsorted(np.sort(sm), t, side="left")
  fp = sn.size - np.searchsorted(np.sort(sn), t, side="left")
  return t, tp, fp


def tpr_at_fpr_exact(score_members, score_nonmembers, max_fpr: float, level: float = 0.95) -> dict:
  """TPR at the most permissive threshold whose empirical FPR is at most max_fpr, with its exact binomial
  (Clopper-Pearson) interval over the members, and the false-positive count it rests on (an FPR of 0.1% among
  1,000 non-members rests on at most one point: read the count before the rate).

  Returns:
    {tpr, tpr_interval, tp, n_members, fp, n_nonmembers, fpr, fpr_interval, threshold}.
  """
  t, tp, fp = _counts_at_thresholds(score_members, score_nonmembers)
  n_m, n_n = int(np.size(score_members)), int(np.size(score_nonmembers))
  ok = fp <= max_fpr * n_n
  i = int(np.flatnonzero(ok)[np.argmax(tp[ok])])  # +inf always qualifies (tp = fp = 0)
  return {"tpr": float(tp[i] / max(n_m, 1)), "tpr_interval": list(clopper_pearson(int(tp[i]), n_m, level)),
          "tp": int(tp[i]), "n_members": n_m, "fp": int(fp[i]), "n_nonmembers": n_n,
          "fpr": float(fp[i] / max(n_n, 1)), "fpr_interval": list(clopper_pearson(int(fp[i]), n_n, level)),
          "threshold": float(t[i])}


def epsilon_lower_bound(score_members, score_nonmembers, delta: float, significance: float = 0.05,
                        threshold: Optional[float] = None) -> dict:
  """A lower bound on the epsilon of any (epsilon, delta)-DP training that produced these membership scores
  (Jagielski et al. 2020, Nasr et al. 2021): at a threshold t, TPR <= e^eps FPR + delta for every DP mechanism,
  so eps >= log((TPR_low - delta) / FPR_high) with one-sided Clopper-Pearson bounds (each at significance / 2).
  Without `threshold`, every distinct score is tried and `significance` is split over them (Bonferroni), so
  the bound holds with probability >= 1 - significance whichever threshold wins. Scores: higher = member.

  Returns:
    {epsilon (>= 0), threshold (the winning one, None when nothing beats chance), delta, significance,
     thresholds_tried}.
  """
  t, tp, fp = _counts_at_thresholds(score_members, score_nonmembers, threshold)
  n_m, n_n = int(np.size(score_members)), int(np.size(score_nonmembers))
  a = significance / 2.0 / (1 if threshold is not None else t.size)
  # An upper bound on each threshold's eps without a quantile (TPR_low <= tp / n_m; FPR_high >= fp / n_n and
  # >= its k = 0 value 1 - a^(1/n_n)), so the exact bounds are computed only where they can win.
  with np.errstate(divide="ignore"):
    ub = np.log(np.maximum(tp / max(n_m, 1) - delta, 0.0)) - np.log(np.maximum(fp / max(n_n, 1),
                                                                                 1.0 - a ** (1.0 / max(n_n, 1))))
  best, best_t = 0.0, None
  for i in np.argsort(-ub, kind="stable"):
    if not ub[i] > best:
      break
    k, f = int(tp[i]), int(fp[i])
    tpr_lo = a ** (1.0 / n_m) if k == n_m else _beta_quantile(a, k, n_m - k + 1)
    fpr_hi = 1.0 if f == n_n else _beta_quantile(1.0 - a, f + 1, n_n - f)
    if tpr_lo > delta:
      eps = math.log(tpr_lo - delta) - math.log(fpr_hi)
      if eps > best:
        best, best_t = eps, float(t[i])
  return {"epsilon": best, "threshold": best_t, "delta": delta, "significance": significance,
          "thresholds_tried": int(t.size)}
