"""The benchmarks' timing helpers: what they call and what they return, checked by counting calls and against
a sleep of known length (not against themselves)."""

import time

from absl.testing import absltest
import jax.numpy as jnp

from jaxrecon import timing


class TimingTest(absltest.TestCase):

  def test_call_times_warms_up_once_and_times_each_call(self):
    calls = []

    def fn():
      calls.append(1)
      time.sleep(0.01)
      return jnp.zeros(())

    times = timing.call_times(fn, 3)
    self.assertLen(calls, 4)  # one untimed warm-up, then the three timed
    self.assertLen(times, 3)
    for t in times:
      self.assertBetween(t, 0.009, 1.0)  # each timed call contains its 10 ms sleep

  def test_matmul_peak_is_flops_per_second(self):
    peak = timing.matmul_peak("float32", size=64, repeats=2)
    self.assertGreater(peak, 1e6)  # any CPU does > 1 MFLOP/s; a unit mistake (GFLOP/s) would give < 1e3

  def test_xla_flops_counts_a_two_layer_forward_by_hand(self):
    # m x d inputs through a d x w matmul, relu, a w x 1 matmul: 2 m d w + 2 m w multiply-adds (+ m w relu)
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    m, d, w = 30, 50, 40
    f = jax.jit(lambda x, w1, w2: jax.nn.relu(x @ w1) @ w2)
    args = (jnp.ones((m, d)), jnp.ones((d, w)), jnp.ones((w, 1)))
    self.assertBetween(timing.xla_flops(f, *args), 2 * m * d * w + 2 * m * w, 2 * m * d * w + 2 * m * w + 2 * m * w)


if __name__ == "__main__":
  absltest.main()
