"""Credit: which training points a pool of candidates identifies, with the nulls that calibrate the count.

A small distance to the training set is not a reconstruction: a random mixture of training points is close
to the training set's span and passes nearest-neighbour statistics (it is closer to the training set than to
held-out points of the same distribution), while copying none of them. This module credits a candidate c to
ONE training point x_i only when all four hold (`Rule`, defaults calibrated on MNIST and the sphere):

1. nearest: among the training AND the held-out reference points, the one most similar to c is x_i;
2. margin: d(c, x_i) <= (1 - margin) * d(c, r) for every other reference point r (training or held-out);
3. explained: s(c, x_i)^2 >= min_explained, the share of c's energy along x_i;
4. dominance: s(c, x_i) >= dominance * |<c' - s(c, x_i) x_i', x_j'>| for every other TRAINING point x_j (primes:
   unit feature vectors): after removing x_i, no second training point explains a comparable part of c. An
   equal mixture of two training points fails it (both parts are alike); a noisy copy passes (its residual is
   noise, nearly orthogonal to every training point).

Similarity s is scale-aware where the net is homogeneous: `cosine` (vectors) is the cosine about the origin,
so s(c, r) = sqrt(1 - min_{a > 0} ||a c - r||^2 / ||r||^2) and a candidate at any positive scale of x_i is
x_i; `ncc` (images) is the reference's normalized cross-correlation (each channel centred and scaled, the
channels averaged), blind to a constant offset as well. d = sqrt(1 - max(s, 0)^2) is the relative distance
after the best positive rescaling.

The count reported is the number of DISTINCT training points credited. It is calibrated by the same count on
pools no attack produced, each the size of the attack's pool and drawn `replicates` times:
- `heldout`: held-out points of the same distribution (a split disjoint from the reference held-out set);
  MNIST has near-duplicates, so a fresh digit is credited to its training twin now and then: that is chance;
- `mixture_convex` / `mixture_signed`: equal-weight mixtures of k = 2..10 unit-normalized training points
  (signs random for the signed ones), at the candidates' median norm: copies of none;
- `mean`: the training mean (and, where labels are given, each class's mean): the distribution without any
  individual.
The positive control (`noisy_copies`): a training point at a random positive scale plus isotropic noise of a
stated relative size is credited to that very point.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional

import jax
import numpy as np

from jaxrecon import stats

Similarity = Literal["cosine", "ncc"]
SIMILARITIES = ("cosine", "ncc")
MIXTURE_KS = tuple(range(2, 11))
NULLS = ("heldout", "mixture_convex", "mixture_signed", "mean")


class Rule(NamedTuple):
  """When a candidate is credited to a training point (see the module docstring).

  The defaults: at MNIST odd/even scale (500 training, 1,000 reference held-out digits) equal mixtures of
  k = 2..10 training digits are credited at <= 3.2% per candidate, fresh digits at ~14% (their training
  near-duplicates), noisy copies at relative noise <= 0.5 at 100% and at noise 1 at 98.4%
  (`scripts/bench_credit.py`, bench/credit.json; tests/credit_test.py bounds them).
  """
  margin: float = 0.05
  min_explained: float = 0.25
  dominance: float = 2.0
  similarity: Similarity = "cosine"
  channels: int = 1


class Credit(NamedTuple):
  """Per-candidate verdicts of one pool (each (P,)) and the headline count."""
  credited: np.ndarray      # bool: credited to a training point
  train_index: np.ndarray   # the training point credited (-1 where none)
  nearest: np.ndarray       # index of the most similar reference point (>= n_train: a held-out point)
  similarity: np.ndarray    # s(c, nearest)
  ratio: np.ndarray         # d(c, nearest) / d(c, second nearest)
  dominance: np.ndarray     # s(c, nearest) / the largest second-training-point coefficient (inf if none)
  n_credited: int           # distinct training points credited
  n_train: int


def features(x_ND, similarity: Similarity = "cosine", channels: int = 1) -> np.ndarray:
  """Unit feature vectors (float64) whose dot products are the similarity (a zero or constant row maps to 0)."""
  if similarity not in SIMILARITIES:
    raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
  v = np.asarray(x_ND, np.float64)
  v = v.reshape(v.shape[0], -1, channels if similarity == "ncc" else 1)
  if similarity == "ncc":
    v = v - v.mean(axis=1, keepdims=True)
  norm = np.linalg.norm(v, axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    v = np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), 0.0) / np.sqrt(v.shape[2])
  return v.reshape(v.shape[0], -1)


def _judge(phi_c, phi_train, phi_held, gram, rule: Rule):
  """The four conditions for a block of candidates (feature vectors). numpy: this is a handful of matrix
  products whose shapes change with every pool, where a compiled program would be rebuilt each time."""
  n = phi_train.shape[0]
  finite = np.all(np.isfinite(phi_c), axis=1)
  phi_c = np.where(finite[:, None], phi_c, 0.0)
  s = np.concatenate([phi_c @ phi_train.T, phi_c @ phi_held.T], axis=1)  # (B, n + h)
  d = np.sqrt(np.maximum(1.0 - np.square(np.maximum(s, 0.0)), 0.0))
  nearest = np.argmax(s, axis=1)
  rows = np.arange(s.shape[0])
  s1, d1 = s[rows, nearest], d[rows, nearest]
  d[rows, nearest] = np.inf
  d2 = d.min(axis=1) if d.shape[1] > 1 else np.full(s.shape[0], np.inf)
  tiny = np.finfo(np.float64).tiny
  ratio = d1 / np.maximum(d2, tiny)
  i = np.minimum(nearest, n - 1)
  resid = s[:, :n] - s1[:, None] * gram[i]  # <phi_c - s1 phi_i, phi_j> for every training j
  resid[rows, i] = 0.0
  e2 = np.abs(resid).max(axis=1)
  dom = np.where(e2 > 0, s1 / np.maximum(e2, tiny), np.inf)
  ok = ((nearest < n) & (s1 > 0) & (d1 <= (1.0 - rule.margin) * d2) & (np.square(s1) >= rule.min_explained)
        & (dom >= rule.dominance) & finite)
  return ok, nearest, s1, ratio, dom


def credit(pool_PD, x_train_ND, x_heldout_HD, rule: Rule = Rule(), batch: int = 2048) -> Credit:
  """Credits each candidate of the pool to at most one training point (module docstring's four conditions).

  Args:
    pool_PD: the candidates, in the training data's space.
    x_train_ND: the training points.
    x_heldout_HD: reference points of the same distribution the net never saw (may be None or empty, which
      makes condition 1 weaker: say so where it happens).
    rule: the thresholds and the similarity.
    batch: candidates per block (bounds the (batch, n + h) similarity matrix).
  Returns:
    A `Credit`: per-candidate verdicts and the number of distinct training points credited.
  """
  f = lambda a: features(np.reshape(a, (np.shape(a)[0], -1)), rule.similarity, rule.channels)
  phi_t = f(x_train_ND)
  held = None if x_heldout_HD is None else np.reshape(x_heldout_HD, (-1, phi_t.shape[1]))
  phi_h = f(held) if held is not None and held.shape[0] else np.zeros((0, phi_t.shape[1]))
  gram = phi_t @ phi_t.T
  pool = np.reshape(np.asarray(pool_PD), (np.shape(pool_PD)[0], -1))
  parts = [_judge(f(pool[i:i + batch]), phi_t, phi_h, gram, rule) for i in range(0, pool.shape[0], batch)]
  if not parts:
    e = np.zeros(0)
    return Credit(e.astype(bool), e.astype(np.int64), e.astype(np.int64), e, e, e, 0, phi_t.shape[0])
  ok, nearest, s1, ratio, dom = (np.concatenate([p[k] for p in parts]) for k in range(5))
  idx = np.where(ok, nearest, -1).astype(np.int64)
  return Credit(ok, idx, nearest.astype(np.int64), s1, ratio, dom, int(np.unique(idx[ok]).size), phi_t.shape[0])


def rule_for(image_shape=None) -> Rule:
  """The default rule for the data: NCC per channel for images (H, W, C), the cosine for vectors."""
  return Rule(similarity="ncc", channels=tuple(image_shape)[-1]) if image_shape else Rule()


def distinct(pool_PD, threshold: float, rule: Rule = Rule()) -> np.ndarray:
  """Indices of a pool with its near-duplicates dropped, using no training data: in pool order, a candidate
  whose similarity (the rule's: NCC for images, cosine for vectors) with an already kept one is >= threshold
  is dropped. An attack's candidates cluster (many converge to one reconstruction or one generic blend) while
  the nulls' points are spread; the recovery measure counts distinct training points credited against nulls
  drawn at the POOL's size, so a pool of distinct candidates is the attacker's claim of that many images.

  Args:
    pool_PD: the candidates (P, D).
    threshold: the similarity at which a candidate counts as a duplicate (> 1 keeps every candidate).
    rule: the similarity (and channels) of the recovery measure.

  Returns:
    The kept indices (increasing), the first candidate of every group.
  """
  phi = features(pool_PD, rule.similarity, rule.channels)
  covered = np.zeros(phi.shape[0], bool)
  keep = []
  for i in range(phi.shape[0]):
    if not covered[i]:
      keep.append(i)
      covered |= phi @ phi[i] >= threshold
  return np.asarray(keep, np.int64)


def best_candidates(pool_PD, x_train_ND, rule: Rule = Rule()) -> tuple:
  """For each training point, the index of its most similar candidate and that similarity ((n,), (n,))."""
  f = lambda a: features(np.reshape(a, (np.shape(a)[0], -1)), rule.similarity, rule.channels)
  phi_t = f(x_train_ND)
  pool = np.reshape(np.asarray(pool_PD), (np.shape(pool_PD)[0], -1))
  best, sim = np.zeros(phi_t.shape[0], np.int64), np.full(phi_t.shape[0], -np.inf)
  for i in range(0, pool.shape[0], 2048):
    phi_c = f(pool[i:i + 2048])
    s = np.where(np.all(np.isfinite(phi_c), axis=1)[None, :], phi_t @ np.nan_to_num(phi_c).T, -np.inf)
    j = np.argmax(s, axis=1)
    better = s[np.arange(s.shape[0]), j] > sim
    best, sim = np.where(better, j + i, best), np.where(better, s[np.arange(s.shape[0]), j], sim)
  return best, sim


def mixtures(key: jax.Array, x_train_ND, size: int, signed: bool, ks=MIXTURE_KS, scale: float = 1.0) -> np.ndarray:
  """`size` equal-weight mixtures of k unit-normalized training points (k cycling through `ks`), each of
  norm `scale`; signs random when `signed`. No mixture copies a training point."""
  x = np.asarray(x_train_ND, np.float64).reshape(np.shape(x_train_ND)[0], -1)
  units = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
  seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
  rng = np.random.default_rng(seed)
  out = np.empty((size, x.shape[1]))
  for p in range(size):
    k = min(ks[p % len(ks)], x.shape[0])
    j = rng.choice(x.shape[0], k, replace=False)
    w = np.full(k, 1.0 / k) * (rng.choice([-1.0, 1.0], k) if signed else 1.0)
    v = w @ units[j]
    out[p] = scale * v / max(np.linalg.norm(v), np.finfo(np.float64).tiny)
  return out


def noisy_copies(key: jax.Array, x_train_ND, size: int, noise: float, scales=(0.1, 10.0)) -> tuple:
  """The positive control: (copies (size, D), source index (size,)). Each is a training point at a random
  positive scale (log-uniform in `scales`) plus isotropic Gaussian noise whose norm is `noise` times the
  point's."""
  x = np.asarray(x_train_ND, np.float64).reshape(np.shape(x_train_ND)[0], -1)
  seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
  rng = np.random.default_rng(seed)
  src = rng.integers(0, x.shape[0], size)
  z = rng.normal(size=(size, x.shape[1]))
  z *= (noise * np.linalg.norm(x[src], axis=1) / np.linalg.norm(z, axis=1))[:, None]
  a = np.exp(rng.uniform(np.log(scales[0]), np.log(scales[1]), size))[:, None]
  return a * (x[src] + z), src


def null_pools(key: jax.Array, x_train_ND, size: int, *, x_null=None, scale: float = 1.0,
               labels=None) -> dict:
  """One replicate of each null pool of `size` candidates (a pool that has no points is left out).

  x_null: held-out points for the `heldout` null, disjoint from the reference held-out set (drawn without
  replacement where enough, else with). labels: the training labels, to add each class's mean to `mean`.
  """
  k_h, k_c, k_s = jax.random.split(key, 3)
  x = np.asarray(x_train_ND, np.float64).reshape(np.shape(x_train_ND)[0], -1)
  pools = {}
  if x_null is not None and np.shape(x_null)[0]:
    xn = np.asarray(x_null, np.float64).reshape(np.shape(x_null)[0], -1)
    rng = np.random.default_rng(int(jax.random.randint(k_h, (), 0, 2 ** 31 - 1)))
    pools["heldout"] = xn[rng.choice(xn.shape[0], size, replace=size > xn.shape[0])]
  pools["mixture_convex"] = mixtures(k_c, x, size, False, scale=scale)
  pools["mixture_signed"] = mixtures(k_s, x, size, True, scale=scale)
  means = [x.mean(axis=0)]
  if labels is not None:
    lab = np.asarray(labels)
    means += [x[lab == c].mean(axis=0) for c in np.unique(lab)]
  pools["mean"] = np.stack(means)
  return pools


def report(key: jax.Array, pool_PD, x_train_ND, x_heldout_HD, *, x_null=None, rule: Rule = Rule(),
           replicates: int = 5, units=None, labels=None, noise_levels=(0.5,),
           attack: Optional[Credit] = None) -> dict:
  """The attack's credited count beside every null's and the positive control, as one JSON-able dict.

  Args:
    key: PRNG key for the nulls and the control.
    pool_PD: the attack's candidates.
    x_train_ND, x_heldout_HD: training points and reference held-out points (condition 1's competitors).
    x_null: further held-out points for the `heldout` null (disjoint from x_heldout_HD).
    rule: the credit rule.
    replicates: draws of each null pool (the count's spread and the empirical p-value come from them).
    units: (P,) the unit each candidate belongs to (e.g. its sweep configuration): per-unit counts and a
      bootstrap interval over units, the unit that varies between runs. None: no per-unit interval.
    labels: training labels (class means join the mean null).
    noise_levels: relative noise of the positive control's copies.
    attack: the pool's `credit` if the caller already has it (it is not computed again).
  Returns:
    {"rule", "n_train", "pool_size", "attack": {...}, "nulls": {name: {...}}, "beats_every_null",
     "positive_control": {noise: rate}, "per_unit": {...} (when units is given)}.
  """
  pool = np.asarray(pool_PD, np.float64).reshape(np.shape(pool_PD)[0], -1)
  finite = np.all(np.isfinite(pool), axis=1)
  size = max(int(pool.shape[0]), 1)
  norms = np.linalg.norm(pool[finite], axis=1)
  scale = float(np.median(norms)) if norms.size else 1.0
  att = attack if attack is not None else credit(pool, x_train_ND, x_heldout_HD, rule)
  out = {"rule": rule._asdict(), "n_train": att.n_train, "pool_size": int(pool.shape[0]),
         "attack": {"n_credited": att.n_credited, "candidates_credited": int(att.credited.sum()),
                    "rate_per_candidate": float(att.credited.mean()) if att.credited.size else 0.0},
         "nulls": {}}
  keys = jax.random.split(key, replicates + 1)
  counts: dict = {}
  cand_hits: dict = {}
  for r in range(replicates):
    for name, npool in null_pools(keys[r], x_train_ND, size, x_null=x_null, scale=scale, labels=labels).items():
      c = credit(npool, x_train_ND, x_heldout_HD, rule)
      counts.setdefault(name, []).append(c.n_credited)
      hits = cand_hits.setdefault(name, [0, 0])
      hits[0] += int(c.credited.sum())
      hits[1] += int(c.credited.size)
  for name, v in counts.items():
    k, n = cand_hits[name]
    out["nulls"][name] = {
        "n_credited_mean": float(np.mean(v)), "n_credited_max": int(np.max(v)), "n_credited": [int(t) for t in v],
        "pool_size": int(n // replicates), "rate_per_candidate": k / n if n else 0.0,
        "rate_ci95": stats.clopper_pearson(k, n) if n else (float("nan"), float("nan")),
        "p_attack_not_above": stats.empirical_p(att.n_credited, v)}
  out["beats_every_null"] = bool(all(att.n_credited > s["n_credited_max"] for s in out["nulls"].values()))
  out["positive_control"] = {}
  for j, noise in enumerate(noise_levels):
    copies, src = noisy_copies(jax.random.fold_in(keys[-1], j), x_train_ND, min(size, 1000), noise)
    c = credit(copies, x_train_ND, x_heldout_HD, rule)
    out["positive_control"][str(noise)] = float(np.mean(c.credited & (c.train_index == src)))
  if units is not None:
    units = np.asarray(units)
    per = {int(u): int(np.unique(att.train_index[(units == u) & att.credited]).size) for u in np.unique(units)}
    out["per_unit"] = {"unit_counts": per, "mean": float(np.mean(list(per.values()))),
                       "ci95_over_units": stats.bootstrap_ci(list(per.values())), "n_units": len(per)}
  return out


def calibrate(key: jax.Array, x_train_ND, x_heldout_HD, x_null=None, rule: Rule = Rule(), size: int = 2000,
              ks=(2, 3, 5, 10), noise_levels=(0.25, 0.5, 1.0)) -> dict:
  """The rule's per-candidate rates on pools whose truth is known: equal mixtures of k training points (convex
  and signed; `size // 4` each), noisy copies at each noise level (credited to their own source), and the
  held-out null points. Returns {"convex_k2": rate, ..., "signed_k10": ..., "copies_0.5": ..., "heldout": ...}."""
  out = {}
  for signed in (False, True):
    for k in ks:
      m = mixtures(jax.random.fold_in(key, 10 * k + signed), x_train_ND, size // 4, signed, ks=(k,))
      out[f"{'signed' if signed else 'convex'}_k{k}"] = float(credit(m, x_train_ND, x_heldout_HD, rule).credited.mean())
  for noise in noise_levels:
    c, src = noisy_copies(jax.random.fold_in(key, int(1000 * noise)), x_train_ND, size // 4, noise)
    got = credit(c, x_train_ND, x_heldout_HD, rule)
    out[f"copies_{noise:g}"] = float(np.mean(got.credited & (got.train_index == src)))
  if x_null is not None and np.shape(x_null)[0]:
    out["heldout"] = float(credit(x_null, x_train_ND, x_heldout_HD, rule).credited.mean())
  return out


def summary_line(rep: dict, unit: Optional[str] = None) -> str:
  """One sentence: the attack's credited count beside the largest of every null's, and the control."""
  nulls = ", ".join(f"{k} {v['n_credited_max']}" for k, v in rep["nulls"].items())
  ctl = ", ".join(f"{float(k):g}: {100 * v:.0f}%" for k, v in rep["positive_control"].items())
  s = (f"credited {rep['attack']['n_credited']} of {rep['n_train']} training points (pool {rep['pool_size']}); "
       f"nulls at most: {nulls}; noisy copies credited (relative noise {ctl})")
  if unit and "per_unit" in rep:
    lo, hi = rep["per_unit"]["ci95_over_units"]
    s += f"; per {unit}: {rep['per_unit']['mean']:.1f} [{lo:.1f}, {hi:.1f}] over {rep['per_unit']['n_units']}"
  return s
