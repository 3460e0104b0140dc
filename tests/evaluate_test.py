import itertools

from absl.testing import absltest
from absl.testing import parameterized
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from jaxrecon.attack import evaluate as metrics
from jaxrecon import stats
from scipy import stats as sp_stats


def ssim_reference(a, b, window=3, sigma=1.5, mode="mirror", eps=1e-12):
  """SSIM written independently with scipy: 2-D Gaussian, 'same' correlation, the map averaged.

  mode 'mirror' (scipy's name for reflection without repeating the edge, torch's 'reflect') with eps 1e-12 is
  kornia.metrics.ssim, the reference's; mode 'constant' with eps 0 is pytorch-ssim's zero padding.
  """
  t = np.arange(window) - window // 2
  g = np.exp(-t ** 2 / (2 * sigma ** 2))
  g /= g.sum()
  w2 = np.outer(g, g)
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  maps = []
  for ch in range(a.shape[-1]):
    f = lambda img: ndimage.correlate(img, w2, mode=mode, cval=0.0)
    x, y = a[..., ch], b[..., ch]
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    maps.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2) + eps))
  return float(np.mean(maps))


def bicubic_reference(img, scale=0.5, a=-0.75):
  """torch's interpolate(mode='bicubic', align_corners=False) of one (H, W) image, by its definition, in loops."""
  def cubic(t):
    t = abs(t)
    if t <= 1:
      return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
      return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0

  def resize_1d(v):
    n = v.shape[0]
    out = []
    for i in range(int(np.floor(n * scale))):
      src = (i + 0.5) / scale - 0.5
      f = int(np.floor(src))
      out.append(sum(cubic(src - j) * v[min(max(j, 0), n - 1)] for j in range(f - 1, f + 3)))
    return np.array(out)
  rows = np.stack([resize_1d(r) for r in img])
  return np.stack([resize_1d(c) for c in rows.T]).T


class SSIMTest(parameterized.TestCase):

  @parameterized.parameters(*itertools.product([3, 7, 11], [1, 3], ["reflect", "zero"]))
  def test_matches_independent_implementation(self, window, channels, padding):
    rng = np.random.default_rng(window + channels)
    a = rng.uniform(size=(12, 10, channels))
    b = np.clip(a + 0.3 * rng.normal(size=a.shape), 0, 1)
    got = float(metrics.ssim(jnp.asarray(a), jnp.asarray(b), window=window, padding=padding))
    want = (ssim_reference(a, b, window) if padding == "reflect"
            else ssim_reference(a, b, window, mode="constant", eps=0.0))
    self.assertAlmostEqual(got, want, places=12)

  def test_default_is_the_references_reflection(self):
    rng = np.random.default_rng(5)
    a = rng.uniform(size=(28, 28, 1))
    b = np.clip(a + 0.5 * rng.normal(size=a.shape), 0, 1)
    got = float(metrics.ssim(jnp.asarray(a), jnp.asarray(b)))
    self.assertAlmostEqual(got, ssim_reference(a, b), places=12)
    self.assertGreater(abs(got - ssim_reference(a, b, mode="constant", eps=0.0)), 1e-4)

  def test_black_images_keep_the_eps_bias(self):
    # kornia's documented value: two black images score about 0.99998889 at data range 1
    z = jnp.zeros((6, 6, 1))
    self.assertAlmostEqual(float(metrics.ssim(z, z)), 1 - 1e-12 / (1e-4 * 9e-4 + 1e-12), places=12)
    self.assertAlmostEqual(float(metrics.ssim(z, z)), 0.99998889, places=8)

  def test_bad_padding(self):
    with self.assertRaisesRegex(ValueError, "padding"):
      metrics.ssim(jnp.zeros((4, 4, 1)), jnp.zeros((4, 4, 1)), padding="wrap")

  def test_identity_and_symmetry(self):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(2, 8, 8, 1))
    self.assertAlmostEqual(float(metrics.ssim(jnp.asarray(a), jnp.asarray(a))), 1.0, places=10)
    self.assertAlmostEqual(float(metrics.ssim(jnp.asarray(a), jnp.asarray(b))),
                           float(metrics.ssim(jnp.asarray(b), jnp.asarray(a))), places=12)
    self.assertLess(float(metrics.ssim(jnp.asarray(a), jnp.asarray(b))), 0.5)


class NCCTest(absltest.TestCase):

  def test_affine_invariant(self):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 20))
    b = np.concatenate([2.5 * a + 7.0, rng.normal(size=(2, 20))])
    c = np.asarray(metrics.ncc_matrix(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(np.diag(c[:, :3]), 1.0, rtol=1e-12)
    self.assertTrue(np.all(np.abs(c) <= 1 + 1e-12))

  def test_half_resolution_is_torch_bicubic(self):
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 32, 32, 3))
    got = np.asarray(metrics.half_resolution(jnp.asarray(img.reshape(2, -1)), (32, 32, 3)))
    got = got.reshape(2, 16, 16, 3)
    for i, c in itertools.product(range(2), range(3)):
      np.testing.assert_allclose(got[i, :, :, c], bicubic_reference(img[i, :, :, c]), rtol=1e-12, atol=1e-12)
    # a linear ramp is kept linear away from the clamped border: 2i + 0.5 in input units
    ramp = np.tile(np.arange(8.0), (8, 1))[..., None]
    half = np.asarray(metrics.half_resolution(jnp.asarray(ramp.reshape(1, -1)), (8, 8, 1))).reshape(4, 4)
    np.testing.assert_allclose(half[:, 1:3], np.tile([2.5, 4.5], (4, 1)), rtol=1e-12)

  def test_colour_matching_is_the_references_per_channel_l2(self):
    # the reference: standardize each channel of each image (unbiased std), then squared L2 over all pixels
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 6 * 6 * 3)), rng.normal(size=(40, 6 * 6 * 3))
    b[:5] = a * np.tile([1.0, 5.0, 0.1], 36) + rng.normal(size=a.shape)  # channels on very different scales

    def std(v):
      v = v.reshape(v.shape[0], -1, 3)
      return ((v - v.mean(axis=1, keepdims=True)) / v.std(axis=1, ddof=1, keepdims=True)).reshape(len(v), -1)
    dist = ((std(a)[:, None, :] - std(b)[None, :, :]) ** 2).sum(-1)
    c = np.asarray(metrics.ncc_matrix(jnp.asarray(a), jnp.asarray(b), channels=3))
    np.testing.assert_array_equal(np.argmax(c, axis=1), np.argmin(dist, axis=1))
    np.testing.assert_allclose(dist, 2 * 35 * (3 - 3 * c), rtol=1e-10)


