"""jaxrecon: training-set reconstruction from network weights, and its limits, in JAX."""

__version__ = "0.1.0"

from jaxrecon import audit  # noqa: E402,F401  (the notebook API: jaxrecon.audit.reconstruct, ...)
from jaxrecon import models  # noqa: E402,F401  (models trained elsewhere: flax, PyTorch exports)
