"""jaxrecon: training-set reconstruction from network weights, and its limits, in JAX."""

__version__ = "0.1.0"
