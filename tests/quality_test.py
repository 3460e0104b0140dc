"""jaxrecon/experiments/quality.py and scripts/bench_quality.py: the time-to-quality benchmark's bookkeeping
(checked on hand-made rows) and a smoke run of the whole benchmark."""

import json
import os

from absl.testing import absltest
import pytest
import numpy as np

import data_test
from jaxrecon.experiments import quality
from scripts_test import run_script

KEYS = [k for k, _ in quality.LEVELS]


def row(path, wall_s, **counts):
  return {"path": path, "wall_s": wall_s, **{k: counts.get(k, 0) for k in KEYS}}


class TableTest(absltest.TestCase):

  def test_time_to_the_references_levels(self):
    rows = [row("reference", 100.0, clip_n_good=3), row("reference", 200.0, clip_n_good=5, minmax_n_good=1),
            row("reference", 300.0, clip_n_good=4),  # a pooled count may fall: the level is the best seen
            row("fast", 10.0, clip_n_good=4), row("fast", 20.0, clip_n_good=6),
            row("slow", 50.0, clip_n_good=2)]
    table = {e["level"]: e for e in quality.tabulate(rows, ["fast", "slow"])}
    e = table["clip_n_good"]
    self.assertEqual((e["reference_count"], e["reference_s"], e["fast_s"]), (5, 200.0, 20.0))
    self.assertAlmostEqual(e["fast_speedup"], 10.0)
    self.assertIsNone(e["slow_s"])  # never reached 5
    self.assertNotIn("slow_speedup", e)
    self.assertEqual(e["slow_final_count"], 2)
    m = table["minmax_n_good"]
    self.assertEqual((m["reference_count"], m["reference_s"], m["fast_s"]), (1, 200.0, None))
    z = table["l2_closer_than_heldout"]  # the reference reached nothing: no level, no time
    self.assertEqual((z["reference_count"], z["reference_s"], z["fast_s"]), (0, None, None))
    self.assertEqual(quality.time_to(rows[3:5], "clip_n_good", 4), 10.0)


class BenchSmokeTest(absltest.TestCase):

  @pytest.mark.slow
  def test_tiny_run_writes_the_run_folder(self):
    d = self.create_tempdir().full_path
    data_test.write_mnist(d, n_train=40, n_test=30)
    out = os.path.join(d, "q.json")
    run_script("bench_quality.py", "--tiny", f"--data_dir={d}", f"--workdir={d}/run", f"--out={out}",
               "--levers=")
    with open(out) as f:
      s = json.load(f)
    self.assertEqual(s["reference_configs_run"], 2)
    self.assertEqual({e["level"] for e in s["table"]}, set(KEYS))
    self.assertIn("matmul_peak_gflops", s)
    self.assertEqual(set(s["final"]), {"reference", "fast"})
    for name in ("quality.png", "metrics.jsonl", "quality.npz", "config.json"):
      self.assertTrue(os.path.exists(os.path.join(d, "run", name)), name)
    rows = [json.loads(line) for line in open(os.path.join(d, "run", "metrics.jsonl"))]
    ref = [r for r in rows if r["path"] == "reference"]
    self.assertEqual([r["configs"] for r in ref], [1, 2])
    self.assertTrue(all(a["wall_s"] < b["wall_s"] for a, b in zip(ref, ref[1:])))  # the clock only grows
    with np.load(os.path.join(d, "run", "quality.npz")) as z:
      self.assertEqual(z["reference_l2_curves"].shape, (2, 6))  # a curve per evaluation, one value per image
    self.assertTrue(os.path.exists(os.path.join(d, "q.png")))


if __name__ == "__main__":
  absltest.main()
