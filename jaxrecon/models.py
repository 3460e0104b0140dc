"""Models trained elsewhere, as the parameters jaxrecon attacks: flax (linen and nnx) trees, PyTorch state_dicts
exported to .npz or .safetensors (no torch needed), and a generic (x, y) .npz dataset.

The theory covers ReLU MLPs that are homogeneous in their parameters: no biases, except optionally one on the
first layer (it keeps the net homogeneous in (W_1, b_1, W_2, ...)); one output (binary, label sign) or K
outputs (multiclass). `check_architecture` enforces that and names the offending layer otherwise. Layers are
taken in the natural order of their names ('Dense_2' before 'Dense_10', 'net.0' before 'net.2'); when their
shapes do not chain that way (linen names modules in the order they are built, so `Dense(1)(relu(Dense(64)(x)))`
names the output layer Dense_0) the unique order in which they chain is used; pass `order=` otherwise.
Conventions: flax kernels are (in, out) like jaxrecon's; torch `Linear.weight` is (out, in) and is transposed.
A network must use ReLU between layers: the weights cannot tell, so that is the caller's statement.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from typing import Mapping, Optional, Sequence

import numpy as np

from jaxrecon import nets
from jaxrecon import readers
from jaxrecon import torch_pickle


class ArchitectureError(ValueError):
  """A model the theory does not cover (or whose layers cannot be put in order); the message names the layer."""


def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def check_architecture(layers: Sequence[tuple], *, allow_first_bias: bool = True, bias_tol: float = 0.0) -> None:
  """layers: [(name, w (fan_in, fan_out), b or None)] in forward order. Raises ArchitectureError naming the layer:
  not a matrix, not chaining, a bias after the first layer (unless all |b| <= bias_tol), no layers."""
  if not layers:
    raise ArchitectureError("no layers found (expected weight matrices named like 'kernel' or 'weight')")
  for k, (name, w, b) in enumerate(layers):
    if np.ndim(w) != 2:
      raise ArchitectureError(f"layer {name!r}: weight of shape {np.shape(w)} is not a matrix (only fully connected "
                              "ReLU layers are covered: flatten convolutions away or attack another model)")
    for what, a in (("weight", w), ("bias", b)):
      if a is None:
        continue
      if np.iscomplexobj(a) or not np.issubdtype(np.asarray(a).dtype, np.number):
        raise ArchitectureError(f"layer {name!r}: {what} of dtype {np.asarray(a).dtype} is not real-valued")
      if not np.all(np.isfinite(a)):
        raise ArchitectureError(f"layer {name!r}: {what} holds {int(np.sum(~np.isfinite(a)))} non-finite values "
                                "(NaN or inf): a diverged or corrupt model")
    if 0 in np.shape(w):
      raise ArchitectureError(f"layer {name!r}: weight of shape {np.shape(w)} has a zero-width side")
    if k and np.shape(layers[k - 1][1])[1] != np.shape(w)[0]:
      raise ArchitectureError(f"layer {name!r}: fan-in {np.shape(w)[0]} does not match the fan-out "
                              f"{np.shape(layers[k - 1][1])[1]} of {layers[k - 1][0]!r} (pass order=[...] if the "
                              f"names do not sort into the forward order: {[n for n, _, _ in layers]})")
    if b is not None and (k > 0 or not allow_first_bias):
      if np.max(np.abs(b)) > bias_tol:
        raise ArchitectureError(f"layer {name!r} has a bias (max |b| = {np.max(np.abs(b)):.3g}): only the first layer "
                                "may have one (a later bias breaks the homogeneity the theory needs)")


def from_layers(layers: Sequence[tuple], dtype=np.float64, **check) -> nets.Params:
  """jaxrecon params from [(name, w (fan_in, fan_out), b or None)] in forward order, after `check_architecture`."""
  check_architecture(layers, **check)
  out = []
  for k, (_, w, b) in enumerate(layers):
    layer = {"w": np.asarray(w, dtype)}
    if k == 0 and b is not None:
      layer["b"] = np.asarray(b, dtype)
    out.append(layer)
  return tuple(out)


def _chain(named: dict) -> Optional[list]:
  """The one order in which the layers' shapes chain (fan-out = next fan-in), or None if not unique."""
  shapes = {n: np.shape(w) for n, (w, _) in named.items()}
  if any(len(sh) != 2 for sh in shapes.values()):
    return None
  left = set(shapes)
  first = [n for n in left if all(shapes[n][0] != shapes[o][1] for o in left if o != n)]
  if len(first) != 1:
    return None
  out = first
  left.discard(first[0])
  while left:
    nxt = [n for n in left if shapes[n][0] == shapes[out[-1]][1]]
    if len(nxt) != 1:
      return None
    out.append(nxt[0])
    left.discard(nxt[0])
  return out


