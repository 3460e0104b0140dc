"""Test setup: float64 available (arrays keep the dtype they are given), silent broadcasting raises."""

import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def shared_data_dir():
  """The real-data directory: $JAXRECON_DATA_DIR, else ../shared/data beside the checkout (or None)."""
  path = os.environ.get("JAXRECON_DATA_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "data")
  return path if os.path.isdir(path) else None
