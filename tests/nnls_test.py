from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from jaxrecon import nnls


def problem(seed, n, p, dup=False):
  rng = np.random.default_rng(seed)
  J = rng.normal(size=(n, p))
  if dup:
    J[1] = J[0]
  t = rng.normal(size=p) + 0.5 * J.sum(axis=0) / n
  return J, t


class NNLSTest(chex.TestCase, parameterized.TestCase):

  @parameterized.product(seed=[0, 1, 2], shape=[(5, 8), (20, 50), (40, 30), (60, 200)],
                         warm=[0, 300])
  def test_matches_scipy(self, seed, shape, warm):
    J, t = problem(seed, *shape)
    ref, _ = optimize.nnls(J.T, t)
    G, b = jnp.asarray(J @ J.T), jnp.asarray(J @ t)
    res = nnls.nnls_gram(G, b, warm_iters=warm)
    self.assertTrue(bool(res.converged))
    # compare objective and solution (solution unique when J has full row rank)
    obj = lambda x: np.linalg.norm(t - J.T @ x)
    self.assertLessEqual(obj(np.asarray(res.x)), obj(ref) * (1 + 1e-10) + 1e-12)
    if shape[0] <= shape[1]:
      np.testing.assert_allclose(res.x, ref, atol=1e-8)
    self.assertTrue(bool(jnp.all(res.x >= 0)))

  def test_degenerate_duplicate_rows(self):
    J, t = problem(0, 10, 20, dup=True)
    ref, _ = optimize.nnls(J.T, t)
    res = nnls.nnls_gram(jnp.asarray(J @ J.T), jnp.asarray(J @ t))
    np.testing.assert_allclose(np.linalg.norm(t - J.T @ np.asarray(res.x)),
                               np.linalg.norm(t - J.T @ ref), rtol=1e-8, atol=1e-10)

  def test_float32(self):
    J, t = problem(3, 20, 60)
    ref, _ = optimize.nnls(J.T, t)
    res = nnls.nnls_gram(jnp.asarray(J @ J.T, jnp.float32), jnp.asarray(J @ t, jnp.float32))
    self.assertEqual(res.x.dtype, jnp.float32)
    np.testing.assert_allclose(res.x, ref, atol=2e-3)

  def test_vmap_equals_loop(self):
    probs = [problem(s, 12, 30) for s in range(4)]
    G = jnp.stack([jnp.asarray(J @ J.T) for J, _ in probs])
    b = jnp.stack([jnp.asarray(J @ t) for J, t in probs])
    batched = jax.jit(jax.vmap(lambda g, c: nnls.nnls_gram(g, c).x))(G, b)
    for i in range(4):
      np.testing.assert_allclose(batched[i], nnls.nnls_gram(G[i], b[i]).x, atol=1e-10)


if __name__ == "__main__":
  absltest.main()
