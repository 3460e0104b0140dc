"""The loss-normalized step rules that train homogeneous nets into the KKT regime, as optax transformations.

Each is a `GradientTransformationExtraArgs` that takes the gradient of log Loss (= grad Loss / Loss, computed in
log space so it keeps working after the loss underflows) and the extra argument `log_loss`, and multiplies the
gradient by a factor; chain it before the optimizer that applies the learning rate:
- 'relative': ||step|| / ||theta|| = lr / max(1, -log Loss) (chained with sgd(1.0)): the step length is set
  here, dimensionless (no data scale, width or depth in it). Why 1/|log Loss|: for an L-homogeneous net a
  step of constant relative size makes the direction chatter once the soft-min over margins that log Loss
  stands for sharpens; shrinking it like 1/|log Loss| makes the loss fall by a roughly constant factor per
  step while theta keeps tracking the gradient flow.
- 'log_normalized': factor max(1, -log Loss)^-(2 - 2/L) for an L-homogeneous net.
- 'normalized': factor 1 (the step is lr / Loss along -grad Loss).
lr_cap (any rule): the factor is at most lr_cap Loss / lr, i.e. the effective step lr / Loss <= lr_cap.

'relative' backs off: its state keeps a scale (1 at start) and the previous step's log Loss; when the loss
rose over the last step the scale halves, otherwise it grows by 1.25 up to 1. A run whose loss falls at every
step never leaves scale 1 (the same arithmetic as without it); one that chatters (a point that stays
unseparated, a step too long for the curvature) takes shorter steps instead of blowing up. A zero or
non-finite gradient gives no step (not 0 x inf).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxrecon import nets

RULES = ("normalized", "log_normalized", "relative")
BACKOFF, RECOVER = 0.5, 1.25


class RelativeState(NamedTuple):
  """The relative rule's back-off: the step's scale in (0, 1] and the log Loss seen at the previous step."""
  scale: jax.Array
  prev_log_loss: jax.Array


def scale_by_loss(rule: str, lr: float, lr_cap: Optional[float] = None) -> optax.GradientTransformationExtraArgs:
  """The loss-normalized step rules as an optax transformation of grad log Loss.

  Args:
    rule: 'normalized' (factor 1: the step is lr / Loss along -grad Loss), 'log_normalized' (factor
      max(1, -log Loss)^-(2 - 2/L)) or 'relative' (||step|| / ||theta|| = lr / max(1, -log Loss), with the
      back-off above), as the module docstring says.
    lr: the rule's learning rate (dimensionless for 'relative').
    lr_cap: any rule: the effective step lr / Loss is at most lr_cap (None = uncapped).
  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update(updates, state, params, log_loss=...)` needs
    the current log Loss (chain the optimizer proper after it).
  """
  if rule not in RULES:
    raise ValueError(f"unknown loss-normalized rule {rule!r}; expected one of {RULES}")
  log_cap = None if lr_cap is None else math.log(lr_cap / lr)

  def init_fn(params):
    if rule != "relative":
      return optax.EmptyState()
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    return RelativeState(jnp.ones((), dtype), jnp.full((), jnp.inf, dtype))

  def update_fn(updates, state, params=None, *, log_loss, **extra_args):
    del extra_args
    factor = None
    if rule == "log_normalized":
      power = 2.0 - 2.0 / nets.degree(params)
      factor = jnp.maximum(1.0, -log_loss) ** (-power)
    if rule == "relative":
      rose = log_loss > state.prev_log_loss
      scale = jnp.where(rose, state.scale * BACKOFF, jnp.minimum(state.scale * RECOVER, 1.0)).astype(
          state.scale.dtype)
      state = RelativeState(scale, jnp.asarray(log_loss, state.prev_log_loss.dtype))
      gnorm = nets.param_norm(updates)
      usable = (gnorm > jnp.finfo(log_loss.dtype).tiny) & jnp.isfinite(gnorm)
      factor = jnp.where(usable, lr * scale * nets.param_norm(params) / jnp.where(usable, gnorm, 1.0)
                         / jnp.maximum(1.0, -log_loss), 0.0)
    if log_cap is not None:
      cap = jnp.exp(jnp.minimum(0.0, log_cap + log_loss))
      factor = cap if factor is None else jnp.minimum(factor, cap)
    if factor is not None:
      updates = jax.tree_util.tree_map(lambda g: g * factor, updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
