"""`--tensorboard_dir`: a job's metrics also as TensorBoard event files (the `tensorboard` extra)."""

import contextlib

from absl import flags

from jaxrecon import metric_writers

flags.DEFINE_string("tensorboard_dir", None,
                    "Also write the job's metrics as TensorBoard event files here (needs the tensorboard extra: "
                    "pip install -e \".[tensorboard]\"); metrics.jsonl is written either way.")


@contextlib.contextmanager
def writer():
  """The writer --tensorboard_dir asks for (None without it), closed when the job ends."""
  logdir = flags.FLAGS.tensorboard_dir
  if not logdir:
    yield None
    return
  try:
    w = metric_writers.TensorBoardWriter(logdir)
  except ImportError as e:
    raise ValueError(f"--tensorboard_dir: {e}") from None
  try:
    yield w
  finally:
    w.close()
