"""What every script shares: float64 available, and a user's mistake as one line with a non-zero exit.

A script's `main` runs through `cli.run(main)` instead of `app.run(main)`. Errors a user can fix (a bad
value, a missing file, a folder that holds another run or is in use, a diverged training) print
`error: <message naming the flag, file or folder>` on stderr and exit with status 1, without a traceback;
set JAXRECON_TRACEBACK=1 to see it. Anything else is a bug and keeps its traceback.
"""

import os
import sys

from absl import app
from absl import flags
import jax

from jaxrecon.experiments import train as train_job
from jaxrecon import workdir as wd

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, wd.RunDirError, train_job.TrainingDiverged,
               flags.ValidationError)


def run(main) -> None:
  def wrapped(argv):
    # The trained weights and the KKT solves are float64; arrays keep the dtype a config asks for.
    jax.config.update("jax_enable_x64", True)
    try:
      return main(argv)
    except USER_ERRORS as e:
      if os.environ.get("JAXRECON_TRACEBACK"):
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
  app.run(wrapped)