def _ordered(named: dict, order: Optional[Sequence[str]]) -> list:
  """Layers in the given order, else by natural name order, else (names not in forward order, e.g. linen
  modules built inside-out) the unique order in which their shapes chain."""
  names = list(order) if order is not None else sorted(named, key=_natural_key)
  if order is None:
    shapes = [np.shape(named[n][0]) for n in names]
    chains = all(len(a) == 2 and len(b) == 2 and a[1] == b[0] for a, b in zip(shapes, shapes[1:]))
    names = names if chains else (_chain(named) or names)
  missing = [n for n in names if n not in named]
  if missing:
    raise ArchitectureError(f"order names {missing} are not layers of this model; its layers: {sorted(named)}")
  return [(n, *named[n]) for n in names]


def _flatten(tree, prefix=()):
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (str(k),))
  elif isinstance(tree, (list, tuple)):
    for k, v in enumerate(tree):
      yield from _flatten(v, prefix + (str(k),))
  else:
    yield prefix, tree


def from_flax(variables, order: Optional[Sequence[str]] = None, dtype=np.float64, **check) -> nets.Params:
  """Params from a flax model. Each layer is the module holding a 'kernel'.

  Args:
    variables: a linen variables dict ({'params': {'Dense_0': {'kernel', 'bias'}, ...}}), its 'params' alone,
      or an nnx Module / nnx.State (its nnx.Param leaves; needs flax installed).
    order: module names in forward order, when neither their natural order nor their shapes decide it.
    dtype: the params' dtype.
    **check: `check_architecture`'s options (allow_first_bias, bias_tol).
  Returns:
    The params tuple (one {'w' (fan_in, fan_out)[, 'b']} dict per layer).
  Raises:
    ArchitectureError naming the layer the theory does not cover.
  """
  try:  # nnx: a Module or a State; linen trees are plain dicts
    from flax import nnx  # noqa: PLC0415 (flax is only needed to read flax models)
    if isinstance(variables, nnx.Module):
      variables = nnx.state(variables, nnx.Param)
    if isinstance(variables, nnx.State):
      variables = nnx.to_pure_dict(variables)
  except ImportError:
    pass
  if isinstance(variables, Mapping) and set(variables) >= {"params"}:
    extra = sorted(set(variables) - {"params"})
    if extra:
      raise ArchitectureError(f"variables hold collections {extra} besides 'params' (batch statistics?): not a "
                              "plain ReLU MLP")
    variables = variables["params"]
  named, stray = {}, []
  leaves = dict(_flatten(variables))
  for path, v in leaves.items():
    module = ".".join(path[:-1])
    if path[-1] == "kernel":
      named.setdefault(module, [None, None])[0] = np.asarray(v)
    elif path[-1] == "bias":
      named.setdefault(module, [None, None])[1] = np.asarray(v)
    else:
      stray.append(".".join(path))
  if stray:
    raise ArchitectureError(f"parameters {stray} are neither a kernel nor a bias: not a plain ReLU MLP")
  no_kernel = [m for m, (w, _) in named.items() if w is None]
  if no_kernel:
    raise ArchitectureError(f"modules {no_kernel} have a bias but no kernel")
  return from_layers(_ordered(named, order), dtype, **check)


