"""End-to-end smoke tests: each script runs on tiny sizes in a temp workdir; what it wrote is checked."""

import contextlib
import io
import json
import re
import os
import runpy
import subprocess
import sys

from absl import app
from absl import flags
from absl.testing import absltest
import pytest

import jax
import numpy as np
from scipy.spatial import distance as sp_distance
from scipy import stats as sp_stats

import conftest
import data_test
import metric_writers_test

SCRIPTS = os.path.join(conftest.ROOT, "scripts")
# Tiny runs skip the relaxed KKT QP (its compile is a third of a tiny run's time); the tests of the relaxed
# residual itself ask for it (test_train_then_kkt, kkt_test).
TINY = ["--n=20", "--d=6", "--n_test=10", "--width=8", "--init_scales=0.3", "--steps=30",
        "--log_every=10", "--relaxed=False"]


COMMANDS = "jaxrecon.commands"  # the package whose modules define the commands' flags


def run_script(name, *args, check=True):
  """Runs scripts/<name> with args as `python scripts/<name> args` would, in this process (its flags are
  removed afterwards); JAXRECON_TEST_SUBPROCESS=1 runs it in a fresh interpreter instead."""
  if os.environ.get("JAXRECON_TEST_SUBPROCESS"):
    env = dict(os.environ, PYTHONPATH=conftest.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args], capture_output=True,
                          text=True, env=env, timeout=600)
  else:
    proc = _run_in_process(name, args)
  if check and proc.returncode != 0:
    raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
  return proc


