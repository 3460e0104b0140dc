"""Run directories: config.json, metrics.jsonl, summary.json, .npz arrays and pytree checkpoints.

Every write is atomic (a temporary file in the same directory, then os.replace), so a run killed mid-write
leaves the previous version intact. Pytrees are stored in .npz under their key paths, never pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from typing import Any, Iterable, Optional

import jax
import numpy as np


def _atomic_write(path: str, write_fn, mode: str = "w") -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
  try:
    with os.fdopen(fd, mode) as f:
      write_fn(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def to_jsonable(obj: Any) -> Any:
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.ndarray, jax.Array)):
    arr = np.asarray(obj)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  if isinstance(obj, (np.floating,)):
    return float(obj)
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.bool_,)):
    return bool(obj)
  if isinstance(obj, float) and not np.isfinite(obj):
    return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
  return obj


def write_json(path: str, obj: Any) -> None:
  _atomic_write(path, lambda f: json.dump(to_jsonable(obj), f, indent=2, sort_keys=True))


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
  """Rewrites a whole .jsonl file atomically (one JSON object per line)."""
  rows = list(rows)
  _atomic_write(path, lambda f: f.writelines(json.dumps(to_jsonable(r)) + "\n" for r in rows))


def append_jsonl(path: str, row: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(to_jsonable(row)) + "\n")


def read_jsonl(path: str) -> list:
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          break  # a torn last line from a killed run
  return rows


def write_npz(path: str, **arrays) -> None:
  _atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}), "wb")


def read_npz(path: str) -> dict:
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def _path_key(path) -> str:
  return re.sub(r"[^0-9A-Za-z_.]+", "_", jax.tree_util.keystr(path)).strip("_") or "leaf"


def flatten_tree(tree, prefix: str) -> dict:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat[f"{prefix}/{_path_key(path)}"] = np.asarray(leaf)
  return flat


def unflatten_tree(template, arrays: dict, prefix: str):
  """Fills `template`'s structure from arrays saved by flatten_tree; shapes and dtypes must match."""
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
  leaves = []
  for path, leaf in leaves_with_path:
    key = f"{prefix}/{_path_key(path)}"
    if key not in arrays:
      raise KeyError(f"checkpoint has no array {key!r}")
    value = arrays[key]
    if value.shape != np.shape(leaf):
      raise ValueError(f"checkpoint array {key!r} has shape {value.shape}, expected {np.shape(leaf)}")
    leaves.append(jax.numpy.asarray(value, dtype=jax.numpy.asarray(leaf).dtype))
  return jax.tree_util.tree_unflatten(treedef, leaves)


def checkpoint_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, "checkpoints", f"step_{step:09d}.npz")


def save_checkpoint(workdir: str, step: int, **trees) -> str:
  arrays = {"step": np.asarray(step)}
  for name, tree in trees.items():
    arrays.update(flatten_tree(tree, name))
  path = checkpoint_path(workdir, step)
  write_npz(path, **arrays)
  return path


def list_checkpoints(workdir: str) -> list:
  """Sorted [(step, path)] of the checkpoints in a workdir."""
  found = []
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return found
  for name in os.listdir(directory):
    m = re.fullmatch(r"step_(\d+)\.npz", name)
    if m:
      found.append((int(m.group(1)), os.path.join(directory, name)))
  return sorted(found)


def latest_checkpoint(workdir: str) -> Optional[tuple]:
  found = list_checkpoints(workdir)
  return found[-1] if found else None
