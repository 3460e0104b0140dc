"""Test setup: float64 available (arrays keep the dtype they are given), silent broadcasting raises.

The suite runs toy sizes, where compiling is most of a test's time and LLVM's optimization is most of the
compile: tests compile with XLA's CPU backend optimization off (`--xla_backend_optimization_level=0`,
expensive LLVM passes disabled), which halves the suite's wall time and changes no property a test checks
(results agree to float rounding; the benchmarks and the commands keep XLA's defaults). Set
JAXRECON_TEST_XLA_OPT=1 to test with the defaults.

Compiled XLA programs are cached on disk for the session (and for the scripts the tests start, through the
environment): many tests compile the same small programs, and compiling is most of a test's time on a CPU.
The cache is a fresh folder removed at exit (set JAX_COMPILATION_CACHE_DIR to keep one between sessions),
so the suite's time is the time of a cold start.
"""

import atexit
import os
import shutil
import sys
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxrecon-test-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if not os.environ.get("JAXRECON_TEST_XLA_OPT"):
  _fast_compile = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _fast_compile).strip()
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Test folders (absltest's create_tempdir) under one folder for the session, removed at exit; absltest reads
# TEST_TMPDIR when it is imported, and reads its --test_tmpdir flag, so the flags are marked parsed (pytest
# does not run absl's app; the commands' tests parse their own flags again).
if "TEST_TMPDIR" not in os.environ:
  os.environ["TEST_TMPDIR"] = tempfile.mkdtemp(prefix="jaxrecon-tests-")
  atexit.register(shutil.rmtree, os.environ["TEST_TMPDIR"], ignore_errors=True)

from absl import flags  # noqa: E402
from absl.testing import absltest  # noqa: E402, F401 (defines --test_tmpdir from TEST_TMPDIR)
import jax  # noqa: E402

flags.FLAGS.mark_as_parsed()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def shared_data_dir():
  """The real-data directory: $JAXRECON_DATA_DIR, else ../shared/data beside the checkout (or None)."""
  path = os.environ.get("JAXRECON_DATA_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "data")
  return path if os.path.isdir(path) else None


def pytest_collection_modifyitems(items):
  """The slow tier's tests first, the longest (the main job, ~50 s) at the head: xdist hands tests out in this
  order, so the workers finish together instead of one running the longest test alone at the end."""
  items.sort(key=lambda item: (item.get_closest_marker("slow") is None, item.name != "test_main_job"))
