"""jaxrecon/commands/config_flags.py: flags generated from a config dataclass, and the config built back from them."""

import contextlib
import io
from unittest import mock

from absl import flags
from absl import logging as absl_logging
from absl.testing import absltest

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import provable as provable_study
from jaxrecon import train
from jaxrecon import workdir as wd


class BinderTest(absltest.TestCase):

  def _bind(self, default, **kw):
    fv = flags.FlagValues()
    return config_flags.Binder(default, flag_values=fv, **kw), fv

  def test_every_field_is_a_flag_and_defaults_round_trip(self):
    binder, fv = self._bind(provable_study.MembershipConfig())
    fv(["prog"])
    self.assertEqual(binder.build(), provable_study.MembershipConfig())
    fields = set(provable_study.MembershipConfig.__dataclass_fields__)
    self.assertEqual(set(binder.flags.values()), fields)
    self.assertEqual(fv["threshold"].help, "Decide member when the score reaches threshold * m.")  # the docstring

  def test_values_parse_to_the_fields_types(self):
    binder, fv = self._bind(provable_study.MembershipConfig())
    fv(["prog", "--dims=5,7", "--lr=0.5", "--datasets=two_gaussians", "--steps=9"])
    c = binder.build()
    self.assertEqual((c.dims, c.lr, c.datasets, c.steps), ((5, 7), 0.5, ("two_gaussians",), 9))

  def test_nested_configs_renames_choices_and_skips(self):
    binder, fv = self._bind(train.TrainConfig(), names={"data.name": "dataset", "widths": "width"},
                            choices={"data.name": ("sphere", "mnist")}, skip=("data.seed",))
    self.assertIn("dataset", fv)
    self.assertNotIn("name", fv)
    with self.assertRaises(flags.IllegalFlagValueError):
      fv(["prog", "--dataset=imagenet"])
    fv.unparse_flags()
    fv(["prog", "--dataset=mnist", "--width=8,8", "--n=30", "--relaxed=false"])
    c = binder.build(**{"data.seed": 4})
    self.assertEqual((c.data.name, c.widths, c.data.n, c.relaxed, c.data.seed), ("mnist", (8, 8), 30, False, 4))
    # a run is re-created from its config.json
    self.assertEqual(train.TrainConfig.from_dict(wd.to_jsonable(c)), c)

  def test_a_bad_list_value_is_one_line_naming_the_flag(self):
    binder, fv = self._bind(provable_study.MembershipConfig())
    fv(["prog", "--dims=5,x"])
    with self.assertRaisesRegex(ValueError, r"^--dims=5,x: expected a comma-separated list of ints"):
      binder.build()

  def test_a_preset_base_keeps_its_values_where_no_flag_is_given(self):
    binder, fv = self._bind(provable_study.MembershipConfig())
    preset = provable_study.MembershipConfig(lr=0.25, steps=3, dims=(4,))
    fv(["prog", "--steps=9"])
    c = binder.build(preset)
    self.assertEqual((c.lr, c.steps, c.dims), (0.25, 9, (4,)))  # given: 9; not given: the preset's
    self.assertEqual(binder.build().lr, provable_study.MembershipConfig().lr)  # no base: the flag defaults
    with self.assertRaisesRegex(TypeError, "base must be"):
      binder.build(train.TrainConfig())

  def test_a_name_clash_is_an_error_at_definition(self):
    with self.assertRaisesRegex(ValueError, "--seed .* already defined"):
      self._bind(train.TrainConfig())  # data.seed and seed




class FromDictTest(absltest.TestCase):
  """Every config reads back what it wrote (through JSON text, as config.json holds it), with one reader."""

  def test_round_trip_through_json_text(self):
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415
    from jaxrecon.attack import SweepConfig  # noqa: PLC0415
    from jaxrecon.experiments import attack, leakage, quality  # noqa: PLC0415
    t = train.TrainConfig(widths=(64, 32), init_scales=(0.1, 0.2), steps=77, optimizer="muon")
    r = attack.ReconstructConfig(prune_at=(100, 200), sweep=SweepConfig(configs=3, lr_x=(0.01, 0.2), radii=(1.0, 2.0)))
    r = dataclasses.replace(r, attack=dataclasses.replace(r.attack, layer_weights=(1.0, 0.0, 1.0)))
    for c in (t, r, r.sweep, leakage.LeakageConfig(train=t, attack=r, recipes=("gd",)),
              quality.QualityConfig(fast_train=t, levers=("float64",))):
      back = type(c).from_dict(json.loads(json.dumps(wd.to_jsonable(c))))
      self.assertEqual(back, c)
    with self.assertRaisesRegex(ValueError, "TrainConfig has no field 'stepz'"):
      train.TrainConfig.from_dict({"stepz": 3})
    with self.assertRaisesRegex(ValueError, "DataConfig: expected a JSON object, got list"):
      train.TrainConfig.from_dict({"data": []})