def _run_in_process(name, args):
  fv = flags.FLAGS
  app.define_help_flags()  # absl's own (defined once per process): kept
  before = set(fv)
  package = sys.modules.get(COMMANDS)
  for mod in [m for m in sys.modules if m.startswith(COMMANDS + ".")]:  # re-imported by the script, so that
    sys.modules.pop(mod)                                                 # they define their flags again
    if package is not None and hasattr(package, mod.rsplit(".", 1)[1]):
      delattr(package, mod.rsplit(".", 1)[1])
  out, err = io.StringIO(), io.StringIO()
  argv, code = sys.argv, 0
  sys.argv = [os.path.join(SCRIPTS, name), *args]
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      runpy.run_path(sys.argv[0], run_name="__main__")
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if not isinstance(e.code, (int, type(None))):
      err.write(str(e.code) + "\n")
  finally:
    sys.argv = argv
    fv.unparse_flags()
    for flag in set(fv) - before:
      delattr(fv, flag)
    fv.mark_as_parsed()  # as conftest left them (absltest's create_tempdir reads --test_tmpdir)
  return subprocess.CompletedProcess(name, code, out.getvalue(), err.getvalue())


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class ScriptsTest(absltest.TestCase):

  def test_train_then_kkt(self):
    d = self.create_tempdir().full_path
    tb = os.path.join(d, "tb") if metric_writers_test.has_tensorboardx() else ""
    out = run_script("train.py", f"--workdir={d}", *TINY, "--optimizer=normalized_gd", "--lr=0.1",
                     f"--tensorboard_dir={tb}")
    self.assertIn("step       30", out.stdout)
    if tb:  # --tensorboard_dir: the metrics.jsonl rows as TensorBoard scalars (float32 in the event file)
      rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
      got = metric_writers_test.read_events(tb)["train/loss"]
      self.assertEqual([s for s, _ in got], [r["step"] for r in rows])
      np.testing.assert_allclose([v for _, v in got], [r["loss"] for r in rows], rtol=1e-6)
    with open(os.path.join(d, "summary.json")) as f:
      summary = json.load(f)
    for k in ("final_loss", "train_acc", "test_acc", "q_min", "normalized_margin", "eps_rel", "delta",
              "steps", "wall_s"):
      self.assertIn(k, summary)
    self.assertEqual(summary["steps"], 30)
    self.assertTrue(os.listdir(os.path.join(d, "checkpoints")))
    run_script("kkt.py", f"--train_workdir={d}", "--relaxed=True")
    rows = read_jsonl(os.path.join(d, "kkt", "kkt.jsonl"))
    self.assertEqual([r["step"] for r in rows], [1, 2, 5, 10, 20, 30])
    for k in ("step", "loss", "normalized_margin", "eps_rel", "delta", "support_size", "eps_rel_relaxed"):
      self.assertIn(k, rows[0])
    self.assertGreater(os.path.getsize(os.path.join(d, "kkt", "kkt.png")), 1000)
    with open(os.path.join(d, "kkt", "summary.json")) as f:
      self.assertEqual(json.load(f)["final"]["step"], 30)
    with open(os.path.join(d, "summary.json")) as f:
      self.assertIn("final_loss", json.load(f))  # the training summary is kept
    # re-running a finished workdir with more steps resumes it
    out = run_script("train.py", f"--workdir={d}", *TINY[:-3], "--steps=40", "--log_every=10",
                     "--relaxed=False", "--optimizer=normalized_gd", "--lr=0.1")  # same config as the first run
    self.assertIn("resuming", out.stdout)
    # --verbosity=-1 silences the progress lines (absl's flag); the run still happens
    out = run_script("train.py", f"--workdir={d}", *TINY[:-3], "--steps=50", "--log_every=10",
                     "--relaxed=False", "--optimizer=normalized_gd", "--lr=0.1", "--verbosity=-1")
    self.assertEqual((out.stdout, out.stderr), ("", ""))
    self.assertEqual(read_jsonl(os.path.join(d, "metrics.jsonl"))[-1]["step"], 50)

  @pytest.mark.slow
  def test_main_job(self):
    # README's first command at a toy size (10 bundled digits, 1,000 training steps, 4 x 1,500 attack steps):
    # its headline's sign holds here too: the attack's credited count is above every null's.
    d = self.create_tempdir().full_path
    out = run_script("main.py", f"--workdir={d}", "--n=10", "--n_test=200", "--steps=1000", "--log_every=500",
                     "--checkpoint_mantissas=1", "--relaxed=False", "--configs=4", "--attack_steps=1500",
                     "--split_grid=-4,4,9", "--figure_pairs=10")
    with open(os.path.join(d, "summary.json")) as f:
      summary = json.load(f)
    self.assertIn("headline", summary)
    # the headline is printed as labelled lines, each followed by what to expect
    for line in summary["report"]:
      self.assertIn(line, out.stdout)
    self.assertEqual([r.split()[0] for r in summary["report"] if not r.startswith(" ")],
                     ["training", "KKT", "split", "attack"])
    self.assertEqual(summary["train"]["n_train"], 10)
    cr = summary["attack"]["credit"]
    nulls = {k: v["n_credited_max"] for k, v in cr["nulls"].items()}
    self.assertEqual(set(nulls), {"heldout", "mixture_convex", "mixture_signed", "mean"})
    self.assertGreater(cr["attack"]["n_credited"], max(nulls.values()), nulls)  # 7 vs at most 3 when written
    self.assertTrue(cr["beats_every_null"])
    self.assertIn("beyond every null", summary["report"][-2])
    self.assertNotIn("NOT beyond", summary["report"][-2])
    self.assertIn("chance level", summary["report"][-1])
    self.assertTrue(os.path.exists(os.path.join(d, "attack", "credited.png")))
    # step-keyed tables in numeric order
    self.assertEqual(list(summary["eps_rel_by_step"]), sorted(summary["eps_rel_by_step"], key=int))
    self.assertTrue(os.path.exists(os.path.join(d, "train", "kkt", "kkt.png")))
    # the split stage studied every checkpoint after step 0 and put its result in the headline
    steps = sorted(int(s) for s in summary["split"]["by_step"])
    self.assertEqual(steps, sorted(int(s) for s in summary["eps_rel_by_step"] if int(s) > 0))
    self.assertIn("Split study", summary["headline"])
    self.assertTrue(os.path.exists(os.path.join(d, "split", "split_approx.png")))

  def test_bad_input_is_a_clear_error(self):
    d = self.create_tempdir().full_path
    proc = run_script("train.py", f"--workdir={d}", "--dataset=mnist", check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("needs data_dir", proc.stderr)
    proc = run_script("train.py", f"--workdir={d}", "--dataset=mnist", f"--data_dir={d}/none",
                      check=False)
    self.assertEqual(proc.returncode, 1)
    # one line naming the folder, no traceback (issue 12)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertEqual(proc.stderr.strip().splitlines()[-1], f"error: {d}/none: data directory not found")
    # an enum flag lists its allowed values and nothing is written
    fresh = os.path.join(d, "fresh")
    proc = run_script("train.py", f"--workdir={fresh}", "--loss=foo", check=False)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("--loss", proc.stderr)
    self.assertIn("logistic", proc.stderr)
    self.assertFalse(os.path.exists(fresh))

  def test_a_read_only_folder_is_one_line(self):
    d = self.create_tempdir().full_path
    ro = os.path.join(d, "ro")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    try:
      if os.access(ro, os.W_OK):  # root writes anywhere: the run folder's code sees EROFS as on a read-only mount
        from unittest import mock  # noqa: PLC0415
        from jaxrecon import workdir as wd  # noqa: PLC0415

        class ReadOnlyOS:
          def __getattr__(self, name):
            return getattr(os, name)

          def makedirs(self, path, *a, **k):
            raise OSError(30, "Read-only file system", path)
        with mock.patch.object(wd, "os", ReadOnlyOS()):
          proc = run_script("train.py", f"--workdir={ro}/run", *TINY, check=False)
      else:
        proc = run_script("train.py", f"--workdir={ro}/run", *TINY, check=False)
    finally:
      os.chmod(ro, 0o755)
    self.assertEqual(proc.returncode, 1)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr.strip().splitlines()[-1], f"^error: {ro}/run: (Read-only file system|Permission denied)")

  def test_help_lists_the_jobs_own_flags(self):
    proc = run_script("train.py", "--help", check=False)
    self.assertEqual(proc.returncode, 0)  # absl's --help exits 1; the commands exit 0
    out = proc.stdout
    for flag in ("--dataset", "--steps", "--optimizer", "--workdir", "<float32|float64>"):
      self.assertIn(flag, out)
    out = run_script("attack.py", "--help", check=False).stdout
    for flag in ("--configs", "--lr_x", "--prior", "--train_workdir"):
      self.assertIn(flag, out)
    # grouped by stage (issue 26): the main job's flags under their stage's heading, in this order
    out = run_script("main.py", "--help", check=False).stdout
    heads = [line for line in out.splitlines() if line.endswith(" flags:")]
    self.assertEqual(heads, ["command flags:", "data flags:", "training flags:", "KKT flags:", "attack flags:",
                             "attack sweep flags:", "evaluation flags:"])
    section = lambda head: out[out.index(head):].split("\n\n")[0]  # noqa: E731
    self.assertIn("--lr_x:", section("attack sweep flags:"))
    self.assertIn("--relaxed:", section("KKT flags:"))
    self.assertIn("--attack_steps:", section("attack flags:"))
    self.assertIn("--split_grid:", section("command flags:"))
    # --tensorboard_dir on the jobs that take a writer; a bench script's --help lists the flags it defines
    self.assertIn("--tensorboard_dir", run_script("train.py", "--help", check=False).stdout)
    proc = run_script("bench_quality.py", "--help", check=False)
    self.assertEqual(proc.returncode, 0)
    for flag in ("--ref_configs", "--levers", "--tiny"):
      self.assertIn(flag, proc.stdout)

  @pytest.mark.slow
  def test_bench_train(self):
    d = self.create_tempdir().full_path
    out = os.path.join(d, "bench.json")
    run_script("bench_train.py", f"--out={out}", "--what=step_time,nnls,schedules", "--repeats=1",
               "--n=20", "--d=6", "--hidden=8,8", "--width=8", "--budget_s=1",
               "--schedules=normalized_gd:lr=0.1/lr_cap=10", f"--workdir={d}/s",
               "--relaxed=False")
    with open(out) as f:
      res = json.load(f)
    self.assertGreater(res["step_time"]["float64"]["ms_per_step"], 0)
    self.assertTrue(res["nnls"]["float64"]["converged"])
    self.assertEqual(set(res["schedules"]), {"normalized_gd:lr=0.1/lr_cap=10"})
    self.assertTrue(os.path.exists(os.path.join(d, "bench_eps_vs_wall.png")))

  @pytest.mark.slow
  def test_attack_on_images(self):
    d = self.create_tempdir().full_path
    data_test.write_mnist(d, n_train=40, n_test=20)
    tr = os.path.join(d, "train")
    run_script("train.py", f"--workdir={tr}", "--dataset=mnist", f"--data_dir={d}", "--n=10", "--n_test=0", "--width=8",
               "--init_scales=0.3", "--steps=20", "--log_every=10", "--relaxed=False", "--lr=0.1")
    out = os.path.join(d, "attack")
    proc = run_script("attack.py", f"--train_workdir={tr}", f"--workdir={out}", "--configs=3", "--steps=12",
                      "--log_every=5", "--m=6", "--lr_x=0.01,0.1")
    self.assertIn("candidate-steps/s", proc.stdout)
    self.assertIn("left", proc.stdout)
    with open(os.path.join(out, "summary.json")) as f:
      summary = json.load(f)
    for k in ("n_good_ssim_0.4", "mean_top10_ssim", "pool_size", "configs", "steps", "wall_s", "baselines",
              "ranking"):
      self.assertIn(k, summary)
    self.assertEqual((summary["configs"], summary["steps"], summary["pool_size"]), (3, 12, 18))
    self.assertEqual(summary["attacked_step"], 20)
    with np.load(os.path.join(out, "candidates.npz")) as z:
      self.assertEqual(z["x"].shape, (3, 6, 784))
      self.assertEqual(z["ssim_train"].shape, (10,))
    rows = read_jsonl(os.path.join(out, "metrics.jsonl"))  # one flat row per (step, configuration)
    self.assertEqual([(r["step"], r["config"]) for r in rows], [(s, c) for s in (5, 10, 12) for c in range(3)])
    self.assertTrue(all(isinstance(r["loss"], float) for r in rows))
    self.assertGreater(os.path.getsize(os.path.join(out, "pairs.png")), 1000)
    self.assertGreater(os.path.getsize(os.path.join(out, "curve.png")), 1000)
    # the evaluation can be re-run from the saved candidates with other settings
    from jaxrecon.experiments import attack as reconstruct  # noqa: PLC0415
    again = reconstruct.reevaluate(out, log=lambda _: None, ssim_window=5, pool_top=1)
    self.assertEqual(again.pool_size, 6)
    self.assertEqual(again.configs, 3)
    self.assertEqual(again.kind, "images")
    self.assertEqual(again.images.minmax.n_good, again.summary["n_good_ssim_0.4"])
    with open(os.path.join(out, "summary.json")) as f:
      self.assertEqual(json.load(f)["pool_size"], 6)
    # near-duplicates dropped before the evaluation (credit.distinct): the pool shrinks, the count is recorded
    again = reconstruct.reevaluate(out, log=lambda _: None, distinct=0.5)
    self.assertEqual(again.summary["pool_before_distinct"], 18)
    self.assertBetween(again.pool_size, 1, 18)
    self.assertEqual(again.summary["credit"]["pool_size"], again.pool_size)
    # study_chance on the attack's candidates
    run_script("study_chance.py", f"--attack_workdir={out}", f"--workdir={d}/chance")
    with open(os.path.join(d, "chance", "summary.json")) as f:
      ch = json.load(f)
    self.assertEqual((ch["pool_size"], ch["n_train"], ch["n_heldout"]), (18, 10, 10))
    self.assertBetween(ch["attack"]["closer_l2"]["fraction"], 0.0, 1.0)
    self.assertGreater(ch["n_null"], 0)  # the null (fresh test points as candidates) is run in the study
    self.assertEqual(set(ch["null"]), set(ch["attack"]))
    with np.load(os.path.join(d, "chance", "distances.npz")) as z:
      self.assertEqual(z["dist_train"].shape, (18,))
    # an earlier checkpoint, a grid sweep, and a checkpoint that does not exist
    run_script("attack.py", f"--train_workdir={tr}", f"--workdir={out}2", "--step=10", "--sweep=grid",
               "--lr_x=0.01,0.1", "--init_scale=0.01", "--lambda_min=0.4", "--alpha=20", "--steps=3", "--m=4")
    with open(os.path.join(out + "2", "summary.json")) as f:
      self.assertEqual((json.load(f)["configs"]), 2)
    # the reference protocol is one flag away; a flag given on the command line still wins over the preset
    run_script("attack.py", f"--train_workdir={tr}", f"--workdir={out}4", "--protocol=reference", "--steps=6",
               "--configs=2", "--m=4", "--dtype=float32", "--prune_at=3", "--log_every=3")
    with open(os.path.join(out + "4", "config.json")) as f:
      rc = json.load(f)["reconstruct"]
    self.assertEqual((rc["attack"]["dtype"], rc["attack"]["steps"], rc["sweep"]["configs"]), ("float32", 6, 2))
    self.assertEqual((rc["theta_norm"], rc["prune_at"], rc["sweep"]["lr_x"]), (0.0, [3], [1e-5, 1.0]))
    rows = read_jsonl(os.path.join(out + "4", "metrics.jsonl"))  # halving: 2 configurations, then the better one
    self.assertEqual([(r["step"], r["config"]) for r in rows][:2], [(3, 0), (3, 1)])
    self.assertLen(rows, 3)
    with open(os.path.join(out, "config.json")) as f:  # the default is the fast protocol
      self.assertEqual(json.load(f)["reconstruct"]["theta_norm"], 10.0)
    proc = run_script("attack.py", f"--train_workdir={tr}", f"--workdir={out}3", "--step=7", check=False)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("no checkpoint at step 7", proc.stderr)
    proc = run_script("attack.py", f"--train_workdir={d}/none", f"--workdir={out}3", check=False)
    self.assertIn("not a training workdir", proc.stderr)

  def test_bench_credit(self):
    d = self.create_tempdir().full_path
    out = os.path.join(d, "credit.json")
    run_script("bench_credit.py", f"--out={out}", "--n=50", "--size=200")
    with open(out) as f:
      res = json.load(f)
    rates = res["sphere_d784"]
    self.assertEqual(len([k for k in rates if k.startswith(("convex", "signed"))]), 8)
    self.assertLess(max(v for k, v in rates.items() if k.startswith(("convex", "signed"))), 0.05)
    self.assertGreaterEqual(rates["copies_0.5"], 0.98)

  @pytest.mark.slow
  def test_bench_flagship_and_floor(self):
    # the flagship recipe at a toy size on the bundled digits, then the floor diagnosis on its training run
    d = self.create_tempdir().full_path
    toy = (f"--workdir={d}/run", f"--out={d}/out", "--n=10", "--width=8,8", "--steps=30", "--configs=2",
           "--attack_steps=5")
    run_script("bench_flagship.py", *toy, "--stages=train")  # the training alone; the second call reuses it
    self.assertFalse(os.path.exists(os.path.join(d, "run", "attack")))
    run_script("bench_flagship.py", *toy)
    with open(os.path.join(d, "out", "summary.json")) as f:
      s = json.load(f)
    self.assertEqual(s["n_train"], 10)
    self.assertEqual(set(s["recovery_measure"]["nulls_max"]), {"heldout", "mixture_convex", "mixture_signed", "mean"})
    self.assertEqual(s["attack"]["layer_weights"], [1.0, 0.0, 1.0])
    for name in ("credited.png", "pairs.png", "command.txt"):
      self.assertTrue(os.path.exists(os.path.join(d, "out", name)), name)
    run_script("bench_floor.py", f"--train_workdir={d}/run/train", f"--out={d}/floor.json", "--steps=30")
    with open(os.path.join(d, "floor.json")) as f:
      row = json.load(f)["rows"][0]
    self.assertEqual(row["step"], 30)
    # the floor's parts add up to the exact eps_rel the KKT job reports for the same checkpoint
    self.assertAlmostEqual(row["eps_rel"], s["training"]["eps_rel"], places=6)
    self.assertLen(row["truth_floor_sq"], 3)

  def test_bench_leakage_seeds(self):
    # two seeds' study_leakage folders (written by hand: the aggregation is what is tested), a paired test by
    # hand: diffs [3, 1] -> sign patterns (+-3 +-1) / 2 reach |2| only with equal signs: p = 2 / 4
    from jaxrecon import workdir as wd  # noqa: PLC0415
    d = self.create_tempdir().full_path
    for seed, (gd, adam) in enumerate(((5, 2), (4, 3))):
      w = os.path.join(d, f"s{seed}")
      rows = []
      for recipe, credited in (("gd", gd), ("adam", adam)):
        os.makedirs(os.path.join(w, f"attack_{recipe}_theta"))
        wd.write_json(os.path.join(w, f"attack_{recipe}_theta", "summary.json"), {"credit": {
            "attack": {"n_credited": credited}, "n_train": 100, "pool_size": 1600, "beats_every_null": credited > 3,
            "nulls": {"heldout": {"n_credited_max": 3}, "mean": {"n_credited_max": 0}}}})
        rows.append({"recipe": recipe, "eps_rel": 0.3, "attack_theta": {"clip_beating_heldout": 0}})
      wd.write_jsonl(os.path.join(w, "metrics.jsonl"), rows)
      # an attack run beside the study (jaxrecon-attack on its train_signum folder): counted, eps_rel from training
      os.makedirs(os.path.join(w, "attack_signum_theta"))
      os.makedirs(os.path.join(w, "train_signum"))
      wd.write_json(os.path.join(w, "train_signum", "summary.json"), {"eps_rel": 0.99})
      wd.write_json(os.path.join(w, "attack_signum_theta", "summary.json"), {"credit": {
          "attack": {"n_credited": 0}, "n_train": 100, "pool_size": 1600, "beats_every_null": False,
          "nulls": {"heldout": {"n_credited_max": 3}, "mean": {"n_credited_max": 0}}}})
    out = os.path.join(d, "seeds.json")
    run_script("bench_leakage_seeds.py", f"--workdirs={d}/s0,{d}/s1", f"--out={out}")
    with open(out) as f:
      res = json.load(f)
    self.assertEqual(res["recipes"]["gd"]["credited"], [5, 4])
    self.assertEqual(res["recipes"]["gd"]["seeds_beating_every_null"], 2)
    self.assertEqual(res["recipes"]["adam"]["seeds_beating_every_null"], 0)
    self.assertEqual(res["paired"]["adam - gd"]["diffs"], [-3, -1])
    self.assertEqual(res["paired"]["adam - gd"]["sign_flip_p"], 0.5)
    self.assertEqual(res["recipes"]["signum"]["credited"], [0, 0])
    self.assertEqual(res["recipes"]["signum"]["eps_rel"], [0.99, 0.99])

  @pytest.mark.slow
  def test_bench_attack(self):
    d = self.create_tempdir().full_path
    out = os.path.join(d, "bench.json")
    run_script("bench_attack.py", f"--out={out}", "--sizes=small", "--dtypes=float32", "--sweeps=1,2",
               "--steps=2", "--repeats=1")
    with open(out) as f:
      res = json.load(f)
    r = res["runs"][0]
    self.assertGreater(r["sweep2"]["candidate_steps_per_s"], 0)
    self.assertGreater(r["sequential"]["speedup"], 0)
    self.assertGreater(r["matmuls"]["matmul_s"], 0)

  @pytest.mark.slow
  def test_bench_runner(self):
    out = os.path.join(self.create_tempdir().full_path, "runner.json")
    run_script("bench_runner.py", f"--out={out}", "--dtypes=float32", "--widths=16,16", "--d=20", "--m=12",
               "--steps=2", "--repeats=1", "--train_n=10")
    with open(out) as f:
      row = json.load(f)["rows"][0]
    self.assertEqual(set(row["ms_per_step"]), {"plain", "vmap1", "runner"})
    # the floor is XLA's FLOP count over the measured matmul rate; the training step's count is at least its
    # matmuls by hand (forward 2 n (d w1 + w1 w2 + w2) multiply-adds, the backward twice that)
    n, d, w = 10, 20, 16
    self.assertGreaterEqual(row["train_step"]["flops"], 3 * 2 * n * (d * w + w * w + w) - 2 * n * d * w)
    self.assertAlmostEqual(row["attack_step"]["floor_ms"],
                           1000 * row["attack_step"]["flops"] / row["matmul_peak_flops"], places=9)
    self.assertGreater(row["attack_step"]["ratio_to_floor"]["plain"], 0)

  def test_every_bench_command_has_a_smoke_run(self):
    import glob  # noqa: PLC0415
    import inspect  # noqa: PLC0415
    source = inspect.getsource(sys.modules[__name__])
    for path in glob.glob(os.path.join(SCRIPTS, "bench_*.py")):
      self.assertIn(f'run_script("{os.path.basename(path)}"', source, f"{path} has no smoke run here")

  @pytest.mark.slow
  def test_provable_scripts(self):
    d = self.create_tempdir().full_path
    run_script("provable_univariate.py", f"--workdir={d}/u", "--sizes=4", "--patterns=blocks,random",
               "--seeds=2", "--steps=300", "--width=20", "--init_scale=0.3", "--lr=0.1", "--optimizer=gd")
    rows = read_jsonl(os.path.join(d, "u", "metrics.jsonl"))
    self.assertLen(rows, 4)
    for k in ("n", "pattern", "seed", "q_min", "eps_rel", "fitted"):
      self.assertIn(k, rows[0])
    with open(os.path.join(d, "u", "summary.json")) as f:
      self.assertEqual(json.load(f)["seeds_total"], 4)
    self.assertTrue(os.path.exists(os.path.join(d, "u", "fraction_vs_eps.png")))
    run_script("provable_membership.py", f"--workdir={d}/m", "--dims=8,16", "--datasets=parity_sphere",
               "--seeds=2", "--width=32", "--n=6", "--n_fresh=20", "--steps=20")
    rows = read_jsonl(os.path.join(d, "m", "metrics.jsonl"))
    self.assertEqual([r["d"] for r in rows], [8, 16])
    for k in ("known_auc", "leaked_auc", "bounded_tpr", "known_members_within_10pct",
              "known_fresh_reaching_margin", "known_tpr_at_fpr_0.01", "test_acc", "frac_train_on_margin",
              "other_criterion_auc"):
      self.assertIn(k, rows[0])
    cfg = json.load(open(os.path.join(d, "m", "config.json")))
    self.assertEqual((cfg["criterion"], cfg["lr_step_every"], cfg["gaussian_sep_power"]), ("signed", 30, 0.33))
    lo, hi = rows[0]["pooled_tpr_at_fpr_0.01_ci95"]
    self.assertLessEqual(lo, hi)
    with np.load(os.path.join(d, "m", "scores.npz")) as z:  # in/out scores for auditing tools, pooled seeds
      fitted = rows[1]["fitted"]  # seeds that separate their data (their scores are pooled)
      self.assertEqual(z["parity_sphere_d16_in"].shape, (fitted * 6,))
      self.assertEqual(z["parity_sphere_d16_out"].shape, (fitted * 20,))
    with open(os.path.join(d, "m", "summary.json")) as f:
      self.assertIn("smallest_d_auc_0.99_parity_sphere", json.load(f))
    self.assertTrue(os.path.exists(os.path.join(d, "m", "membership_vs_d.png")))

  @pytest.mark.slow
  def test_bench_optim(self):
    d = self.create_tempdir().full_path
    out = os.path.join(d, "optim.json")
    run_script("bench_optim.py", f"--out={out}", "--steps=4", "--eval_every=2", "--seeds=2", "--lrs=3e-3",
               "--d_model=16", "--layers=1", "--heads=2", "--seq=16", "--hidden=32", "--rank=2", "--refresh=2",
               "--methods=sumo,sumo_ns")  # AdamW, Muon and GaLore run through the same code path (optax / contrib)
    with open(out) as f:
      res = json.load(f)
    self.assertEqual(set(res["table"]), {"transformer", "mlp"})
    self.assertEqual(set(res["table"]["mlp"]), {"sumo", "sumo_ns"})
    # the ablation's paired difference is the per-seed difference of the two runs' final losses
    runs = {r["method"]: r for r in res["runs"] if r["task"] == "mlp"}
    diff = np.subtract(runs["sumo_ns"]["curve"][-1]["val"], runs["sumo"]["curve"][-1]["val"])
    self.assertAlmostEqual(res["sumo_ablation"]["mlp"]["sumo_ns - sumo"]["diff_mean_ci95"][0], float(np.mean(diff)))
    self.assertLen(runs["sumo"]["log10_moment_cond_median"], 2)
    sumo_run = next(r for r in res["runs"] if r["method"] == "sumo")
    for row in sumo_run["sumo_state_per_matrix"]:
      self.assertEqual(row["state_numbers"], row["m_plus_n_times_r"])
    self.assertTrue(os.path.exists(os.path.join(d, "optim.png")))

  @pytest.mark.slow
  def test_study_split(self):
    d = self.create_tempdir().full_path
    run_script("train.py", f"--workdir={d}/t", "--n=20", "--d=12", "--n_test=10", "--width=4",
               "--init_scales=0.3", "--steps=200", "--log_every=100", "--relaxed=False")
    run_script("study_split.py", f"--train_workdir={d}/t", f"--workdir={d}/s", "--n_split=3",
               "--factors=0.1,100")
    with open(os.path.join(d, "s", "summary.json")) as f:
      s = json.load(f)
    self.assertGreater(s["max_distance_over_radius"], 99.0)
    for r in s["exact_rows_last"]:  # stationarity with the transported multipliers is unchanged
      self.assertAlmostEqual(r["attack_stat_rel"], s["checkpoints"][-1]["true_attack_stat_rel"], places=8)
      self.assertAlmostEqual(r["eps_rel_transported"], r["true_eps_rel_transported"], places=10)
    # approximate part: the new set's own best multipliers do at least as well as the transported ones
    check = s["checkpoints"][-1]["approx_check"]
    self.assertLessEqual(check["eps_rel_best_multipliers"], (1 + s["approx_tol"]) * check["true_eps_rel"] + 1e-3)
    for name in ("split.png", "split_approx.png"):
      self.assertTrue(os.path.exists(os.path.join(d, "s", name)))
    # n = 20 > d = 12: the data span R^12, so only Theorem 5's smallest singular direction has room; its row is
    # there and its split keeps the residual for a positive magnitude
    approx = [r for r in read_jsonl(os.path.join(d, "s", "metrics.jsonl")) if r.get("part") == "approx"]
    self.assertEqual({r["direction"] for r in approx}, {"orthogonal", "importance", "flip", "svd"})
    self.assertGreater([r for r in approx if r["direction"] == "svd"][0]["within_tol_over_radius"], 0.0)
    for r in approx:  # keeping delta and feasibility as well can only shorten the reach of the best point
      self.assertLessEqual(r["within_tol_delta_over_radius"], max(a["within_tol_over_radius"] for a in approx))

  @pytest.mark.slow
  def test_attack_studies(self):
    d = self.create_tempdir().full_path
    tiny = ["--n=10", "--d=8", "--n_test=10", "--width=16", "--init_scales=0.3", "--log_every=100",
            "--relaxed=False"]
    run_script("train.py", f"--workdir={d}/t", *tiny, "--steps=200")
    frozen = ["--configs=1", "--lr_x=1e-12", "--m=8"]  # candidates stay where they start
    run_script("study_radius.py", f"--train_workdir={d}/t", f"--workdir={d}/r", "--radii=1,4", "--steps=3",
               *frozen)
    rows = read_jsonl(os.path.join(d, "r", "metrics.jsonl"))
    self.assertEqual([r["radius"] for r in rows], [1.0, 4.0])
    # unit-sphere data, candidates of norm 4: every distance is at least 3 (the radius reached the attack)
    self.assertGreaterEqual(rows[1]["mean_best5_dist"], 3.0 - 1e-5)
    self.assertLess(rows[0]["mean_best5_dist"], 2.0 + 1e-5)
    # ONE sweep ran every radius; every candidate starts (and, frozen, stays) on the sphere of radius
    # r x data radius of its configuration
    with np.load(os.path.join(d, "r", "attack", "candidates.npz")) as z:
      self.assertLen(z["hyper_radius"], 2)
      np.testing.assert_allclose(z["hyper_radius"] / rows[0]["data_radius"], [1.0, 4.0], rtol=1e-9)
      np.testing.assert_allclose(np.linalg.norm(z["x"], axis=-1),
                                 np.broadcast_to(z["hyper_radius"][:, None], z["x"].shape[:2]), rtol=1e-4)
    self.assertTrue(os.path.exists(os.path.join(d, "r", "radius.png")))

    run_script("study_training_length.py", f"--train_workdir={d}/t", f"--workdir={d}/l", "--steps=3",
               "--max_loss=1e-3", *frozen)
    rows = read_jsonl(os.path.join(d, "l", "metrics.jsonl"))
    train_summary = json.load(open(os.path.join(d, "t", "summary.json")))
    self.assertTrue(all(r["loss"] <= 1e-3 for r in rows))
    self.assertEqual(rows[-1]["step"], 200)
    self.assertAlmostEqual(rows[-1]["eps_rel"], train_summary["eps_rel"], places=6)
    self.assertTrue(os.path.exists(os.path.join(d, "l", "step_200", "summary.json")))

    run_script("study_offset.py", f"--workdir={d}/o", *tiny, "--steps=50", "--offsets=0,1.5",
               "--attack_steps=3", "--prior_weights=0,1", *frozen)
    rows = read_jsonl(os.path.join(d, "o", "metrics.jsonl"))
    self.assertEqual([(r["offset"], r["prior_weight"]) for r in rows], [(0.0, 0.0), (0.0, 1.0), (1.5, 0.0), (1.5, 1.0)])
    with np.load(os.path.join(d, "o", "offset_0", "train", "data.npz")) as z0, \
         np.load(os.path.join(d, "o", "offset_1.5", "train", "data.npz")) as z1:
      np.testing.assert_allclose(z1["x_train"] - z0["x_train"], 1.5, atol=1e-12)
      for z, row in ((z0, rows[0]), (z1, rows[2])):  # how the box [-1, 1] fits the true set, by hand
        over = np.maximum(np.abs(z["x_train"]) - 1.0, 0.0)
        self.assertEqual(row["n_outside_box"], int(np.sum(over.max(axis=1) > 0)))
        self.assertAlmostEqual(row["true_prior_penalty"], float(np.sum(over ** 2)), places=6)
    self.assertGreater(rows[2]["n_outside_box"], 0)
    self.assertTrue(os.path.exists(os.path.join(d, "o", "offset_1.5", "attack_prior0", "candidates.npz")))
    self.assertTrue(os.path.exists(os.path.join(d, "o", "offset.png")))

  def test_study_leakage(self):
    d = self.create_tempdir().full_path
    run_script("study_leakage.py", f"--workdir={d}/s", "--tiny", "--recipes=gd_wd", "--targets=theta")
    rows = read_jsonl(os.path.join(d, "s", "metrics.jsonl"))
    self.assertEqual([r["recipe"] for r in rows], ["gd_wd"])
    r = rows[0]
    self.assertIsNotNone(r["wd_residual"])
    self.assertIn("attack_theta_signed", r)  # weight decay: the signed variant runs too
    # the saddle-point l2 residual brackets the training job's NNLS eps_rel
    self.assertLessEqual(r["eps_l2_lower"], r["eps_rel"] + 1e-6)
    self.assertGreaterEqual(r["eps_l2"], r["eps_rel"] - 1e-6)
    # the vector count, recomputed from the attack's saved pool with scipy's distances
    with np.load(os.path.join(d, "s", "attack_gd_wd_theta", "candidates.npz")) as z, \
         np.load(os.path.join(d, "s", "train_gd_wd", "data.npz")) as data:
      dist = sp_distance.cdist(data["x_train"], z["x"][z["pool_config"], z["pool_index"]]).min(axis=1)
      radius = np.sqrt(np.mean(np.sum(data["x_train"] ** 2, axis=1)))
      self.assertEqual(r["attack_theta"]["n_close"], int(np.sum(dist < 0.1 * radius)))
    summary = json.load(open(os.path.join(d, "s", "summary.json")))
    self.assertIn("attack target theta", summary["verdict"])
    self.assertTrue(os.path.exists(os.path.join(d, "s", "leakage.png")))
    self.assertTrue(os.path.exists(os.path.join(d, "s", "attack_gd_wd_theta_signed", "pairs.png"))
                    or os.path.exists(os.path.join(d, "s", "attack_gd_wd_theta_signed", "curve.png")))

  def test_train_on_real_mnist(self):
    root = conftest.shared_data_dir()
    if root is None:
      self.skipTest("real data not found: set JAXRECON_DATA_DIR or place shared/data beside the checkout")
    d = self.create_tempdir().full_path
    run_script("train.py", f"--workdir={d}", "--dataset=mnist", f"--data_dir={root}/mnist", "--n=20",
               "--n_test=20", "--width=16,16", "--steps=20", "--log_every=10", "--relaxed=False",
               "--optimizer=normalized_gd", "--lr=0.1")
    with open(os.path.join(d, "summary.json")) as f:
      self.assertEqual(json.load(f)["n_train"], 20)


