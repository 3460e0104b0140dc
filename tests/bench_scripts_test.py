"""Every script under bench/ (the one-off measurement scripts behind docs' numbers) and every scripts/bench_*.py
still matches the library:
it compiles, its jaxrecon imports resolve, and every attribute it reads from a jaxrecon module exists (a rename
in the library, like `quality._Judge` -> `quality.Judge`, fails here instead of when someone re-runs the
script). Running them needs trained runs and minutes each: their numbers' commands are in docs/."""

import ast
import glob
import importlib
import os

from absl.testing import absltest

import conftest


def _scripts():
  """bench/**/*.py and the benchmark commands scripts/bench_*.py (most of those also run at toy size in
  scripts_test.py)."""
  return sorted(glob.glob(os.path.join(conftest.ROOT, "bench", "**", "*.py"), recursive=True)
                + glob.glob(os.path.join(conftest.ROOT, "scripts", "bench_*.py")))


def unresolved(path: str) -> list:
  """`alias.name` reads of jaxrecon modules (and `from jaxrecon.x import name`) that do not exist."""
  tree = ast.parse(open(path).read(), path)
  aliases, missing = {}, []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxrecon"):
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
    import tempfile  # noqa: PLC0415
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
      f.write("from jaxrecon.experiments import quality\njudge = quality._Judge(None, 1)\n")
    self.addCleanup(os.remove, f.name)
    self.assertEqual(unresolved(f.name), ["quality._Judge (line 2)"])


if __name__ == "__main__":
  absltest.main()
