"""Flags from a config dataclass, declared once: the dataclass's fields are the flags, its docstring the help.

  binder = config_flags.Binder(provable_study.MembershipConfig())   # at import, defines --dims, --n, ...
  config = binder.build()                                             # in main(), after flags are parsed

Every leaf field of the (possibly nested) frozen dataclass becomes one flag named after the field (`names`
renames a path such as "data.name" -> "dataset"; `skip` leaves a field at its default; `clash_prefix` goes
on a name another binder already took). The type comes from the
default value: bool, int, float, str (an enum when `choices` lists its values), tuple (a comma list; its
elements parsed like the default's first element, or by `parsers`). Help comes from `help`, else the class
docstring's "Attributes:" section (`name: text`), else the field's name. `build()` returns the dataclass
with the flags' values, so a script never copies fields one by one and a run's config.json re-creates it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional

from absl import flags


def _doc_help(cls) -> dict:
  """{field: help} from a Google-style "Attributes:" section of cls's docstring."""
  m = re.search(r"\n([ \t]*)Attributes:[ \t]*\n(.*)", cls.__doc__ or "", re.S)
  if not m:
    return {}
  out, name, indent = {}, None, None
  for line in m.group(2).splitlines():
    field = re.match(r"([ \t]+)(\w+):\s*(.*)", line)
    if field and (indent is None or len(field.group(1)) == indent):
      indent, name = len(field.group(1)), field.group(2)
      out[name] = field.group(3).strip()
    elif name and line.strip() and len(line) - len(line.lstrip()) > indent:
      out[name] += " " + line.strip()
    elif line.strip():
      break  # the section ended
  return out


def _leaves(obj, prefix: str = ""):
  """(path, help, default) of every non-dataclass field, depth first."""
  helps = _doc_help(type(obj))
  for f in dataclasses.fields(obj):
    value = getattr(obj, f.name)
    path = prefix + f.name
    if dataclasses.is_dataclass(value):
      yield from _leaves(value, path + ".")
    else:
      yield path, f.metadata.get("help") or helps.get(f.name), value


def _parse_scalar(text: str, like):
  if isinstance(like, bool):
    return text.lower() in ("1", "true", "yes")
  if isinstance(like, int):
    return int(text)
  if isinstance(like, float):
    return float(text)
  return text


# --help groups a command's flags by stage: the dataclass that owns a field names its stage, a few fields
# have their own (the KKT switches of training, the evaluation settings of the attack and the audit).
OWNER_STAGES = {"DataConfig": "data", "TrainConfig": "training", "KKTConfig": "KKT", "AttackConfig": "attack",
                "SweepConfig": "attack sweep", "ReconstructConfig": "attack", "AuditConfig": "audit"}
FIELD_STAGES = {("TrainConfig", "relaxed"): "KKT", ("TrainConfig", "kink_tol"): "KKT",
                **{(owner, f): "evaluation" for owner in ("ReconstructConfig", "AuditConfig")
                   for f in ("pool_top", "half_res", "ssim_window", "ssim_sigma", "figure_pairs", "close_tol",
                             "delta", "distinct")}}
STAGE_ORDER = ("command", "audit", "data", "training", "KKT", "attack", "attack sweep", "evaluation")
STAGES: dict = {}  # flag name -> stage, filled by every Binder


def _owners(obj, prefix: str = "") -> dict:
  """path -> (the dataclass name owning the field, the field name)."""
  out = {}
  for f in dataclasses.fields(obj):
    value = getattr(obj, f.name)
    if dataclasses.is_dataclass(value):
      out.update(_owners(value, prefix + f.name + "."))
    else:
      out[prefix + f.name] = (type(obj).__name__, f.name)
  return out


class Binder:
  """Defines the flags of one config dataclass and builds the config back from them."""

  def __init__(self, default, *, names: Optional[dict] = None, help: Optional[dict] = None,  # noqa: A002
               choices: Optional[dict] = None, skip=(), parsers: Optional[dict] = None,
               flag_values=flags.FLAGS, module_name: Optional[str] = None, clash_prefix: str = ""):
    self.default = default
    self.parsers = dict(parsers or {})
    self.flags = {}  # path -> flag name
    self._fv = flag_values
    names, help, choices = dict(names or {}), dict(help or {}), dict(choices or {})  # noqa: A001
    owners = _owners(default)
    for path, doc, value in _leaves(default):
      if path in skip:
        continue
      name = names.get(path, path.rsplit(".", 1)[-1])
      if clash_prefix and name in self._fv:  # e.g. scripts/main.py: --steps trains, --attack_steps attacks
        name = clash_prefix + name
      if name in self._fv:
        raise ValueError(f"flag --{name} (for {path}) is already defined: rename it with names={{...}}")
      text = help.get(path) or doc or path
      kw = dict(flag_values=flag_values, module_name=module_name)
      if isinstance(value, (tuple, list)):
        shown = value if value is None or isinstance(value, str) else [str(v) for v in value]
        flags.DEFINE_list(name, shown, text, **kw)
      elif isinstance(value, bool):
        flags.DEFINE_bool(name, value, text, **kw)
      elif isinstance(value, int):
        flags.DEFINE_integer(name, value, text, **kw)
      elif isinstance(value, float):
        flags.DEFINE_float(name, value, text, **kw)
      elif path in choices:
        flags.DEFINE_enum(name, value, list(choices[path]), text, **kw)
      elif isinstance(value, str) or value is None:
        flags.DEFINE_string(name, value, text, **kw)
      else:
        raise TypeError(f"{path}: no flag type for a default of type {type(value).__name__}")
      self.flags[path] = name
      STAGES[name] = FIELD_STAGES.get(owners[path], OWNER_STAGES.get(owners[path][0], owners[path][0]))

  def _value(self, path: str, default):
    raw = self._fv[self.flags[path]].value
    try:
      if path in self.parsers:
        return self.parsers[path](raw)
      if isinstance(default, (tuple, list)):
        like = default[0] if default else ""
        return tuple(_parse_scalar(v, like) for v in raw)
    except (ValueError, TypeError) as e:  # one line naming the flag, e.g. --width=abc
      shown = ",".join(raw) if isinstance(raw, (list, tuple)) else raw
      kind = (f"a comma-separated list of {type(default[0]).__name__}s" if isinstance(default, (tuple, list))
              and default else "a valid value")
      raise ValueError(f"--{self.flags[path]}={shown}: expected {kind} ({e})") from None
    return raw

  def build(self, base=None, **overrides: Callable):
    """The config with every bound flag's value (overrides: {path: value} applied last).

    base: a preset of the same dataclass (e.g. a protocol): the flags given on the command line override it,
    the others keep the preset's values instead of their defaults."""
    if base is not None and type(base) is not type(self.default):
      raise TypeError(f"base must be a {type(self.default).__name__}; got {type(base).__name__}")
    values = {path: self._value(path, default) for path, _, default in _leaves(self.default)
              if path in self.flags and (base is None or self._fv[self.flags[path]].present)}
    values.update(overrides)
    return _replace_paths(self.default if base is None else base, values)


def _replace_paths(obj, values: dict, prefix: str = ""):
  changes = {}
  for f in dataclasses.fields(obj):
    value = getattr(obj, f.name)
    path = prefix + f.name
    if dataclasses.is_dataclass(value):
      changes[f.name] = _replace_paths(value, values, path + ".")
    elif path in values:
      changes[f.name] = values[path]
  return dataclasses.replace(obj, **changes)
