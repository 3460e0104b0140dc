"""The recovery measure (jaxrecon.credit) against its nulls and its positive control, and the statistics.

The credit rule is checked against a brute-force numpy restatement of its four conditions (written from the
definitions, not from the module), then its rates are measured: equal mixtures of k = 2..10 training points
(convex and signed) must be credited at < 5% per candidate, noisy copies at any positive scale at the rate the
Rule's docstring claims, on vectors (the sphere, always) and on real MNIST digits (when the data are here).
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
from scipy import stats as sp_stats

import conftest
from jaxrecon import credit
from jaxrecon import data
from jaxrecon import stats


def brute_force(pool, x_train, x_held, rule):
  """The four conditions, pair by pair, in float64 numpy loops (image mode: centred per channel)."""
  def phi(v):
    v = np.asarray(v, np.float64)
    if rule.similarity == "ncc":
      v = v.reshape(-1, rule.channels)
      v = v - v.mean(axis=0)
      nrm = np.linalg.norm(v, axis=0)
      v = np.where(nrm > 0, v / np.where(nrm > 0, nrm, 1), 0) / math.sqrt(rule.channels)
      return v.ravel()
    n = np.linalg.norm(v)
    return v / n if n > 0 else v * 0
  refs = [phi(r) for r in np.concatenate([x_train, x_held])]
  n = len(x_train)
  out = []
  for c in pool:
    pc = phi(c)
    s = np.array([pc @ r for r in refs])
    d = np.sqrt(np.maximum(1 - np.maximum(s, 0) ** 2, 0))
    i = int(np.argmax(s))
    d2 = min(d[j] for j in range(len(refs)) if j != i)
    if i >= n or s[i] <= 0:
      out.append(-1)
      continue
    resid = pc - s[i] * refs[i]
    e2 = max(abs(resid @ refs[j]) for j in range(n) if j != i)
    ok = d[i] <= (1 - rule.margin) * d2 and s[i] ** 2 >= rule.min_explained and s[i] >= rule.dominance * e2
    out.append(i if ok else -1)
  return np.array(out)


class RuleTest(parameterized.TestCase):

  @parameterized.parameters("cosine", "ncc")
  def test_equals_the_four_conditions_written_out(self, similarity):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12))
    held = rng.normal(size=(20, 12))
    pool = np.concatenate([
        3.0 * x[:10] + 0.3 * rng.normal(size=(10, 12)),  # copies
        x[10:20] + x[20:30],                              # mixtures
        rng.normal(size=(10, 12)), held[:5] * 0.5])       # noise, held-out points
    rule = credit.Rule(similarity=similarity, channels=3 if similarity == "ncc" else 1)
    got = credit.credit(pool, x, held, rule)
    np.testing.assert_array_equal(got.train_index, brute_force(pool, x, held, rule))
    self.assertEqual(got.n_credited, len(set(got.train_index[got.credited])))
    self.assertGreater(got.credited[:10].sum(), 5)  # the copies are mostly credited, to their own points
    np.testing.assert_array_equal(got.train_index[:10][got.credited[:10]], np.arange(10)[got.credited[:10]])

  def test_scale_and_empty_pools(self):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 8))
    for a in (1e-3, 1.0, 1e3):  # a homogeneous net cannot tell the scale: neither does the credit
      self.assertTrue(credit.credit(a * x, x, x[:0]).credited.all())
    self.assertFalse(credit.credit(-x, x, x[:0]).credited.any())  # a negative scale is no copy
    zero = credit.credit(np.zeros((3, 8)), x, x[:0])  # the mean of centred data: nothing
    self.assertEqual(zero.n_credited, 0)
    nan = credit.credit(np.full((2, 8), np.nan), x, x[:0])
    self.assertFalse(nan.credited.any())

  def test_distinct_keeps_one_of_each_group_by_brute_force(self):
    # groups of rescaled, shifted near-copies of 4 random images, shuffled: NCC ignores scale and shift, so at
    # 0.99 exactly the first member of each group stays; the greedy rule re-stated with scipy's distances
    from scipy.spatial import distance  # noqa: PLC0415
    rng = np.random.default_rng(3)
    base = rng.normal(size=(4, 64))
    group = rng.permutation(np.repeat(np.arange(4), 5))
    pool = 3.0 * base[group] + 0.5 + 1e-4 * rng.normal(size=(20, 64))
    rule = credit.Rule(similarity="ncc")
    kept = credit.distinct(pool, 0.99, rule)
    self.assertEqual(list(kept), sorted(np.unique(group, return_index=True)[1]))
    self.assertEqual(list(credit.distinct(pool, 1.01, rule)), list(range(20)))  # nothing is that similar
    noisy = rng.normal(size=(40, 64)) + base[rng.integers(0, 4, 40)]
    for t in (0.3, 0.6):
      ncc = 1.0 - distance.cdist(noisy, noisy, "correlation")  # Pearson correlation = NCC of one channel
      want = []
      for i in range(40):
        if all(ncc[i, j] < t for j in want):
          want.append(i)
      self.assertEqual(list(credit.distinct(noisy, t, rule)), want)


class CalibrationTest(absltest.TestCase):

  def test_vectors_on_the_sphere(self):
    # the main job's setting (n 500 on the unit sphere in R^784) and a crowded one (n 200 in R^32)
    for n, d in ((500, 784), (200, 32)):
      x, _ = data.sphere(jax.random.key(n), n + 1000 + 1000, d, dtype=np.float64)
      x = np.asarray(x)
      r = credit.calibrate(jax.random.key(d), x[:n], x[n:n + 1000], x[n + 1000:])
      for name, v in r.items():
        if name.startswith(("convex", "signed")):
          self.assertLess(v, 0.05, (n, d, name))  # the mixture null's false-positive rate
      self.assertLess(r["heldout"], 0.05, (n, d))
      self.assertGreaterEqual(r["copies_0.5"], 0.98, (n, d))
      if d == 784:
        self.assertGreaterEqual(r["copies_1"], 0.95)

  def test_images_on_mnist(self):
    root = conftest.shared_data_dir()
    if root is None:
      self.skipTest("real data not found: set JAXRECON_DATA_DIR or place shared/data beside the checkout")
    x, _ = data.read_mnist(f"{root}/mnist", "train")
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = x / x.max()
    idx = np.random.default_rng(0).permutation(len(x))[:3500]
    tr, held, null = x[idx[:500]], x[idx[500:1500]], x[idx[1500:3500]]
    mean = tr.mean(axis=0)
    rule = credit.Rule(similarity="ncc")
    r = credit.calibrate(jax.random.key(3), tr - mean, held - mean, null - mean, rule)
    for name, v in r.items():
      if name.startswith(("convex", "signed")):
        self.assertLess(v, 0.05, name)
    for noise in ("0.25", "0.5"):
      self.assertGreaterEqual(r[f"copies_{noise}"], 0.98, noise)
    self.assertGreaterEqual(r["copies_1"], 0.95)
    self.assertLess(r["heldout"], 0.2)  # MNIST's near-duplicates: chance, reported by every report

  def test_report_carries_every_null_and_beats_them_with_copies(self):
    x, _ = data.sphere(jax.random.key(0), 300, 64, dtype=np.float64)
    x = np.asarray(x)
    tr, held, null = x[:50], x[50:150], x[150:]
    good, _ = credit.noisy_copies(jax.random.key(1), tr, 80, 0.3)
    rep = credit.report(jax.random.key(2), good, tr, held, x_null=null, replicates=3,
                        units=np.repeat(np.arange(4), 20))
    self.assertEqual(set(rep["nulls"]), set(credit.NULLS))
    self.assertTrue(rep["beats_every_null"])
    self.assertGreater(rep["attack"]["n_credited"], 30)
    self.assertEqual(rep["per_unit"]["n_units"], 4)
    lo, hi = rep["per_unit"]["ci95_over_units"]
    self.assertLessEqual(lo, rep["per_unit"]["mean"])
    self.assertGreaterEqual(hi, rep["per_unit"]["mean"])
    mixed = credit.mixtures(jax.random.key(4), tr, 80, True)
    rep = credit.report(jax.random.key(2), mixed, tr, held, x_null=null, replicates=3)
    self.assertFalse(rep["beats_every_null"])
    self.assertIn("credited", credit.summary_line(rep))


class StatsTest(absltest.TestCase):

  def test_clopper_pearson_equals_scipy_beta_quantiles(self):
    for k, n in ((0, 10), (3, 10), (10, 10), (7, 250), (1, 1000)):
      lo, hi = stats.clopper_pearson(k, n)
      ref_lo = 0.0 if k == 0 else sp_stats.beta.ppf(0.025, k, n - k + 1)
      ref_hi = 1.0 if k == n else sp_stats.beta.ppf(0.975, k + 1, n - k)
      self.assertAlmostEqual(lo, ref_lo, places=9)
      self.assertAlmostEqual(hi, ref_hi, places=9)

  def test_t_interval_equals_scipy(self):
    for df in (1, 2, 4, 9, 30):
      self.assertAlmostEqual(stats.t_quantile(df), sp_stats.t.ppf(0.975, df), places=9)
    v = [0.31, 0.27, 0.35, 0.30]
    mean, half = stats.t_interval(v)
    lo, hi = sp_stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=sp_stats.sem(v))
    self.assertAlmostEqual(mean - half, lo, places=9)
    self.assertAlmostEqual(mean + half, hi, places=9)
    self.assertTrue(math.isnan(stats.t_interval([1.0])[1]))

  def test_sign_flip_p_by_hand(self):
    self.assertEqual(stats.sign_flip_p([3, 5, 2, 4, 6]), 2 / 32)  # all one sign: only +-all reach the mean
    self.assertEqual(stats.sign_flip_p([0, 0, 0]), 1.0)
    # [1, -1, 2]: the signed sums are +-2 +- 1 +- 1, i.e. |sum| in {0, 2, 2, 4} for each sign of the 2, so 6
    # of the 8 patterns reach the observed |sum| 2 (by hand), p = 6/8
    self.assertEqual(stats.sign_flip_p([1.0, -1.0, 2.0]), 6 / 8)

  def test_wilson_and_bootstrap(self):
    lo, hi = stats.wilson(50, 100)
    self.assertAlmostEqual(lo, 0.40383, places=4)  # the textbook value
    self.assertAlmostEqual(hi, 0.59617, places=4)
    v = np.random.default_rng(0).normal(size=200)
    lo, hi = stats.bootstrap_ci(v, n_boot=4000)
    se = v.std(ddof=1) / math.sqrt(v.size)  # the normal-theory interval it must approach
    self.assertAlmostEqual(lo, v.mean() - 1.96 * se, delta=0.3 * se)
    self.assertAlmostEqual(hi, v.mean() + 1.96 * se, delta=0.3 * se)

  def test_permutation_test_against_scipy(self):
    a, b = [1.0, 2.0, 3.5, 4.0], [3.0, 5.0, 6.5, 7.0, 8.0]
    ref = sp_stats.permutation_test((a, b), lambda u, v: abs(np.mean(u) - np.mean(v)),
                                    permutation_type="independent", alternative="greater",
                                    n_resamples=np.inf).pvalue  # two-sided in |difference|
    self.assertAlmostEqual(stats.permutation_test(a, b), ref, places=12)
    self.assertAlmostEqual(stats.empirical_p(5, [1, 2, 5, 7]), 3 / 5)

  def test_membership_in_the_auditors_form(self):
    # members N(1, 1) x 500, non-members N(0, 1) x 1,000 (numpy's default_rng(0), stable across versions)
    rng = np.random.default_rng(0)
    m, n = rng.normal(1, 1, 500), rng.normal(0, 1, 1000)
    t = 1.7491740480400813
    # at a fixed threshold: jax_privacy 2.0.0's CanaryScoreAuditor.epsilon_clopper_pearson(0.05, 1e-5,
    # threshold_strategy=Explicit(t)) gives 1.4412696055903085 on these scores; and scipy's beta quantiles:
    k, f = int(np.sum(m >= t)), int(np.sum(n >= t))
    ref = math.log(sp_stats.beta.ppf(0.025, k, 500 - k + 1) - 1e-5) - math.log(
        sp_stats.beta.ppf(0.975, f + 1, 1000 - f))
    got = stats.epsilon_lower_bound(m, n, 1e-5, threshold=t)["epsilon"]
    self.assertAlmostEqual(got, ref, places=9)
    self.assertAlmostEqual(got, 1.4412696055903085, places=9)
    # thresholds chosen from the data: significance split over all 1,501 distinct scores (Bonferroni); the
    # brute force over every threshold with scipy must give the same maximum
    auto = stats.epsilon_lower_bound(m, n, 1e-5)
    a = 0.025 / 1501
    ts = np.concatenate([np.union1d(m, n), [np.inf]])
    ks, fs = (m[None] >= ts[:, None]).sum(1), (n[None] >= ts[:, None]).sum(1)
    lo = np.where(ks > 0, sp_stats.beta.ppf(a, ks, 500 - ks + 1), 0.0)
    hi = np.where(fs < 1000, sp_stats.beta.ppf(1 - a, fs + 1, 1000 - fs), 1.0)
    brute = np.max(np.where(lo > 1e-5, np.log(np.maximum(lo - 1e-5, 1e-300)) - np.log(hi), 0.0))
    self.assertAlmostEqual(auto["epsilon"], brute, places=9)
    self.assertEqual(auto["thresholds_tried"], 1501)
    # no signal, no epsilon: identical score distributions give 0 (a bound, never an estimate)
    self.assertEqual(stats.epsilon_lower_bound(n[:500], n[500:], 1e-5)["epsilon"], 0.0)
    # TPR at FPR <= 1%: the count it rests on and its exact interval
    r = stats.tpr_at_fpr_exact(m, n, 0.01)
    self.assertLessEqual(r["fp"], 10)
    self.assertEqual(r["tp"], int(np.sum(m >= r["threshold"])))
    self.assertEqual(r["tpr_interval"], list(stats.clopper_pearson(r["tp"], 500)))
    self.assertEqual(r["tp"], max(int(np.sum(m >= v)) for v in np.union1d(m, n) if np.sum(n >= v) <= 10))


if __name__ == "__main__":
  absltest.main()
