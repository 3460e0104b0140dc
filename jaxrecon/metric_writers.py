"""Metric writers: where a job's metrics go besides its run folder's metrics.jsonl.

A writer is anything with CLU's `metric_writers` interface (`write_scalars(step, scalars)`, `flush()`,
`close()`): a `clu.metric_writers` writer (`create_default_writer(logdir)`, TensorBoard through TensorFlow or
torch) can be passed as it is. `TensorBoardWriter` writes TensorBoard event files through tensorboardX, a light
package (the `tensorboard` extra: `pip install -e ".[tensorboard]"`), for users with neither TensorFlow nor torch.

Jobs take `writer=None`: metrics.jsonl is always written (resume and the analyses read it); a writer gets the
same rows' numbers as scalars, named `prefix/key` (`train/loss`, `attack/config_3/loss`), at the row's step.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, Optional, Protocol


class MetricWriter(Protocol):
  """CLU's `metric_writers.MetricWriter`, the part the jobs call."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    ...

  def flush(self) -> None:
    ...

  def close(self) -> None:
    ...


def scalars_of(row: Mapping, prefix: str, skip: tuple = ("step",)) -> dict:
  """The finite real numbers of a metrics row, named `prefix/key` (nested dicts as `prefix/key/sub`).

  Booleans, strings, lists and non-finite values are left out (TensorBoard plots finite scalars)."""
  out = {}
  for k, v in row.items():
    if k in skip:
      continue
    name = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(scalars_of(v, name, skip=()))
    elif isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
      out[name] = float(v)
  return out


def write_row(writer: Optional[MetricWriter], step: int, row: Mapping, prefix: str) -> None:
  """Sends one metrics row to `writer` (nothing when it is None)."""
  if writer is not None:
    scalars = scalars_of(row, prefix)
    if scalars:
      writer.write_scalars(int(step), scalars)


class TensorBoardWriter:
  """TensorBoard event files in `logdir` through tensorboardX (`pip install -e ".[tensorboard]"`).

  Args:
    logdir: the folder for the event files (created if missing).
  """

  def __init__(self, logdir: str):
    try:
      from tensorboardX import SummaryWriter  # noqa: PLC0415 (an optional extra)
    except ImportError:
      raise ImportError("TensorBoardWriter needs tensorboardX: pip install -e \".[tensorboard]\" (or pass a "
                        "clu.metric_writers writer instead)") from None
    self.logdir = logdir
    self._writer = SummaryWriter(logdir=logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(name, float(value), global_step=int(step))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
