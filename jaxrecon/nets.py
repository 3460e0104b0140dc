"""Bias-free ReLU MLPs as pure functions over a params pytree.

Phi(theta; x) = W_L^T relu(W_{L-1}^T ... relu(W_1^T x + b_1)), an L-homogeneous function of
theta = (W_1, b_1, ..., W_L): Phi(c theta; x) = c^L Phi(theta; x) for c > 0. Only the first layer may
carry a bias (appending 1 to x makes it a weight, so homogeneity is kept); deeper biases would break it.

params is a tuple of per-layer dicts {'w': (fan_in, fan_out)} with an extra 'b': (width_1,) on the first
layer when `first_bias` is set. The output is squeezed to shape (...,) when `n_out == 1` (binary) and is
(..., K) for K-class networks.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

Params = tuple  # tuple of {'w': Array, ['b': Array]} dicts


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  """Architecture of a bias-free ReLU MLP.

  d_in: input dimension. widths: hidden widths (one entry = the 2-layer net). n_out: 1 (binary, scalar
  output) or K classes. init_scales: one entry per layer (len(widths) + 1); None means the PyTorch
  nn.Linear default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), a float s means N(0, 1) * s (the reference attack's
  models use 1e-4 on the first layer and the default elsewhere). first_bias: a bias on the first layer.
  """
  d_in: int
  widths: tuple = (1000,)
  n_out: int = 1
  init_scales: Optional[tuple] = (1e-4,)
  first_bias: bool = False

  def __post_init__(self):  # a config that cannot run is refused when it is made
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot be right."""
    if self.d_in < 1 or self.n_out < 1 or not self.widths or min(self.widths) < 1:
      raise ValueError(f"bad MLPConfig sizes: {self}")
    if self.init_scales is not None and len(self.init_scales) > self.n_layers:
      raise ValueError(
          f"init_scales has {len(self.init_scales)} entries for {self.n_layers} layers")

  @property
  def n_layers(self) -> int:
    return len(self.widths) + 1

  @property
  def degree(self) -> int:
    """Homogeneity degree L (the number of weight layers)."""
    return self.n_layers

  def layer_scale(self, l: int) -> Optional[float]:
    if self.init_scales is None or l >= len(self.init_scales):
      return None
    return self.init_scales[l]


def init(key: jax.Array, config: MLPConfig, dtype=jnp.float32) -> Params:
  """Draws the parameters; layer l uses its own subkey."""
  sizes = (config.d_in,) + tuple(config.widths) + (config.n_out,)
  keys = jax.random.split(key, config.n_layers + 1)
  layers = []
  for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    scale = config.layer_scale(l)
    if scale is None:
      bound = 1.0 / jnp.sqrt(fan_in)
      w = jax.random.uniform(keys[l], (fan_in, fan_out), dtype, -bound, bound)
    else:
      w = scale * jax.random.normal(keys[l], (fan_in, fan_out), dtype)
    layer = {"w": w}
    if l == 0 and config.first_bias:
      if scale is None:
        bound = 1.0 / jnp.sqrt(fan_in)
        layer["b"] = jax.random.uniform(keys[-1], (fan_out,), dtype, -bound, bound)
      else:
        layer["b"] = scale * jax.random.normal(keys[-1], (fan_out,), dtype)
    layers.append(layer)
  return tuple(layers)


def degree(params: Params) -> int:
  """Homogeneity degree L of the network with these parameters."""
  return len(params)


def preactivations(params: Params, x: jax.Array,
                   activation: Callable = jax.nn.relu) -> list:
  """All pre-activations z_1..z_L for inputs x (..., d); z_L is the raw (..., n_out) output."""
  zs = []
  h = x
  for l, layer in enumerate(params):
    z = h @ layer["w"]
    if "b" in layer:
      z = z + jnp.expand_dims(layer["b"], tuple(range(z.ndim - 1)))
    zs.append(z)
    if l < len(params) - 1:
      h = activation(z)
  return zs


def apply(params: Params, x: jax.Array, activation: Callable = jax.nn.relu) -> jax.Array:
  """Phi(theta; x) for x of shape (..., d): (...,) for one output, (..., K) for K outputs."""
  out = preactivations(params, x, activation)[-1]
  return out[..., 0] if out.shape[-1] == 1 else out


def param_norm(params: Params) -> jax.Array:
  """||theta||_2 over all tensors."""
  return optax.tree.norm(params)


def num_params(params: Params) -> int:
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def tree_dot(a, b) -> jax.Array:
  """<a, b> summed over all leaves of two pytrees of the same structure."""
  return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a),
                                             jax.tree_util.tree_leaves(b)))


def scale_params(params: Params, c) -> Params:
  return jax.tree_util.tree_map(lambda p: p * c, params)
