"""Every script under bench/ (the measurement scripts behind docs' numbers) and every scripts/bench_*.py still
matches the library: it compiles, its jaxrecon imports resolve, and every attribute it reads from a jaxrecon
module exists (a rename in the library, like `quality._Judge` -> `quality.Judge`, fails here instead of when
someone re-runs the script). And every bench/ script RUNS: the slow tier runs each at a toy size in a fresh
process (the scripts/bench_*.py commands run at toy size in scripts_test.py)."""

import ast
import glob
import importlib
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import pytest

import conftest


def _scripts():
  """bench/**/*.py and the benchmark commands (jaxrecon/commands/bench_*.py, scripts/bench_*.py their shims; each
  runs at toy size in scripts_test.py)."""
  return sorted(glob.glob(os.path.join(conftest.ROOT, "bench", "**", "*.py"), recursive=True)
                + glob.glob(os.path.join(conftest.ROOT, "scripts", "bench_*.py"))
                + glob.glob(os.path.join(conftest.ROOT, "jaxrecon", "commands", "bench_*.py")))


def unresolved(path: str) -> list:
  """`alias.name` reads of jaxrecon modules (and `from jaxrecon.x import name`) that do not exist."""
  tree = ast.parse(open(path).read(), path)
  aliases, missing = {}, []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxrecon"):
      if node.module.startswith("jaxrecon.commands.bench_"):
        # a shim: the command's own file is checked in its turn (importing every command in one process
        # would define their flags twice)
        if not os.path.exists(os.path.join(conftest.ROOT, *node.module.split(".")) + ".py"):
          missing.append(node.module)
        continue
      mod = importlib.import_module(node.module)
      for a in node.names:
        try:
          aliases[a.asname or a.name] = importlib.import_module(f"{node.module}.{a.name}")
        except ImportError:
          if not hasattr(mod, a.name):
            missing.append(f"{node.module}.{a.name}")
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("jaxrecon"):
          aliases[a.asname or a.name.split(".")[0]] = importlib.import_module(a.asname and a.name or "jaxrecon")
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
      if not hasattr(aliases[node.value.id], node.attr):
        missing.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
  return missing


class BenchScriptsTest(absltest.TestCase):

  def test_every_bench_script_matches_the_library(self):
    scripts = _scripts()
    self.assertNotEmpty(scripts)
    bad = {os.path.relpath(p, conftest.ROOT): m for p in scripts if (m := unresolved(p))}
    self.assertEqual(bad, {})

  def test_the_check_sees_a_renamed_attribute(self):
    f = self.create_tempfile("renamed.py", "from jaxrecon.experiments import quality\njudge = quality._Judge(None, 1)\n")
    self.assertEqual(unresolved(f.full_path), ["quality._Judge (line 2)"])


def _toy_train_run(path: str) -> str:
  """A finished training run at toy size (10 bundled MNIST digits, 784-16-1 with a first-layer bias)."""
  from jaxrecon import data as data_lib  # noqa: PLC0415
  from jaxrecon import train  # noqa: PLC0415
  from jaxrecon.experiments import train as train_job  # noqa: PLC0415
  cfg = train.TrainConfig(data=data_lib.DataConfig(name="mnist", n=10, n_test=40, data_dir=data_lib.BUNDLED),
                          widths=(16,), first_bias=True, optimizer="relative_gd", lr=0.03, steps=60, log_every=30,
                          relaxed=False)
  train_job.run(cfg, path, log=lambda m: None)
  return path


# Each bench/ script with toy arguments ({tmp}: a fresh folder; {train}: a toy training run inside it).
TOY_RUNS = {
    "bench/fidelity/measure/baseline.py": ["{tmp}/baseline.json", "10"],
    "bench/fidelity/measure/flow.py": ["10", "5", "8", "30", "1,0.5", "{tmp}/flow.json"],
    "bench/fidelity/measure/sched.py": ["10", "5", "8", "100", "gd:0.5;relative_gd:0.03"],
    "bench/fidelity/measure/sched_real.py": ["mnist", "2", "relative_gd:0.03", "10", "{tmp}/sched_real.json"],
    "bench/fidelity/measure/relax_full.py": ["{train}"],
    "bench/fidelity/measure/table.py": ["bench/fidelity/schedule_table_sphere.json"],
    "bench/quality/levers_seeds.py": ["{tmp}", "{tmp}/levers.json", "1", "0.005"],
}


@pytest.mark.slow
class BenchScriptsRunTest(parameterized.TestCase):

  def test_every_bench_script_has_a_toy_run(self):
    here = {os.path.relpath(p, conftest.ROOT) for p in glob.glob(os.path.join(conftest.ROOT, "bench", "**", "*.py"),
                                                                 recursive=True)}
    self.assertEqual(here, set(TOY_RUNS))

  @parameterized.named_parameters((os.path.basename(k)[:-3], k) for k in TOY_RUNS)
  def test_runs(self, script):
    tmp = self.create_tempdir().full_path
    args = [a.format(tmp=tmp, train="{train}") for a in TOY_RUNS[script]]
    if "{train}" in args or script.endswith("levers_seeds.py"):
      train_dir = _toy_train_run(os.path.join(tmp, "train_fast"))
      args = [a.replace("{train}", train_dir) for a in args]
    env = dict(os.environ, JAXRECON_DATA_DIR="bundled", JAX_PLATFORMS="cpu",
               PYTHONPATH=conftest.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(conftest.ROOT, script), *args], cwd=conftest.ROOT,
                          capture_output=True, text=True, env=env, timeout=600)
    self.assertEqual(proc.returncode, 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    outs = [a for a in args if a.endswith(".json") and a.startswith(tmp)]
    for out in outs:
      self.assertTrue(os.path.getsize(out) > 2, out)


if __name__ == "__main__":
  absltest.main()