class SphereCommandTest(absltest.TestCase):

  @pytest.mark.slow
  def test_flags_reach_the_study(self):
    # Training flags (--n, --width, --sphere_shift) and attack flags (--attack_steps, --init_shift,
    # --sweep_lr_lambda, --prior_weight) of one command land in the right halves of the config.
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "s")
    run_script("study_sphere.py", f"--workdir={out}", "--n=8", "--d=16", "--n_test=40", "--width=10,10",
               "--steps=150", "--log_every=150", "--norelaxed", "--sphere_shift=0.5", "--sphere_labels=centre",
               "--attack_steps=4",
               "--attack_log_every=2", "--lr_x=0.1", "--sweep_lr_lambda=0.01,0.1", "--init_scale=0.1",
               "--init_shift=0,1", "--lambda_min=0.5", "--prior_weight=0.5")
    cfg = json.load(open(os.path.join(out, "config.json")))["study"]
    self.assertEqual(cfg["train"]["data"]["shift"], 0.5)
    self.assertEqual(cfg["train"]["data"]["sphere_labels"], "centre")  # the study's default is the authors'
    self.assertEqual(cfg["reconstruct"]["sweep"]["lr_lambda"], [0.01, 0.1])
    self.assertEqual(cfg["reconstruct"]["attack"]["prior_weight"], 0.5)
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    self.assertEqual(sorted((r["lr_lambda"], r["shift"]) for r in rows),
                     [(0.01, 0.0), (0.01, 1.0), (0.1, 0.0), (0.1, 1.0)])
    for f in ("summary.json", "recovery.npz", "sphere.png", "chance/summary.json", "attack/candidates.npz"):
      self.assertTrue(os.path.exists(os.path.join(out, f)), f)
    # the null row is the held-out points' own recovery, recomputed here with scipy
    s = json.load(open(os.path.join(out, "summary.json")))
    with np.load(os.path.join(out, "train", "data.npz")) as z:
      x_train, x_test = z["x_train"], z["x_test"]
    np.testing.assert_allclose(np.linalg.norm(x_train - 0.5, axis=1), 1.0, rtol=1e-9)  # on the shifted sphere
    d = np.sort(sp_distance.cdist(x_test[8:16], x_train).min(1))
    self.assertAlmostEqual(s["null"]["best5_dist"], float(np.mean(d[:5])), places=4)
    with np.load(os.path.join(out, "attack", "candidates.npz")) as a:  # the init shift moved the start on
      per_coordinate = a["x"].mean(axis=1)                              # one coordinate (the authors' start)
      self.assertGreater(per_coordinate[a["hyper_shift"] == 1.0].max(axis=1).min(), 0.5)
      self.assertLess(np.abs(per_coordinate[a["hyper_shift"] == 0.0]).max(), 0.5)
    self.assertIn("configurations did not diverge", s["headline"])


