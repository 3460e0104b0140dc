"""Wall-clock timing for the benchmarks (scripts/bench_*.py): one helper each, so every benchmark times the same
way (a warm-up call that compiles, then `block_until_ready` around every timed call)."""

from __future__ import annotations

import time
from typing import Callable

import jax


def call_times(fn: Callable[[], object], repeats: int) -> list:
  """Wall times in seconds of `repeats` calls of `fn()` after one untimed warm-up call (which compiles).

  Args:
    fn: a function of no arguments returning JAX arrays (waited for with `jax.block_until_ready`).
    repeats: how many timed calls.

  Returns:
    The `repeats` times, in call order.
  """
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return times


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a square `size` x `size` matmul on the default device: the best of `repeats` timed calls.

  Args:
    dtype: the operands' dtype.
    size: the matrices' side (2,048 on a CPU; 4,096 fills a GPU better).
    repeats: timed calls.

  Returns:
    2 size^3 / (the fastest call's seconds).
  """
  a = jax.random.normal(jax.random.key(1), (size, size), jax.numpy.dtype(dtype))
  f = jax.jit(lambda u: u @ u)
  return 2.0 * size ** 3 / min(call_times(lambda: f(a), repeats))




def xla_flops(jitted: Callable, *args) -> float:
  """Floating-point operations XLA counts for one call of `jitted` (a `jax.jit`-wrapped function) on `args`.

  Args:
    jitted: the jitted function.
    *args: its arguments (arrays or shape/dtype structs; nothing runs).

  Returns:
    The compiled program's `cost_analysis()['flops']` (a matmul of (a, b) by (b, c) counts 2abc).
  """
  cost = jitted.lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per program
    cost = cost[0]
  return float(cost["flops"])