class ValidateTest(absltest.TestCase):
  """One validation style: every config dataclass has validate(), which names the bad field, and a job refuses
  a bad config before its run folder exists (workdir.job calls config.validate() first)."""

  def test_every_config_has_validate(self):
    import dataclasses  # noqa: PLC0415
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415
    import jaxrecon  # noqa: PLC0415
    found = []
    for m in pkgutil.walk_packages(jaxrecon.__path__, "jaxrecon."):
      if ".commands" in m.name:
        continue
      mod = importlib.import_module(m.name)
      for name, obj in vars(mod).items():
        if name.endswith("Config") and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__:
          found.append(obj)
          self.assertTrue(callable(getattr(obj, "validate", None)), f"{obj.__module__}.{name} has no validate()")
    self.assertGreaterEqual(len(found), 20)

  def test_bad_fields_are_named(self):
    import dataclasses  # noqa: PLC0415
    from jaxrecon import data as data_lib  # noqa: PLC0415
    from jaxrecon.experiments import (attack, audit, kkt, longer, main, optim_bench, quality, split,  # noqa: PLC0415
                                      studies)
    r = attack.PROTOCOLS["fast"]
    cases = [
        (data_lib.DataConfig(name="mnistt"), "unknown dataset 'mnistt'"),
        (data_lib.DataConfig(name="mnist", data_dir="bundled", n=21), "n=21 is not a positive multiple of the 2"),
        (data_lib.DataConfig(selection="last"), "selection must be 'first' or 'random'"),
        (train.TrainConfig(data=data_lib.DataConfig(task="ten")), "task must be 'binary' or 'multiclass'"),
        (dataclasses.replace(r, prune_keep=0.0), "prune_keep must be in"),
        (dataclasses.replace(r, ssim_window=4), "ssim_window must be an odd"),
        (kkt.KKTConfig(batch_size=0), "KKTConfig.batch_size must be >= 1"),
        (split.SplitStudyConfig(directions=("sideways",)), "SplitStudyConfig.directions must hold one or more of"),
        (split.SplitStudyConfig(grid=(4.0, -4.0, 3)), "SplitStudyConfig.grid"),
        (studies.RadiusStudyConfig(radii=(1.0, -2.0)), "RadiusStudyConfig.radii must hold one or more positive"),
        (studies.OffsetStudyConfig(prior_weights=()), "OffsetStudyConfig.prior_weights"),
        (studies.LengthStudyConfig(max_loss=0.0), "LengthStudyConfig.max_loss must be a positive"),
        (longer.LongerStudyConfig(data=data_lib.DataConfig(name="sphere")), "needs shifted_sphere data"),
        (provable_study.UnivariateConfig(patterns=("zigzag",)), "UnivariateConfig.patterns"),
        (provable_study.UnivariateConfig(optimizer="sgdd"), "sgdd"),
        (provable_study.MembershipConfig(criterion="sideways"), "MembershipConfig.criterion must be one of"),
        (provable_study.MembershipConfig(datasets=("mnist",)), "MembershipConfig.datasets"),
        (quality.QualityConfig(levers=("warp",)), "QualityConfig.levers"),
        (audit.AuditConfig(), "--model is required"),
        (audit.AuditConfig(model="m.npz", image_shape=(28, 28)), "--image_shape must be height,width,channels"),
        (main.MainConfig(kkt=kkt.KKTConfig(kink_tol=-1.0)), "KKTConfig.kink_tol must be a positive"),
        (optim_bench.OptimBenchConfig(methods=("adamw", "lion")), "OptimBenchConfig.methods must hold"),
        (optim_bench.OptimBenchConfig(steps=10, eval_every=3), "steps must be a positive multiple of eval_every"),
    ]
    for config, message in cases:
      with self.subTest(type(config).__name__ + ": " + message):
        with self.assertRaisesRegex(ValueError, message.replace("(", r"\(")):
          config.validate()

  def test_a_job_refuses_before_its_folder_exists(self):
    import os  # noqa: PLC0415
    from jaxrecon.experiments import studies  # noqa: PLC0415
    out = os.path.join(self.create_tempdir().full_path, "study")
    with self.assertRaisesRegex(ValueError, "radii"):
      studies.run_radius(studies.RadiusStudyConfig(radii=(0.0,)), "no/such/training/run", out)
    self.assertFalse(os.path.exists(out))
    with self.assertRaisesRegex(ValueError, "unknown dataset"):
      train.TrainConfig(data=train.data_lib.DataConfig(name="imagenet")).validate()


class ProgressTest(absltest.TestCase):
  """Progress lines follow absl's flags: plain on stdout at the default verbosity (0, what absl's app sets),
  silent at --verbosity=-1, through absl.logging with --logtostderr."""

  def _run(self, verbosity, logtostderr=False):
    fv = flags.FLAGS
    before = (fv.verbosity, fv["verbosity"].present, fv.logtostderr)
    self.addCleanup(lambda: (setattr(fv, "verbosity", before[0]), setattr(fv["verbosity"], "present", before[1]),
                             setattr(fv, "logtostderr", before[2])))
    fv.verbosity, fv.logtostderr = verbosity, logtostderr
    fv["verbosity"].present = 1  # as if given on the command line
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.object(absl_logging, "info") as info:
      cli.progress("step 10  loss 0.5")
    return out.getvalue(), [c.args for c in info.call_args_list]

  def test_verbosity(self):
    self.assertEqual(self._run(0), ("step 10  loss 0.5\n", []))
    self.assertEqual(self._run(1), ("step 10  loss 0.5\n", []))
    self.assertEqual(self._run(-1), ("", []))
    self.assertEqual(self._run(0, logtostderr=True), ("", [("%s", "step 10  loss 0.5")]))

if __name__ == "__main__":
  absltest.main()
