"""Figures without pyplot: no backend is chosen and no global figure state is touched.

Library code draws on `matplotlib.figure.Figure` objects (matplotlib's documented way to draw without pyplot)
and writes them with `save`, so calling a job from a notebook leaves the notebook's backend and open figures
as they were. Scripts and notebooks may still use pyplot themselves.
"""

from __future__ import annotations

from jaxrecon import workdir as wd


def subplots(nrows: int = 1, ncols: int = 1, figsize=(5.5, 3.8), squeeze: bool = True):
  """(figure, axes) as pyplot.subplots would return them, on a Figure owned by the caller."""
  from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib is only needed for figures)
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig, path: str, dpi: int = 110) -> str:
  """Writes the figure as PNG (atomically, like every file of a run folder) and returns the path."""
  fig.tight_layout()
  wd.atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"), "wb")
  return path
