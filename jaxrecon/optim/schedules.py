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
from typing import Callable, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxrecon import nets

BACKOFF, RECOVER = 0.5, 1.25


class RelativeState(NamedTuple):
  """The relative rule's back-off: the step's scale in (0, 1] and the log Loss seen at the previous step."""
  scale: jax.Array
  prev_log_loss: jax.Array


class StepRule(NamedTuple):
  """A loss-normalized step rule: the factor grad log Loss is multiplied by (before the optimizer proper).

  Attributes:
    factor: (updates, state, params, log_loss, lr) -> (factor, new state); factor a scalar or None (1).
    init: params -> the rule's state (optax.EmptyState() when it keeps none).
    sets_length: the rule sets the step's length itself (lr is then dimensionless): the optimizer proper runs
      at learning rate 1.
  """
  factor: Callable
  init: Callable = lambda params: optax.EmptyState()
  sets_length: bool = False


def _log_normalized(updates, state, params, log_loss, lr):
  del updates, lr
  return jnp.maximum(1.0, -log_loss) ** (-(2.0 - 2.0 / nets.degree(params))), state


def _relative_init(params):
  dtype = jax.tree_util.tree_leaves(params)[0].dtype
  return RelativeState(jnp.ones((), dtype), jnp.full((), jnp.inf, dtype))


def _relative(updates, state, params, log_loss, lr):
  rose = log_loss > state.prev_log_loss
  scale = jnp.where(rose, state.scale * BACKOFF, jnp.minimum(state.scale * RECOVER, 1.0)).astype(state.scale.dtype)
  state = RelativeState(scale, jnp.asarray(log_loss, state.prev_log_loss.dtype))
  gnorm = nets.param_norm(updates)
  usable = (gnorm > jnp.finfo(log_loss.dtype).tiny) & jnp.isfinite(gnorm)
  factor = jnp.where(usable, lr * scale * nets.param_norm(params) / jnp.where(usable, gnorm, 1.0)
                     / jnp.maximum(1.0, -log_loss), 0.0)
  return factor, state


# The registry of step rules: one entry adds a rule to `scale_by_loss` and the optimizer `<name>_gd` to
# training (`train.make_optimizer`, `--optimizer`).
STEP_RULES = {
    "normalized": StepRule(lambda updates, state, params, log_loss, lr: (None, state)),
    "log_normalized": StepRule(_log_normalized),
    "relative": StepRule(_relative, _relative_init, sets_length=True),
}
StepRuleName = Literal["normalized", "log_normalized", "relative"]


def scale_by_loss(rule: StepRuleName, lr: float, lr_cap: Optional[float] = None
                  ) -> optax.GradientTransformationExtraArgs:
  """The loss-normalized step rules as an optax transformation of grad log Loss.

  Args:
    rule: a `STEP_RULES` name: 'normalized' (factor 1: the step is lr / Loss along -grad Loss),
      'log_normalized' (factor max(1, -log Loss)^-(2 - 2/L)) or 'relative' (||step|| / ||theta|| =
      lr / max(1, -log Loss), with the back-off above), as the module docstring says.
    lr: the rule's learning rate (dimensionless for a rule that sets the length, 'relative').
    lr_cap: any rule: the effective step lr / Loss is at most lr_cap (None = uncapped).
  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update(updates, state, params, log_loss=...)` needs
    the current log Loss (chain the optimizer proper after it).
  """
  if rule not in STEP_RULES:
    raise ValueError(f"unknown loss-normalized rule {rule!r}; expected one of {tuple(STEP_RULES)}")
  step_rule = STEP_RULES[rule]
  log_cap = None if lr_cap is None else math.log(lr_cap / lr)

  def update_fn(updates, state, params=None, *, log_loss, **extra_args):
    del extra_args
    factor, state = step_rule.factor(updates, state, params, log_loss, lr)
    if log_cap is not None:
      cap = jnp.exp(jnp.minimum(0.0, log_cap + log_loss))
      factor = cap if factor is None else jnp.minimum(factor, cap)
    if factor is not None:
      updates = jax.tree_util.tree_map(lambda g: g * factor, updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(step_rule.init, update_fn)
