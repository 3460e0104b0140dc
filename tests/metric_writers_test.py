"""The metric writers: the scalars a row gives (by hand), and TensorBoard event files read back with the event
protocol buffer and the TFRecord framing parsed here (length, masked CRC32-C, payload, masked CRC32-C), not
through the writer's own reader. The jobs' rows reach a writer in audit_test (train and attack) and
scripts_test (jaxrecon-train --tensorboard_dir)."""

import glob
import os
import struct
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np

from jaxrecon import metric_writers


def _crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc ^= b
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(logdir: str) -> dict:
  """{tag: [(step, value), ...]} of every scalar in logdir's event files, CRCs checked."""
  from tensorboardX.proto import event_pb2  # noqa: PLC0415
  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      buf = f.read()
    pos = 0
    while pos < len(buf):
      header = buf[pos:pos + 8]
      (length,) = struct.unpack("<Q", header)
      (crc_len,) = struct.unpack("<I", buf[pos + 8:pos + 12])
      assert crc_len == _masked(_crc32c(header)), path
      payload = buf[pos + 12:pos + 12 + length]
      (crc_data,) = struct.unpack("<I", buf[pos + 12 + length:pos + 16 + length])
      assert crc_data == _masked(_crc32c(payload)), path
      pos += 16 + length
      event = event_pb2.Event.FromString(payload)
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def has_tensorboardx() -> bool:
  try:
    import tensorboardX  # noqa: F401, PLC0415
    return True
  except ImportError:
    return False


class Recorder:
  """A writer that keeps what it is given (CLU's interface)."""

  def __init__(self):
    self.calls, self.closed = [], False

  def write_scalars(self, step, scalars):
    self.calls.append((step, dict(scalars)))

  def flush(self):
    pass

  def close(self):
    self.closed = True


class ScalarsTest(absltest.TestCase):

  def test_finite_reals_named_by_prefix(self):
    row = {"step": 10, "loss": 0.5, "acc": np.float64(1.0), "n": 3, "ok": True, "name": "gd", "bad": float("nan"),
           "inf": float("inf"), "curve": [1, 2], "sub": {"a": 2.0, "b": "x"}}
    self.assertEqual(metric_writers.scalars_of(row, "train"),
                     {"train/loss": 0.5, "train/acc": 1.0, "train/n": 3.0, "train/sub/a": 2.0})
    rec = Recorder()
    metric_writers.write_row(rec, 10, row, "train")
    metric_writers.write_row(None, 10, row, "train")  # no writer: nothing happens
    metric_writers.write_row(rec, 11, {"step": 11, "name": "gd"}, "train")  # nothing numeric: no call
    self.assertEqual([s for s, _ in rec.calls], [10])

  def test_without_the_extra_the_error_names_it(self):
    with mock.patch.dict(sys.modules, {"tensorboardX": None}):  # as if it were not installed
      with self.assertRaisesRegex(ImportError, r"pip install -e \"\.\[tensorboard\]\""):
        metric_writers.TensorBoardWriter(self.create_tempdir().full_path)


@absltest.skipUnless(has_tensorboardx(), "tensorboardX is not installed (the tensorboard extra)")
class TensorBoardTest(absltest.TestCase):

  def test_event_files_hold_the_scalars(self):
    d = self.create_tempdir().full_path
    w = metric_writers.TensorBoardWriter(d)
    w.write_scalars(1, {"train/loss": 0.25, "train/acc": 0.5})
    w.write_scalars(7, {"train/loss": 0.125})
    w.close()
    ev = read_events(d)
    self.assertEqual(ev["train/loss"], [(1, 0.25), (7, 0.125)])
    self.assertEqual(ev["train/acc"], [(1, 0.5)])


if __name__ == "__main__":
  absltest.main()
