"""What every command shares: float64 available, its own flags in --help, and a user's mistake as one line.

A command's `main` runs through `cli.run(main, module)` instead of `app.run(main)`, from `scripts/X.py` or
from its console entry point (`jaxrecon-X`, setup.cfg). Errors a user can fix (a bad
value, a missing file, a folder that holds another run or is in use, a diverged training) print
`error: <message naming the flag, file or folder>` on stderr and exit with status 1, without a traceback;
set JAXRECON_TRACEBACK=1 to see it. Anything else is a bug and keeps its traceback.
"""

import errno
import logging
import os
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging as absl_logging
import jax

from jaxrecon.experiments import train as train_job
from jaxrecon import workdir as wd

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, wd.RunDirError, train_job.TrainingDiverged,
               flags.ValidationError)


# OS errors a user causes and can fix (a read-only or full disk, a folder where a file belongs, no permission).
USER_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EISDIR,
                         errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOENT})
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def progress(msg: str) -> None:
  """A job's progress line, as absl's flags ask: plainly on stdout at absl's default --verbosity (0);
  --verbosity=-1 or lower silences it (the run folder is written the same); --logtostderr sends it through
  absl.logging instead (timestamped lines on stderr)."""
  fv = flags.FLAGS
  if not fv.is_parsed():  # called outside a command: print
    print(msg, flush=True)
  elif fv["verbosity"].present and fv["verbosity"].value < 0:  # given on the command line (absl's app sets 0
    return                                                       # by itself, and only once per process)
  elif fv["logtostderr"].value:
    absl_logging.info("%s", msg)
  else:
    print(msg, flush=True)


def _list_own_flags(modules) -> None:
  """--help lists the flags the command's modules (and the config binders) defined, whatever the entry point:
  absl lists the key flags of the module named by sys.argv[0]."""
  from jaxrecon.commands import config_flags  # noqa: PLC0415
  fv = flags.FLAGS
  main_name = sys.argv[0]
  for module in (*modules, config_flags):
    for flag in fv.get_flags_for_module(module):
      fv.register_key_flag_for_module(main_name, flag)
  if modules and modules[0].__doc__ and "__main__" in sys.modules:
    sys.modules["__main__"].__doc__ = modules[0].__doc__  # absl's usage text


def grouped_help(modules) -> str:
  """The command's usage (its module docstring) and its flags grouped by stage (training / KKT / attack /
  evaluation ...), each group alphabetical, as absl formats one flag."""
  from jaxrecon.commands import config_flags  # noqa: PLC0415
  fv = flags.FLAGS
  groups: dict = {}
  for module in (*modules, config_flags):
    for flag in fv.get_flags_for_module(module):
      groups.setdefault(config_flags.STAGES.get(flag.name, "command"), {})[flag.name] = flag
  order = [g for g in config_flags.STAGE_ORDER if g in groups] + sorted(set(groups) - set(config_flags.STAGE_ORDER))
  lines = [(modules[0].__doc__ or "").strip(), ""] if modules else []
  for g in order:
    lines.append(f"{g} flags:")
    for name in sorted(groups[g]):
      flag = groups[g][name]
      lines += textwrap.wrap(f"--{name}: {flag.help}", 110, initial_indent="  ", subsequent_indent="    ")
      lines.append(f"    (default: {flag.default_as_str or repr('')})")
    lines.append("")
  lines.append("--helpfull lists absl's and jax's flags too.")
  return "\n".join(lines)


def run(main, *modules) -> None:
  """Runs `main` under absl with the command's `modules` (its own module first) for --help; without modules
  (a script that defines its flags itself, scripts/bench_*.py), the script's own module."""
  if not modules and "__main__" in sys.modules:
    modules = (sys.modules["__main__"],)
  _list_own_flags(modules)
  if any(a in ("--help", "-h", "-?") for a in sys.argv[1:]):  # grouped by stage; absl's --help exits 1
    print(grouped_help(modules))
    sys.exit(0)

  def wrapped(argv):
    # The trained weights and the KKT solves are float64; arrays keep the dtype a config asks for.
    jax.config.update("jax_enable_x64", True)
    # a CPU-only machine: jax's INFO line about the missing TPU backend reads as an error, and is not one
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
      return main(argv)
    except USER_ERRORS as e:
      if os.environ.get("JAXRECON_TRACEBACK"):
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except OSError as e:
      if e.errno not in USER_ERRNOS or os.environ.get("JAXRECON_TRACEBACK"):
        raise
      print(f"error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
      sys.exit(1)
  try:
    app.run(wrapped)
  except SystemExit as e:  # absl's --help exits 1, which scripts read as a failure
    if e.code == 1 and any(a in HELP_FLAGS for a in sys.argv[1:]):
      sys.exit(0)
    raise
