"""`python scripts/bench_optim.py --help`: its flags and docs are in jaxrecon/commands/bench_optim.py."""

import os

# math-library threads pinned to one before numpy / JAX load (see the command's docstring)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_v, "1")

from jaxrecon.commands.bench_optim import console  # noqa: E402

if __name__ == "__main__":
  console()
