"""The package's layering, as it is, enforced: no module imports from a layer above its own, and modules stay
under 450 lines (a module named in CEILINGS may only shrink).

Layers, lowest first (a module may import from its own layer and the ones below):
  0 core: nets, losses, data, readers, nnls, stationarity, kkt, margin_norms, stats, credit, report, workdir, models,
    metric_writers,
    train, optim/
  1 the papers: attack/, noprior/, provable/
  2 over the papers: plotting and plotting_studies (every figure), audit (the notebook API over the attack)
  3 jobs: experiments/
  4 commands: commands/
The package's __init__ re-exports (audit, models) and is not a layer.
"""

import ast
import os

from absl.testing import absltest

import conftest

PACKAGE = os.path.join(conftest.ROOT, "jaxrecon")
LAYERS = {"attack": 1, "noprior": 1, "provable": 1, "plotting": 2, "plotting_studies": 2, "audit": 2, "experiments": 3,
          "commands": 4}
MAX_LINES = 450
# A module over the limit may be named here with its size as a ceiling, so it can only shrink (none today).
CEILINGS: dict = {}


def layer_of(module: str) -> int:
  """module: dotted name under jaxrecon ('attack.sweep', 'kkt')."""
  return LAYERS.get(module.split(".")[0], 0)


def modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, PACKAGE)
        dotted = rel[:-3].replace(os.sep, ".")
        yield rel, dotted.removesuffix(".__init__") if dotted != "__init__" else "", path


def imported(path: str, dotted: str):
  """jaxrecon modules imported anywhere in the file (function-level imports included)."""
  tree = ast.parse(open(path).read())
  package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("jaxrecon."):
          yield a.name[len("jaxrecon."):]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import
        parts = package.split(".") if package else []
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      elif base == "jaxrecon":
        base = ""
      elif base.startswith("jaxrecon."):
        base = base[len("jaxrecon."):]
      else:
        continue
      for a in node.names:  # the layer is the first component: `from jaxrecon import audit` -> audit
        yield base or a.name


class ArchitectureTest(absltest.TestCase):

  def test_no_import_goes_upward(self):
    upward = []
    for rel, dotted, path in modules():
      if not dotted:  # the package __init__
        continue
      for target in imported(path, dotted):
        if layer_of(target) > layer_of(dotted):
          upward.append(f"{rel} (layer {layer_of(dotted)}) imports {target} (layer {layer_of(target)})")
    self.assertEqual(upward, [])

  def test_the_check_sees_an_upward_import(self):
    # the parser on a file that imports a job from the core: it must be reported
    f = self.create_tempfile("core_module.py",
                             "import numpy\nfrom jaxrecon.experiments import train\ndef f():\n  from jaxrecon import plotting\n")
    got = list(imported(f.full_path, "kkt"))
    self.assertEqual([layer_of(t) for t in got], [3, 2])

  def test_modules_stay_small(self):
    over = []
    for rel, _, path in modules():
      n = sum(1 for _ in open(path))
      if n > CEILINGS.get(rel, MAX_LINES):
        over.append(f"{rel}: {n} lines (limit {CEILINGS.get(rel, MAX_LINES)})")
    self.assertEqual(over, [])



class RegistryNamesTest(absltest.TestCase):

  def test_each_registrys_literal_type_names_its_entries(self):
    import typing  # noqa: PLC0415
    from jaxrecon import data, losses, margin_norms  # noqa: PLC0415
    from jaxrecon.attack import protocols  # noqa: PLC0415
    from jaxrecon.noprior import split  # noqa: PLC0415
    from jaxrecon.optim import schedules  # noqa: PLC0415
    pairs = {"LossName": (losses.LossName, losses.LOSSES), "NormName": (margin_norms.NormName, margin_norms.NORMS),
             "DatasetName": (data.DatasetName, {**data.SYNTHETIC, **data.IMAGE_SETS}),
             "ProtocolName": (protocols.ProtocolName, protocols.PROTOCOLS),
             "StepRuleName": (schedules.StepRuleName, schedules.STEP_RULES),
             "DirectionKind": (split.DirectionKind, split.DIRECTION_KINDS)}
    for name, (lit, registry) in pairs.items():
      self.assertEqual(set(typing.get_args(lit)), set(registry), name)

if __name__ == "__main__":
  absltest.main()
