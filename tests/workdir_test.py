"""Run-folder reliability: each test reproduces one defect of issue 12 (it failed before the fix)."""

import os
import shutil
import tempfile

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from jaxrecon.experiments import train as train_job
from jaxrecon import attack
from jaxrecon.experiments import kkt as diagnostics
from jaxrecon.experiments import attack as reconstruct
from jaxrecon.experiments import studies
from jaxrecon import workdir as wd

from train_test import quiet
from train_test import tiny_config


def _snapshot(folder):
  """{relative path: bytes} of every file under folder (what a job must not change)."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


class WritesTest(absltest.TestCase):

  def test_results_honour_the_umask(self):
    d = self.create_tempdir().full_path
    old = os.umask(0o022)
    try:
      wd.write_json(os.path.join(d, "a.json"), {"x": 1})
      os.umask(0o077)
      wd.write_npz(os.path.join(d, "b.npz"), x=np.zeros(2))
    finally:
      os.umask(old)
    self.assertEqual(os.stat(os.path.join(d, "a.json")).st_mode & 0o777, 0o644)
    self.assertEqual(os.stat(os.path.join(d, "b.npz")).st_mode & 0o777, 0o600)

  def test_claim_removes_temp_files_of_killed_writes(self):
    d = self.create_tempdir().full_path
    os.makedirs(os.path.join(d, "checkpoints"))
    stale = [os.path.join(d, ".summary.json.jaxrecon-x1y2ab.tmp"),
             os.path.join(d, "checkpoints", ".step_000000010.npz.jaxrecon-abc.tmp")]
    for p in stale:
      open(p, "w").close()
    keep = [os.path.join(d, n) for n in ("notes.tmp", ".notes.tmp", ".a.b12345678.tmp")]  # not ours
    for p in keep:
      open(p, "w").close()
    with wd.claim(d, "train"):
      pass
    self.assertFalse(any(os.path.exists(p) for p in stale))
    self.assertTrue(all(os.path.exists(p) for p in keep))
    # the names atomic_write gives its temp files are the ones claim removes
    seen = []
    wd.atomic_write(os.path.join(d, "x.json"), lambda f: seen.extend(os.listdir(d)))
    self.assertTrue(any(wd._OWN_TMP.match(n) for n in seen), seen)

  def test_a_planted_link_is_never_followed(self):
    d = self.create_tempdir().full_path
    precious = os.path.join(self.create_tempdir().full_path, "precious.txt")
    with open(precious, "w") as f:
      f.write("precious data")
    for name in (wd.LOCK_FILE, wd.KIND_FILE):
      run = os.path.join(d, name.strip("."))
      os.makedirs(run)
      os.symlink(precious, os.path.join(run, name))
      with self.assertRaisesRegex(wd.RunDirError, "not a regular file"):
        with wd.claim(run, "train"):
          pass
    with open(precious) as f:
      self.assertEqual(f.read(), "precious data")

  def test_a_folder_inside_another_run_is_refused(self):
    d = self.create_tempdir().full_path
    with wd.claim(d, "train"):
      pass
    for sub in ("checkpoints", "x"):  # a training run holds no other run, except its KKT report
      with self.assertRaisesRegex(wd.RunDirError, "is inside the train run"):
        with wd.claim(os.path.join(d, sub), "attack"):
          pass
      self.assertFalse(os.path.exists(os.path.join(d, sub)))
    with wd.claim(os.path.join(d, "kkt"), "kkt"):
      pass
    study = self.create_tempdir().full_path
    with wd.claim(study, "study_offset"):  # a study places its own sub-runs in its folder
      with wd.claim(os.path.join(study, "offset_0", "train"), "train"):
        pass
    with self.assertRaisesRegex(wd.RunDirError, "inside the study_offset run"):
      with wd.claim(os.path.join(study, "checkpoints"), "train"):
        pass

  def test_a_folder_is_locked_while_a_job_holds_it(self):
    d = self.create_tempdir().full_path
    with wd.claim(d, "train"):
      with self.assertRaisesRegex(wd.RunDirError, f"{d} is in use by another process"):
        with wd.claim(d, "train"):
          pass
    with wd.claim(d, "train"):  # released
      pass

  def test_config_diffs_ignore_only_what_is_named(self):
    saved = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2]}
    self.assertEqual(wd.config_diffs(saved, {"a": 2, "b": {"x": 1, "y": 3}, "c": [1, 2]}), ["a", "b"])
    self.assertEqual(wd.config_diffs(saved, {"a": 1, "b": {"x": 1, "y": 3}, "c": [1, 2]}, ignore=("b.y",)), [])
    self.assertEqual(wd.config_diffs(saved, {"a": 1, "b": {"x": 0, "y": 3}, "c": [1, 2]}, ignore=("b.y",)), ["b"])
    self.assertEqual(wd.config_diffs(saved, {"a": 1, "b": {"x": 1, "y": 2}}, ignore=("a",)), ["c"])

  def test_hostile_json_files_are_one_clear_error(self):
    d = self.create_tempdir().full_path
    cases = {"list.json": "[]", "torn.json": '{"a": 1, "b": [1, 2', "deep.json": "[" * 100_000 + "]" * 100_000,
             "nested.json": '{"a": ' * 100 + "1" + "}" * 100, "binary.json": "\udcff"}
    for name, text in cases.items():
      path = os.path.join(d, name)
      with open(path, "w", errors="surrogateescape") as f:
        f.write(text)
      with self.assertRaisesRegex(wd.RunDirError, f"{name}: "):
        wd.read_json(path)
    with self.assertRaisesRegex(wd.RunDirError, "cannot read"):
      wd.read_json(os.path.join(d, "missing.json"))
    wd.write_json(os.path.join(d, "ok.json"), {"a": [1, {"b": 2}]})
    self.assertEqual(wd.read_json(os.path.join(d, "ok.json")), {"a": [1, {"b": 2}]})

  def test_unreadable_npz_names_the_file(self):
    d = self.create_tempdir().full_path
    path = os.path.join(d, "x.npz")
    with open(path, "wb") as f:
      f.write(b"PK\x03\x04 not a zip")
    with self.assertRaisesRegex(wd.RunDirError, "x.npz: not an .npz"):
      wd.read_npz(path)


class TrainRunDirTest(absltest.TestCase):

  def test_bad_config_writes_nothing(self):
    d = os.path.join(self.create_tempdir().full_path, "run")
    with self.assertRaisesRegex(ValueError, r"loss must be one of logistic, exponential \(the registry losses.LOSSES\); got 'foo'"):
      train_job.run(tiny_config(loss="foo"), d, log=quiet)
    self.assertFalse(os.path.exists(d))
    train_job.run(tiny_config(steps=5, relaxed=False), d, log=quiet)  # the corrected run is accepted

  def test_divergence_is_an_error_and_leaves_a_finite_latest_checkpoint(self):
    d = self.create_tempdir().full_path
    with self.assertRaisesRegex(train_job.TrainingDiverged, "diverged"):
      train_job.run(tiny_config(optimizer="gd", lr=1e30, relaxed=False), d, log=quiet)
    step, _, arrays = wd.latest_readable_checkpoint(d, quiet)
    self.assertTrue(all(np.isfinite(v).all() for v in arrays.values()))
    self.assertEqual(wd.read_json(os.path.join(d, "summary.json"))["stop_reason"], "diverged")

  def test_fewer_steps_on_a_finished_run_is_refused_and_changes_nothing(self):
    d = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=40, relaxed=False), d, log=quiet)
    before = _snapshot(d)
    with self.assertRaisesRegex(wd.RunDirError, "already at step 40, beyond steps=20"):
      train_job.run(tiny_config(steps=20, relaxed=False), d, log=quiet)
    after = _snapshot(d)
    self.assertEqual(before.keys(), after.keys())
    self.assertEqual(before["config.json"], after["config.json"])

  def test_truncated_checkpoint_falls_back_with_its_name(self):
    d = self.create_tempdir().full_path
    cfg = tiny_config(steps=40, relaxed=False)
    train_job.run(cfg, d, log=quiet)
    step, path = wd.latest_checkpoint(d)
    with open(path, "rb") as f:
      raw = f.read()
    with open(path, "wb") as f:
      f.write(raw[: len(raw) // 2])
    said = []
    s = train_job.run(tiny_config(steps=60, relaxed=False), d, log=said.append)
    self.assertEqual(s["steps"], 60)
    self.assertTrue(any(os.path.basename(path) in m and "falling back" in m for m in said), said)
    self.assertTrue(any("resuming" in m and "from step 20" in m for m in said), said)
    self.assertTrue(os.path.exists(path + ".corrupt"))

  def test_checkpoints_are_never_deleted_by_a_fresh_start(self):
    d = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=20, relaxed=False), d, log=quiet)
    ckpts = sorted(os.listdir(os.path.join(d, "checkpoints")))
    os.remove(os.path.join(d, "config.json"))  # a run that lost its config, re-run with other flags
    with self.assertRaisesRegex(wd.RunDirError, "lost config.json.*move .*checkpoints away"):
      train_job.run(tiny_config(steps=30, lr=0.05, relaxed=False), d, log=quiet)
    self.assertEqual(sorted(os.listdir(os.path.join(d, "checkpoints"))), ckpts)
    e = self.create_tempdir().full_path  # every checkpoint corrupt: set aside, then kept (never deleted)
    train_job.run(tiny_config(steps=20, relaxed=False), e, log=quiet)
    for _, path in wd.list_checkpoints(e):
      with open(path, "wb") as f:
        f.write(b"PK\x03\x04 broken")
    with self.assertRaisesRegex(wd.RunDirError, "no checkpoint that reads"):
      train_job.run(tiny_config(steps=30, relaxed=False), e, log=quiet)
    left = os.listdir(os.path.join(e, "checkpoints"))
    self.assertEqual(len(left), len(ckpts))
    self.assertTrue(all(n.endswith(".corrupt") for n in left))


def _without_wall(rows):
  return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


class _TrainedRunTest(absltest.TestCase):
  """Tests on one small training run made once per class (TRAIN_STEPS steps)."""
  TRAIN_STEPS = 20

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.train_dir = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.train_dir, True)
    train_job.run(tiny_config(steps=cls.TRAIN_STEPS, relaxed=False), cls.train_dir, log=quiet)


class CrossJobTest(_TrainedRunTest):

  def test_attack_into_its_training_workdir_is_refused(self):
    before = _snapshot(self.train_dir)
    with self.assertRaisesRegex(wd.RunDirError, "is the training workdir"):
      reconstruct.run(reconstruct.ReconstructConfig(), self.train_dir, self.train_dir, log=quiet)
    self.assertEqual(before, _snapshot(self.train_dir))

  def test_attack_into_another_training_workdir_is_refused(self):
    other = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=5, relaxed=False), other, log=quiet)
    before = _snapshot(other)
    with self.assertRaisesRegex(wd.RunDirError, "holds a train run; choose another folder for this attack run"):
      reconstruct.run(reconstruct.ReconstructConfig(), self.train_dir, other, log=quiet)
    self.assertEqual(before, _snapshot(other))

  def test_kkt_into_the_training_workdir_is_refused(self):
    before = _snapshot(self.train_dir)
    with self.assertRaisesRegex(wd.RunDirError, "is the training workdir itself"):
      diagnostics.run(self.train_dir, diagnostics.KKTConfig(relaxed=False), out_dir=self.train_dir, log=quiet)
    self.assertEqual(before, _snapshot(self.train_dir))

  def test_legacy_training_folder_without_marker_is_recognized(self):
    other = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=5, relaxed=False), other, log=quiet)
    os.remove(os.path.join(other, wd.KIND_FILE))  # as written before markers existed
    with self.assertRaisesRegex(wd.RunDirError, "holds a training run"):
      wd.check_kind(other, "attack")


class StudyTest(absltest.TestCase):

  def test_a_fully_diverged_sweep_is_reported_not_a_crash(self):
    train_dir, out = self.create_tempdir().full_path, self.create_tempdir().full_path
    train_job.run(tiny_config(steps=50, relaxed=False), train_dir, log=quiet)
    cfg = studies.RadiusStudyConfig(radii=(1.0, 2.0), reconstruct=reconstruct.ReconstructConfig(
        attack=attack.AttackConfig(steps=20, log_every=10, m=8),
        sweep=attack.SweepConfig(configs=2, lr_x=(1e30, 1e30)), figure_pairs=0))
    s = studies.run_radius(cfg, train_dir, out, log=quiet)
    self.assertEqual([r["best_final_loss"] for r in s["rows"]], [None, None])
    self.assertIn("(diverged, diverged)", s["headline"])
    self.assertTrue(os.path.exists(os.path.join(out, "radius.png")))
    # re-running the finished study re-evaluates its attacks instead of running them again
    said = []
    studies.run_radius(cfg, train_dir, out, log=said.append)
    self.assertEqual(sum("finished: evaluating its saved candidates" in m for m in said), 1)  # one sweep


  def test_a_killed_study_resumes_to_the_same_result(self):
    train_dir, ref, out = self.create_tempdir().full_path, self.create_tempdir().full_path, self.create_tempdir().full_path
    train_job.run(tiny_config(steps=50, relaxed=False), train_dir, log=quiet)
    cfg = studies.RadiusStudyConfig(radii=(1.0, 2.0), reconstruct=reconstruct.ReconstructConfig(
        attack=attack.AttackConfig(steps=20, log_every=10, m=8, chunk=2),  # a chunk per radius
        sweep=attack.SweepConfig(configs=2, lr_x=(1e-3, 1e-2)), figure_pairs=0,
        checkpoint_every_s=0.0))
    want = studies.run_radius(cfg, train_dir, ref, log=quiet)
    real, calls = reconstruct._write_progress, []

    def dying(path, p):  # killed in the study's one sweep, in the second radius's chunk after its first segment
      real(path, p)
      calls.append(path)
      if len(calls) == 3:
        raise Interrupt
    with mock.patch.object(reconstruct, "_write_progress", dying):
      with self.assertRaises(Interrupt):
        studies.run_radius(cfg, train_dir, out, log=quiet)
    said = []
    got = studies.run_radius(cfg, train_dir, out, log=said.append)
    self.assertTrue(any("resuming the attack" in m for m in said), said)
    self.assertEqual(_without_wall(got["rows"]), _without_wall(want["rows"]))


class Interrupt(Exception):
  pass


class AttackResumeTest(_TrainedRunTest, parameterized.TestCase):
  """A killed attack resumes from its last progress file and ends bit-identical to an uninterrupted one."""
  TRAIN_STEPS = 100

  def _config(self, optimizer):
    return reconstruct.ReconstructConfig(
        attack=attack.AttackConfig(steps=30, log_every=10, m=12, chunk=2, optimizer=optimizer),
        sweep=attack.SweepConfig(configs=3, lr_x=(1e-3, 1e-2)), checkpoint_every_s=0.0,
        figure_pairs=0)

  @parameterized.parameters(("sgd", 2), ("sgd", 4), ("adam", 3))
  def test_kill_and_resume_is_bit_identical(self, optimizer, kill_after):
    cfg = self._config(optimizer)
    ref_dir, dir_ = self.create_tempdir().full_path, self.create_tempdir().full_path
    reconstruct.run(cfg, self.train_dir, ref_dir, log=quiet)
    real, calls = reconstruct._write_progress, []

    def dying(path, p):
      real(path, p)
      calls.append(p.c0)
      if len(calls) == kill_after:
        raise Interrupt
    with mock.patch.object(reconstruct, "_write_progress", dying):
      with self.assertRaises(Interrupt):
        reconstruct.run(cfg, self.train_dir, dir_, log=quiet)
    self.assertTrue(os.path.exists(os.path.join(dir_, "progress.npz")))
    said = []
    reconstruct.run(cfg, self.train_dir, dir_, log=said.append)
    self.assertTrue(any("resuming the attack" in m for m in said), said)
    self.assertFalse(os.path.exists(os.path.join(dir_, "progress.npz")))
    a, b = (wd.read_npz(os.path.join(x, "candidates.npz")) for x in (ref_dir, dir_))
    self.assertEqual(a.keys(), b.keys())
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = [wd.read_jsonl(os.path.join(x, "metrics.jsonl")) for x in (ref_dir, dir_)]
    self.assertEqual(_without_wall(rows[0]), _without_wall(rows[1]))

  def test_another_config_in_an_unfinished_attack_is_refused(self):
    cfg = self._config("sgd")
    dir_ = self.create_tempdir().full_path
    with mock.patch.object(reconstruct, "_write_progress", mock.Mock(side_effect=Interrupt)):
      with self.assertRaises(Interrupt):
        reconstruct.run(cfg, self.train_dir, dir_, log=quiet)
    reconstruct._write_progress(os.path.join(dir_, "progress.npz"), attack.SweepProgress(
        0, 10, None, *([np.zeros(0)] * 5), 1, 1.0))
    other = cfg.__class__(**{**cfg.__dict__, "theta_norm": cfg.theta_norm + 5.0})  # other candidates
    with self.assertRaisesRegex(wd.RunDirError, "holds an attack with a different config"):
      reconstruct.run(other, self.train_dir, dir_, log=quiet)
    # an evaluation-only field (pool_top, figure_pairs, ...) may change: it does not change the candidates
    self.assertEqual(reconstruct._config_diffs(dir_, {
        "attack": cfg.attack, "sweep": cfg.sweep, "reconstruct": cfg.__class__(**{**cfg.__dict__, "pool_top": 1}),
        "train_workdir": os.path.abspath(self.train_dir), "step": wd.read_json(
            os.path.join(dir_, "config.json"))["step"]}), [])


class ConfigDiffsTest(absltest.TestCase):

  def test_a_field_added_later_compares_at_its_default(self):
    # a run folder written before DataConfig.sphere_labels / AttackConfig.layer_weights existed still resumes
    # when the new field keeps its default, and is refused when it does not
    from jaxrecon import data as data_lib, train  # noqa: PLC0415
    from jaxrecon.experiments import attack as attack_job  # noqa: PLC0415
    cfg = train.TrainConfig(data=data_lib.DataConfig(name="mnist", n=20, data_dir="bundled"))
    old = wd.to_jsonable(cfg)
    del old["data"]["sphere_labels"]
    self.assertEqual(wd.config_diffs(old, cfg), [])
    other = train.TrainConfig(data=data_lib.DataConfig(name="mnist", n=20, data_dir="bundled",
                                                       sphere_labels="first_coordinate"))
    self.assertEqual(wd.config_diffs(old, other), ["data"])
    rc = attack_job.PROTOCOLS["fast"]
    old_run = wd.to_jsonable({"attack": rc.attack, "reconstruct": rc})
    for part in (old_run["attack"], old_run["reconstruct"]["attack"]):
      del part["layer_weights"], part["init"]
    self.assertEqual(wd.config_diffs(old_run, {"attack": rc.attack, "reconstruct": rc}), [])


if __name__ == "__main__":
  absltest.main()
