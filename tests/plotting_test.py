"""Figures from library code leave the caller's matplotlib alone (no backend switch, no pyplot state)."""

import os
import subprocess
import sys

from absl.testing import absltest

import conftest

PROBE = r"""
import sys
import matplotlib
matplotlib.use("svg")  # a notebook's choice, say
from jaxrecon import plotting
rows = [{"step": s, "eps_rel": 0.5 / s, "eps_rel_relaxed": 0.4 / s, "cert_eps_rel": 1.0, "delta": 1e-3,
         "log10_loss": -s, "q_min": 1.0 if s > 1 else -1.0, "kink_tol": 1e-3} for s in (1, 2, 5, 10)]
plotting.kkt_residuals(rows, sys.argv[1], title="probe")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


class PlottingTest(absltest.TestCase):

  def test_library_figures_touch_no_global_state(self):
    path = os.path.join(self.create_tempdir().full_path, "kkt.png")
    env = dict(os.environ, PYTHONPATH=conftest.ROOT, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", PROBE, path], capture_output=True, text=True, env=env,
                          timeout=300, check=True)
    self.assertEqual(proc.stdout.split(), ["svg", "False"])  # before issue 12: "agg True"
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertEqual([n for n in os.listdir(os.path.dirname(path)) if n != "kkt.png"], [])  # no temp left


class ReportTest(absltest.TestCase):

  def test_a_capped_relaxed_residual_reads_as_an_upper_bound(self):
    from jaxrecon import report  # noqa: PLC0415
    capped = report.fmt_relaxed({"eps_rel_relaxed": 0.476939, "freed_pairs": 512, "kink_pairs": 97_000})
    self.assertEqual(capped, "relaxed <= 0.4769 (an upper bound: 512 of 97,000 kink pairs freed)")
    self.assertEqual(report.fmt_relaxed({"eps_rel_relaxed": 0.05, "freed_pairs": 40, "kink_pairs": 40}),
                     "relaxed 0.0500")
    self.assertEqual(report.fmt_loss(0.0, -82962.5), "10^-82962.5")  # past any float: printed as 10^-x


if __name__ == "__main__":
  absltest.main()
