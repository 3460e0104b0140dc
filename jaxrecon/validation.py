"""The one way a config refuses values it cannot run with: its `validate()` method, built from these checks.

Every config dataclass has `validate()`, which raises ValueError naming the field and the value (and reads no
file); the jobs call it before they create a run folder (`workdir.job` does it for every decorated job), so a
bad flag or a bad notebook config costs nothing. The checks here keep the messages alike.
"""

import math
from typing import Iterable


def check(ok: bool, message: str) -> None:
  """Raises ValueError(message) unless ok."""
  if not ok:
    raise ValueError(message)


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive(config, *names: str) -> None:
  """Each named field is a finite number > 0."""
  for name in names:
    v = getattr(config, name)
    check(_number(v) and v > 0, f"{type(config).__name__}.{name} must be a positive number; got {v!r}")


def at_least(config, low, *names: str) -> None:
  """Each named field is a finite number >= low."""
  for name in names:
    v = getattr(config, name)
    check(_number(v) and v >= low, f"{type(config).__name__}.{name} must be >= {low}; got {v!r}")


def each_at_least(config, low, name: str, nonempty: bool = True) -> None:
  """The named tuple field holds finite numbers >= low (and at least one, when nonempty)."""
  vals = tuple(getattr(config, name))
  check((vals or not nonempty) and all(_number(v) and v >= low for v in vals),
        f"{type(config).__name__}.{name} must hold {'one or more ' if nonempty else ''}numbers >= {low}; "
        f"got {vals!r}")


def each_positive(config, name: str) -> None:
  """The named tuple field holds one or more finite numbers > 0."""
  vals = tuple(getattr(config, name))
  check(vals and all(_number(v) and v > 0 for v in vals),
        f"{type(config).__name__}.{name} must hold one or more positive numbers; got {vals!r}")


def one_of(config, name: str, options: Iterable[str]) -> None:
  """The named field is one of options."""
  options = tuple(options)
  v = getattr(config, name)
  check(v in options, f"{type(config).__name__}.{name} must be one of {', '.join(options)}; got {v!r}")


def each_one_of(config, name: str, options: Iterable[str]) -> None:
  """The named tuple field holds one or more of options."""
  options = tuple(options)
  vals = tuple(getattr(config, name))
  check(vals and all(v in options for v in vals),
        f"{type(config).__name__}.{name} must hold one or more of {', '.join(options)}; got {vals!r}")
