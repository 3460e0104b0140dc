"""The sphere experiment of "No Prior, No Leakage": its data, its recovery measures and the study job.

Independent checks: scipy's cdist (cosine and correlation distances) for the best-match cosines and NCCs, a
numpy forward pass for the margin ratio, the homogeneity of bias-free nets (hand-derived) for the scale
symmetry that makes distance alone misleading."""

import dataclasses
import os

from absl.testing import absltest
import pytest
import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import distance as sp_distance

from jaxrecon import data as data_lib
from jaxrecon import nets
from jaxrecon import stats
from jaxrecon.attack import loss as attack_loss
from jaxrecon.attack.sweep import SweepConfig
from jaxrecon.experiments import longer
from jaxrecon.experiments import sphere
from jaxrecon.noprior import recovery


def _net(d=12, widths=(9, 7), seed=0):
  return nets.init(jax.random.key(seed), nets.MLPConfig(d_in=d, widths=widths, init_scales=None), jnp.float64)


def _numpy_phi(params, x):
  h = x
  for layer in params[:-1]:
    h = np.maximum(h @ np.asarray(layer["w"]), 0.0)
  return (h @ np.asarray(params[-1]["w"]))[:, 0]


class ShiftedSphereTest(absltest.TestCase):

  def test_balanced_classes_on_the_shifted_sphere(self):
    cfg = data_lib.DataConfig(name="shifted_sphere", n=40, d=30, n_test=60, radius=3.0, shift=2.5)
    ds = data_lib.load(jax.random.key(0), cfg)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
      np.testing.assert_allclose(np.linalg.norm(x - 2.5, axis=1), 3.0, rtol=1e-12)
      np.testing.assert_array_equal(np.bincount((y + 1) // 2), [x.shape[0] // 2] * 2)
      np.testing.assert_array_equal(np.sign(x[:, 0] - 2.5), y)  # the class is the side of the centre
    self.assertFalse(np.any(ds.mean))  # synthetic data: nothing subtracted


class RecoveryTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.params = _net()
    self.x_tr = rng.normal(size=(20, 12))
    self.y_tr = np.where(_numpy_phi(self.params, self.x_tr) >= 0, 1, -1)
    self.x_ho = rng.normal(size=(20, 12))
    self.cands = rng.normal(size=(15, 12))

  def _rec(self, cands):
    return recovery.recovery(self.params, jnp.asarray(cands), jnp.asarray(self.x_tr), jnp.asarray(self.y_tr),
                             jnp.asarray(self.x_ho))

  def test_against_scipy_and_a_numpy_forward_pass(self):
    r = self._rec(self.cands)
    np.testing.assert_allclose(r.dist, sp_distance.cdist(self.cands, self.x_tr).min(1), rtol=1e-10)
    np.testing.assert_allclose(r.cos_train, 1 - sp_distance.cdist(self.cands, self.x_tr, "cosine").min(1), rtol=1e-10)
    np.testing.assert_allclose(r.ncc_heldout, 1 - sp_distance.cdist(self.cands, self.x_ho, "correlation").min(1),
                               rtol=1e-10)
    q_min = np.min(self.y_tr * _numpy_phi(self.params, self.x_tr))
    np.testing.assert_allclose(r.margin_ratio, np.abs(_numpy_phi(self.params, self.cands)) / q_min, rtol=1e-10)
    rms = np.sqrt(np.mean(np.sum(self.x_tr ** 2, 1)))
    np.testing.assert_allclose(r.norm_ratio, np.linalg.norm(self.cands, axis=1) / rms, rtol=1e-10)

  def test_scaled_copies_are_recovered_in_direction_not_in_distance(self):
    # Candidates = 7 x (training points): distance says "far", cosine / NCC say "exact", and by
    # homogeneity |Phi| grows by 7 too; held-out points are the chance level.
    c = 7.0
    r = self._rec(c * self.x_tr[:6])
    s = recovery.summarize(r, data_radius=1.0)
    self.assertAlmostEqual(s["best5_ncc_train"], 1.0, places=12)
    self.assertAlmostEqual(s["best5_cos_train"], 1.0, places=12)
    self.assertLess(s["best5_ncc_heldout"], 0.9)
    self.assertEqual(s["frac_ncc_closer_train"], 1.0)
    self.assertGreater(s["min_dist"], 4.0)  # far in L2
    base = self._rec(self.x_tr[:6])
    np.testing.assert_allclose(r.margin_ratio, c * np.asarray(base.margin_ratio), rtol=1e-10)

  def test_prior_free_loss_is_invariant_under_the_scale_symmetry(self):
    # Bias-free ReLU net: grad_theta Phi(c x) = c grad_theta Phi(x), so sum_k lam_k grad q_k is unchanged by
    # (x, lam) -> (c x, lam / c). With a steep surrogate (alpha |z| >> 1) the attack's term inherits it.
    params = self.params
    y_hat = attack_loss.candidate_labels(8).astype(jnp.float64)
    x = jnp.asarray(self.cands[:8])
    lam = jnp.linspace(0.2, 2.0, 8)
    g0 = attack_loss.stationarity_gap(params, params, x, lam, y_hat, 1e9)
    for c in (0.1, 4.0, 50.0):
      g = attack_loss.stationarity_gap(params, params, c * x, lam / c, y_hat, 1e9)
      self.assertAlmostEqual(float(g / g0), 1.0, places=9)


class LongerHelpersTest(absltest.TestCase):

  def test_perp_fraction_against_a_least_squares_projection(self):
    rng = np.random.default_rng(1)
    params = _net(d=12, widths=(9,))
    x = rng.normal(size=(5, 12))
    w = np.asarray(params[0]["w"])
    coef, *_ = np.linalg.lstsq(x.T, w, rcond=None)  # the part of each column inside span{x_i}
    perp = w - x.T @ coef
    total = np.sqrt(sum(np.sum(np.asarray(p) ** 2) for layer in params for p in layer.values()))
    self.assertAlmostEqual(recovery.perp_weight_fraction(params, x), np.linalg.norm(perp) / total, places=10)
    self.assertAlmostEqual(recovery.perp_weight_fraction(params, rng.normal(size=(12, 12))), 0.0, places=10)

  def test_bootstrap_interval_matches_the_normal_one_for_many_draws(self):
    v = np.random.default_rng(2).normal(3.0, 2.0, size=400)
    lo, hi = stats.bootstrap_ci(v, n_boot=4000)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    self.assertAlmostEqual((hi - lo) / 2, half, delta=0.1 * half)
    self.assertAlmostEqual((hi + lo) / 2, v.mean(), delta=0.1 * half)

  def test_run_sweep_starts_at_x_start(self):
    # zero init scale and zero learning rates: the candidates never leave the given start points
    params = _net(d=6, widths=(5,))
    start = np.random.default_rng(3).normal(size=(4, 6))
    h = SweepConfig(kind="grid", init_scale=(0.0,), lr_x=(0.0,), lambda_min=(0.0,), alpha=(20.0,),
                    lr_lambda=(0.0,)).hyper(jax.random.key(0))
    cfg = attack_loss.AttackConfig(m=4, steps=3, log_every=3, dtype="float64", prior_weight=0.0)
    res = longer.run_sweep(jax.random.key(1), params, h, 6, cfg, log=None, x_start=start)
    np.testing.assert_array_equal(res.x[0], start)
    with self.assertRaisesRegex(ValueError, "x_start must have shape"):
      longer.run_sweep(jax.random.key(1), params, h, 6, cfg, log=None, x_start=start[:3])

  def test_basin_start_matches_labels(self):
    x = np.random.default_rng(4).normal(size=(6, 5))
    y = np.array([-1, -1, -1, 1, 1, 1])
    y_hat = np.array([-1] * 4 + [1] * 4)
    s = longer.basin_start(x, y, y_hat, 0.0, jax.random.key(0))
    np.testing.assert_array_equal(s[:4], x[[0, 1, 2, 0]])
    np.testing.assert_array_equal(s[4:], x[[3, 4, 5, 3]])


class StudyTest(absltest.TestCase):

  def test_authors_protocol_sizes(self):
    full = sphere.authors_protocol()
    self.assertEqual((full.train.data.n, full.train.data.d, full.train.widths), (500, 784, (1000, 1000)))
    self.assertFalse(full.train.first_bias)
    self.assertEqual((full.reconstruct.attack.steps, full.reconstruct.attack.m), (50001, 0))  # m = 2n = 1,000
    self.assertEqual(full.reconstruct.attack.prior_weight, 0.0)
    self.assertEqual(full.reconstruct.sweep.hyper(jax.random.key(0)).size, 108)

  @pytest.mark.slow
  def test_tiny_longer_study(self):
    cfg = longer.LongerStudyConfig(
        data=data_lib.DataConfig(name="shifted_sphere", n=8, d=12, n_test=20), widths=(16,), fast_steps=20,
        gd_steps=20, gd_lr=2.0, attack=dataclasses.replace(longer.LongerStudyConfig().attack, steps=20, log_every=10),
        sweep=dataclasses.replace(longer.LongerStudyConfig().sweep, seeds=2, lr_x=(0.05,)))
    tmp = self.create_tempdir().full_path
    s = longer.run(cfg, os.path.join(tmp, "l"), log=lambda *_: None)
    rows = s["rows"]
    self.assertEqual({r["schedule"] for r in rows}, {"fast", "gd"})
    for r in rows:
      self.assertIsNotNone(r["split_reach_over_radius"])
      self.assertGreater(r["perp_w1_fraction"], 0.0)
    for a in longer.ATTACKS:  # the last checkpoint's attacks finish (a diverged seed only drops out)
      self.assertIn("stat_rel", rows[-1][a])
    self.assertIn("drift", rows[-1]["basin"])
    cr = rows[-1]["prior_free"]["credit"]  # the recovery measure with its nulls, per attack and checkpoint
    self.assertEqual(set(cr["nulls_max"]), {"heldout", "mixture_convex", "mixture_signed", "mean"})
    self.assertLen(cr["per_seed_ci95"], 2)
    for f in ("longer.png", "metrics.jsonl", "candidates_fast.npz", "split_gd/summary.json"):
      self.assertTrue(os.path.exists(os.path.join(tmp, "l", f)), f)


if __name__ == "__main__":
  absltest.main()