class AuditCommandTest(absltest.TestCase):

  def test_audit_a_torch_export(self):
    # README's PyTorch path: the .pt that docs/examples/torch_audit.py wrote with torch 2.14.1 (tests/data),
    # the data.npz it writes, README's jaxrecon-audit line (fewer steps)
    d = self.create_tempdir().full_path
    from jaxrecon import data as data_lib  # noqa: PLC0415
    ds = data_lib.load(jax.random.key(0), data_lib.DataConfig(name="mnist", n=20, n_test=1000,
                                                              data_dir=data_lib.BUNDLED))
    np.savez(f"{d}/data.npz", x=ds.x_train, y=ds.y_train, mean=ds.mean, x_heldout=ds.x_test)
    readme = open(os.path.join(conftest.ROOT, "README.md")).read()
    line = re.search(r"^jaxrecon-audit (.*)$", readme[readme.index("### From PyTorch"):], re.M).group(1)
    args = [a.replace("runs/torch_example/model.pt", os.path.join(conftest.ROOT, "tests/data/torch_mnist20.pt"))
             .replace("runs/torch_example", d) for a in line.split()]
    run_script("audit.py", *args, "--configs=2", "--steps=100", "--log_every=50")
    os.rename(f"{d}/audit", f"{d}/a")
    with open(os.path.join(d, "a", "summary.json")) as f:
      s = json.load(f)
    self.assertEqual(s["configs"], 2)
    self.assertIn("n_good_ssim_0.4", s["evaluation"])
    self.assertEqual(set(s["credit"]["nulls"]), {"heldout", "mixture_convex", "mixture_signed", "mean"})
    self.assertIn("recovery measure: credited", s["headline"])
    self.assertGreaterEqual(s["kkt"]["eps_rel"], 0.0)
    for name in ("curve.png", "roc.png", "report.md", "membership_scores.npz", "credited.png"):
      self.assertTrue(os.path.exists(os.path.join(d, "a", name)), name)
    # the verdict first, the protocol and the arithmetic said; membership in the auditors' form
    self.assertEqual((s["protocol"], s["arithmetic"]), ("fast", {"attack": "float32", "kkt": "float64"}))
    self.assertRegex(s["verdict"], r"^(RECONSTRUCTION|NO RECONSTRUCTION BEYOND CHANCE): .* MEMBERSHIP .* KKT")
    with open(os.path.join(d, "a", "report.md")) as f:
      self.assertTrue(f.read().startswith(f"# Audit of {args[0][len('--model='):]}\n\n{s['verdict']}"))
    m = s["membership"]
    with np.load(os.path.join(d, "a", "membership_scores.npz")) as z:  # what jax_privacy's auditor reads
      self.assertEqual((z["in_scores"].size, z["out_scores"].size), (m["n_members"], m["n_nonmembers"]))
      self.assertAlmostEqual(m["auc"], sp_stats.mannwhitneyu(z["in_scores"], z["out_scores"]).statistic / (
          z["in_scores"].size * z["out_scores"].size))
    self.assertGreaterEqual(m["epsilon_lower_bound"]["epsilon"], 0.0)
    # an architecture the theory does not cover: refused by name, nothing written
    from jaxrecon import models  # noqa: PLC0415
    params = models.load_torch(os.path.join(conftest.ROOT, "tests/data/torch_mnist20.pt"))
    sd = {"0.weight": np.asarray(params[0]["w"]).T, "2.weight": np.asarray(params[1]["w"]).T}  # torch layout
    np.savez(f"{d}/biased.npz", **sd, **{"2.bias": np.ones(1)})
    out = run_script("audit.py", f"--model={d}/biased.npz", "--n_train=20", f"--workdir={d}/b", check=False)
    self.assertEqual(out.returncode, 1)
    self.assertIn("layer '2' has a bias", out.stderr)
    self.assertFalse(os.path.exists(os.path.join(d, "b", "config.json")))


if __name__ == "__main__":
  absltest.main()
