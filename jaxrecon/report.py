"""Numbers as people read them in progress lines and headlines (one place for every job's formatting)."""

from __future__ import annotations

import math
import os

import numpy as np


def fmt_time(s: float) -> str:
  """A duration: '42s', '3m05s', '2h07m'; '?' when unknown (not finite)."""
  if not math.isfinite(s):
    return "?"
  s = int(max(0.0, s))
  if s < 60:
    return f"{s}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fmt_loss(loss: float, log10_loss: float) -> str:
  """The loss, or 10^(log10 loss) once it is below what the dtype can hold."""
  if loss > 0 or not np.isfinite(log10_loss):
    return f"{loss:.3e}"
  return f"10^{log10_loss:.1f}"


def fmt_value(v, fmt: str = ".3g") -> str:
  """A number for a headline; None (no finite result, e.g. every attack configuration diverged) reads
  'diverged'."""
  return "diverged" if v is None else format(v, fmt)


def fmt_relaxed(rep: dict) -> str:
  """The relaxed residual as it may be read: a value when every kink pair within kink_tol was freed, an upper
  bound (with the freed count) when the QP's pair cap left some out."""
  freed, kinks = rep.get("freed_pairs"), rep.get("kink_pairs")
  if freed is not None and kinks is not None and freed < kinks:
    return (f"relaxed <= {rep['eps_rel_relaxed']:.4f} (an upper bound: {int(freed):,} of {int(kinks):,} kink "
            f"pairs freed)")
  return f"relaxed {rep['eps_rel_relaxed']:.4f}"


def column(rows: list, key: str) -> np.ndarray:
  """A column of table rows for a figure, None as NaN (a gap)."""
  return np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)


def machine() -> dict:
  """What a benchmark ran on: CPU model, core count, JAX's backend, devices and version."""
  import platform  # noqa: PLC0415
  import jax  # noqa: PLC0415
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "jax": jax.__version__}