def from_torch_state_dict(state_dict: Mapping, order: Optional[Sequence[str]] = None, dtype=np.float64,
                          **check) -> nets.Params:
  """Params from a PyTorch state_dict of nn.Linear layers held as numpy arrays.

  Args:
    state_dict: {'<module>.weight': (out, in), '<module>.bias': (out,)} (e.g.
      `{k: v.numpy() for k, v in model.state_dict().items()}`; a file: `load_torch`).
    order: module names in forward order, when neither their natural order nor their shapes decide it.
    dtype: the params' dtype.
    **check: `check_architecture`'s options.
  Returns:
    The params tuple, weights transposed to (fan_in, fan_out).
  Raises:
    ArchitectureError naming the entry or layer (running statistics, a later bias, non-finite values, ...).
  """
  named, stray = {}, []
  for key, v in state_dict.items():
    module, _, leaf = str(key).rpartition(".")
    if leaf == "weight":
      named.setdefault(module, [None, None])[0] = np.asarray(v).T if np.ndim(v) == 2 else np.asarray(v)
    elif leaf == "bias":
      named.setdefault(module, [None, None])[1] = np.asarray(v)
    else:
      stray.append(key)
  if stray:
    raise ArchitectureError(f"state_dict entries {stray} are neither a weight nor a bias (running statistics of a "
                            "norm layer?): not a plain ReLU MLP")
  return from_layers(_ordered(named, order), dtype, **check)


_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


MAX_MODEL_BYTES = 1 << 30  # 1 GiB of weights: 30x the reference CIFAR net in float64; `max_bytes` raises it


def _read_header(f, path: str, file_size: int) -> dict:
  raw = f.read(8)
  if len(raw) != 8:
    raise ArchitectureError(f"{path}: too short to be a .safetensors file")
  (size,) = struct.unpack("<Q", raw)
  if size > file_size - 8 or size > 100 << 20:
    raise ArchitectureError(f"{path}: .safetensors header of {size} bytes does not fit the {file_size}-byte file")
  try:
    header = json.loads(f.read(size))
  except (ValueError, UnicodeDecodeError, RecursionError) as e:
    raise ArchitectureError(f"{path}: unreadable .safetensors header ({type(e).__name__})") from None
  if not isinstance(header, dict):
    raise ArchitectureError(f"{path}: the .safetensors header is a JSON {type(header).__name__}, not an object")
  return header


def read_safetensors(path: str, max_bytes: int = MAX_MODEL_BYTES) -> dict:
  """{name: array} of a .safetensors file (8-byte little-endian header size, a JSON header, raw tensors).

  Every entry is checked before anything is allocated: a known dtype, a shape of non-negative integers whose
  size matches its byte range, ranges inside the file and not overlapping, the total under `max_bytes`.
  Raises ArchitectureError naming the file and the entry."""
  file_size = os.path.getsize(path)
  with open(path, "rb") as f:
    header = _read_header(f, path, file_size)
    base = f.tell()
    spans, total = [], 0
    for name, info in header.items():
      if name == "__metadata__":
        continue
      if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise ArchitectureError(f"{path}: tensor {name!r} lacks dtype, shape or data_offsets")
      if info["dtype"] not in _SAFETENSORS_DTYPES:
        raise ArchitectureError(f"{path}: tensor {name!r} has dtype {info['dtype']} (supported: "
                                f"{', '.join(_SAFETENSORS_DTYPES)}; export bfloat16 weights as float32)")
      shape, offs = info["shape"], info["data_offsets"]
      if not (isinstance(shape, list) and all(isinstance(v, int) and v >= 0 for v in shape)
              and isinstance(offs, list) and len(offs) == 2 and all(isinstance(v, int) for v in offs)):
        raise ArchitectureError(f"{path}: tensor {name!r} has shape {shape} / offsets {offs}: expected "
                                "non-negative integers")
      lo, hi = offs
      nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).itemsize
      if not 0 <= lo <= hi or hi - lo != nbytes:
        raise ArchitectureError(f"{path}: tensor {name!r}: shape {shape} needs {nbytes} bytes, its offsets "
                                f"[{lo}, {hi}] hold {hi - lo}")
      if base + hi > file_size:
        raise ArchitectureError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
      total += nbytes
      if total > max_bytes:
        raise ArchitectureError(f"{path}: tensors of more than {max_bytes} bytes (the limit; pass max_bytes / "
                                "--max_model_mb to raise it)")
      spans.append((lo, hi, name, info["dtype"], shape))
    spans.sort()
    for (_, h1, n1, _, _), (l2, _, n2, _, _) in zip(spans, spans[1:]):
      if l2 < h1:
        raise ArchitectureError(f"{path}: tensors {n1!r} and {n2!r} overlap in the file")
    out = {}
    for lo, hi, name, dt, shape in spans:
      f.seek(base + lo)
      out[name] = np.frombuffer(f.read(hi - lo), _SAFETENSORS_DTYPES[dt]).reshape(shape)
  return out


