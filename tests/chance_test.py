"""The chance study's statistics against their known chance levels, on a null with no attack at all."""

from absl.testing import absltest
import numpy as np

from jaxrecon import stats
from jaxrecon.noprior import chance as chance_study


def brute_nearest(a, b):
  return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)


class ChanceStatisticsTest(absltest.TestCase):

  def test_wilson_interval(self):
    # hand values: k = 50 of n = 100 -> 0.5 +- 1.96 sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    lo, hi = stats.wilson(50, 100)
    h = 1.96 * np.sqrt(0.25 / 100 + 1.96 ** 2 / 40000) / (1 + 1.96 ** 2 / 100)
    self.assertAlmostEqual(lo, 0.5 - h, places=12)
    self.assertAlmostEqual(hi, 0.5 + h, places=12)
    self.assertAlmostEqual(stats.wilson(0, 10)[0], 0.0, places=12)

  def test_symmetric_selection_is_at_chance_and_train_selection_is_biased(self):
    # train, held-out and candidates: iid draws of one distribution (exchangeable train / held-out), so a
    # candidate is closer to train with probability 1/2 whatever is selected symmetrically.
    rng = np.random.default_rng(0)
    sym, biased, overall = [], [], []
    for _ in range(40):
      tr, ho, cand = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)), rng.normal(size=(500, 5))
      d_tr, d_ho = brute_nearest(cand, tr), brute_nearest(cand, ho)
      st = chance_study.statistics(d_tr, d_ho, -d_tr, -d_ho, quantile=0.05)
      sym.append(st["closest_symmetric"]["fraction"])
      biased.append(st["closest_to_train"]["fraction"])
      overall.append(st["closer_l2"]["fraction"])
    self.assertAlmostEqual(np.mean(overall), 0.5, delta=0.02)
    self.assertAlmostEqual(np.mean(sym), 0.5, delta=0.03)
    self.assertGreater(np.mean(biased), 0.7)  # selecting by distance to train alone favours train

  def test_copies_of_training_points_are_detected(self):
    rng = np.random.default_rng(1)
    tr, ho = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    cand = np.concatenate([tr + 0.01 * rng.normal(size=tr.shape), rng.normal(size=(70, 5))])
    st = chance_study.statistics(brute_nearest(cand, tr), brute_nearest(cand, ho), np.zeros(100), np.zeros(100),
                                 quantile=0.2)
    self.assertEqual(st["closest_symmetric"]["fraction"], 1.0)
    self.assertGreater(st["closer_l2"]["fraction"], 0.6)


if __name__ == "__main__":
  absltest.main()