class EvaluateTest(absltest.TestCase):

  def test_exact_candidates_score_one_and_count(self):
    rng = np.random.default_rng(2)
    imgs = rng.uniform(size=(6, 8 * 8))
    imgs[:, 0], imgs[:, 1] = 0.0, 1.0  # min 0 and max 1: min-max scaling leaves them unchanged
    mean = imgs.mean(axis=0)
    x = imgs - mean
    noise = rng.uniform(-1, 1, size=(5, 64))
    pool = np.concatenate([noise, x[:3]])  # five noise candidates, then exact copies of training images 0-2
    ev = metrics.evaluate(jnp.asarray(x), jnp.asarray(pool), jnp.asarray(mean), (8, 8, 1))
    np.testing.assert_allclose(ev.ssim_train[:3], 1.0, rtol=1e-10)
    np.testing.assert_array_equal(ev.nearest_cand[:3], [5, 6, 7])
    self.assertEqual(ev.n_good, int(np.sum(ev.ssim_train > 0.4)))
    self.assertGreaterEqual(ev.n_good, 3)
    self.assertEqual(ev.pool_size, 8)
    np.testing.assert_allclose(ev.dist_train[:3], 0.0, atol=1e-6)
    np.testing.assert_array_equal(ev.nearest_train[5:], [0, 1, 2])
    np.testing.assert_allclose(ev.ssim_cand[5:], 1.0, rtol=1e-10)

  def test_greedy_match(self):
    rng = np.random.default_rng(3)
    x, pool = rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    ti, ci, dist = metrics.greedy_match(x, pool)
    self.assertLen(set(ti), 5)
    self.assertLen(set(ci), 5)
    self.assertTrue(np.all(np.diff(dist) >= 0))
    full = np.linalg.norm(x[:, None] - pool[None], axis=-1)
    self.assertAlmostEqual(dist[0], full.min(), places=10)
    np.testing.assert_allclose(dist, full[ti, ci], rtol=1e-8)

  def test_pool_candidates(self):
    c = np.arange(4 * 3 * 2, dtype=float).reshape(4, 3, 2)
    c[2, 0, 0] = np.nan
    pool, cfg, idx = metrics.pool_candidates(c, np.array([3.0, 1.0, 0.5, np.inf]), top=0)
    np.testing.assert_array_equal(cfg, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(pool, c[[1, 0]].reshape(6, 2))
    np.testing.assert_array_equal(idx, [0, 1, 2, 0, 1, 2])
    pool, cfg, _ = metrics.pool_candidates(c, np.array([3.0, 1.0, 0.5, 0.1]), top=2)
    np.testing.assert_array_equal(np.unique(cfg), [1, 3])  # config 2 has a non-finite candidate


class RankingTest(absltest.TestCase):

  def test_auc_matches_pair_count(self):
    rng = np.random.default_rng(4)
    s = rng.integers(0, 5, size=40).astype(float)  # many ties
    pos = rng.uniform(size=40) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a in s[pos] for b in s[~pos]]
    self.assertAlmostEqual(stats.auc(s, pos), float(np.mean(pairs)), places=12)
    self.assertEqual(stats.auc(np.arange(4.0), np.array([0, 0, 1, 1], bool)), 1.0)
    # scipy's Mann-Whitney U / (n_pos n_neg), and the infinite scores ranked at the ends
    u = sp_stats.mannwhitneyu(s[pos], s[~pos]).statistic
    self.assertAlmostEqual(stats.auc(s, pos), u / (pos.sum() * (~pos).sum()), places=12)
    self.assertEqual(stats.auc(np.array([-np.inf, 0.0, 1.0, np.inf]), np.array([0, 0, 1, 1], bool)), 1.0)
    self.assertTrue(np.isnan(stats.auc(s, np.ones(40, bool))))

  def test_margin_score(self):
    q = np.array([2.0, 2.0, 2.0, 1.0, 4.0, 0.01, -1.0])
    s = metrics.margin_score(q)
    self.assertEqual(s[0], 0.0)  # estimated margin: the median of the large positive margins, 2
    self.assertEqual(s[-1], -np.inf)
    self.assertAlmostEqual(s[3], -np.log(2.0))
    r = metrics.ranking_quality(s, np.array([1, 1, 1, 0, 0, 0, 0], bool))
    self.assertEqual(r["auc"], 1.0)
    self.assertEqual(r["precision_at_k"], 1.0)


if __name__ == "__main__":
  absltest.main()