def read_npz_bounded(path: str, max_bytes: int = MAX_MODEL_BYTES) -> dict:
  """{name: array} of an .npz, each member's declared size (zip entry and .npy header) checked against
  `max_bytes` before it is decompressed; object arrays are refused (never pickle)."""
  def refuse_torch(names):
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
      raise ArchitectureError(f"{path}: a torch.save archive, not an .npz: read it with load_torch (or name it "
                              ".pt)")
  try:
    return readers.read_npz_bounded(path, max_bytes, check_names=refuse_torch,
                                    limit_hint="pass max_bytes / --max_model_mb to raise it")
  except readers.DataError as e:
    raise ArchitectureError(str(e)) from None


def _is_torch_zip(path: str) -> bool:
  try:
    with zipfile.ZipFile(path) as zf:
      return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in zf.namelist())
  except readers.ZIP_ERRORS:
    return False


def load_torch(path: str, order: Optional[Sequence[str]] = None, dtype=np.float64, max_bytes: int = MAX_MODEL_BYTES,
               **check) -> nets.Params:
  """Params from a PyTorch state_dict: `torch.save(model.state_dict(), "model.pt")` (read by a restricted
  unpickler that never runs the file's code: `jaxrecon.torch_pickle`), .safetensors
  (`safetensors.torch.save_file(model.state_dict(), path)`) or .npz (`np.savez(path, **{k: v.numpy() ...})`).

  Args:
    path: the file; its size and every array's declared size are checked before anything is decompressed.
    order: layer names in forward order, when the names do not sort into it.
    dtype: the params' dtype.
    max_bytes: the most bytes of weights accepted (MAX_MODEL_BYTES, 1 GiB).
    **check: `check_architecture`'s options (allow_first_bias, bias_tol).
  Returns:
    The params tuple (one {'w'[, 'b']} dict per layer).
  Raises:
    ArchitectureError naming the file and the layer or entry.
  """
  if os.path.isdir(path):
    raise ArchitectureError(f"{path}: a directory, not a model file (.pt, .safetensors or .npz)")
  if not os.path.exists(path):
    raise ArchitectureError(f"{path}: no such file")
  if str(path).endswith(".safetensors"):
    sd = read_safetensors(path, max_bytes)
  elif str(path).endswith((".pt", ".pth")) or _is_torch_zip(path):
    try:
      sd = torch_pickle.read(path, max_bytes)
    except torch_pickle.TorchFileError as e:
      raise ArchitectureError(str(e)) from None
  else:
    sd = read_npz_bounded(path, max_bytes)
  try:
    return from_torch_state_dict(sd, order, dtype, **check)
  except ArchitectureError as e:
    raise ArchitectureError(f"{path}: {e}") from None


def read_xy_npz(path: str, x_key: str = "x", y_key: str = "y"):
  """(x (N, D) float64, y (N,)) from an .npz holding them; images are flattened row by row."""
  with np.load(path, allow_pickle=False) as z:
    missing = [k for k in (x_key, y_key) if k not in z.files]
    if missing:
      raise ValueError(f"{path}: no array {missing} (it holds {z.files})")
    x, y = np.asarray(z[x_key], np.float64), np.asarray(z[y_key])
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"{path}: {x.shape[0]} inputs but {y.shape[0]} labels")
  return x.reshape(x.shape[0], -1), y
