"""Datasets: the paper's synthetic sets and readers for MNIST IDX and CIFAR-10 binary files.

All loaders return a `Dataset` of flat float arrays x (N, D) with binary labels y in {-1, +1} (or integer
class labels for multiclass tasks). Image sets are scaled to [0, 1]; with `subtract_mean` the per-pixel mean
of the training images is removed from train and test alike and kept in `mean`, so `x + mean` shows an image
again. An optional `offset` (a scalar or a (D,) vector) is added to every training and test input after that:
the secret-offset defence trains on shifted inputs.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import math
import os
import zlib
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MNIST_IMAGE_MAGIC = 2051
MNIST_LABEL_MAGIC = 2049
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck
# `data_dir="bundled"` reads the MNIST sample shipped with the package (the first 1,000 training and 1,200 test
# images in the publisher's IDX format; sample_data/mnist/README.md says what it is and its licence).
BUNDLED = "bundled"
SAMPLE_MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "mnist")


class DataError(ValueError):
  """A data file is missing or malformed, or the request cannot be met; the message names the file."""


class Dataset(NamedTuple):
  x_train: np.ndarray  # (N, D)
  y_train: np.ndarray  # (N,) in {-1, +1}, or int classes
  x_test: np.ndarray   # (M, D)
  y_test: np.ndarray   # (M,)
  mean: np.ndarray     # (D,) per-pixel mean removed from x (zeros if none)
  offset: np.ndarray   # (D,) offset added to x after mean removal (zeros if none)
  image_shape: tuple   # (H, W, C) for images, () for synthetic vectors
  classes_train: np.ndarray  # original class of each training point (== y for synthetic sets)
  classes_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What to load. name: 'sphere', 'shifted_sphere', 'parity_sphere', 'two_gaussians', 'mnist', 'cifar10'.

  Synthetic: n training points in R^d, n_test fresh ones. Images: n points balanced over the two binary
  classes (n // 2 each) chosen as the first in file order (`selection='first'`, as the reference) or at
  random with the seed (`selection='random'`); n_test test images balanced the same way (0 = all).
  task: 'binary' (odd/even, vehicles/animals) or 'multiclass' (the original 10 classes, n // 10 each).

  Attributes:
    name: Training data: sphere | shifted_sphere | parity_sphere | two_gaussians | mnist | cifar10.
    n: Training points (balanced over classes for image sets).
    d: Input dimension of synthetic sets.
    n_test: Test points (0 = the whole test split for image sets).
    data_dir: Directory with MNIST IDX or CIFAR-10 binary files ('bundled': the MNIST sample shipped with
      jaxrecon, 1,000 training and 1,200 test images).
    task: binary (odd/even, vehicles/animals) or multiclass.
    selection: Image selection: first (file order, as the reference) or random.
    subtract_mean: Subtract the training mean image (image sets).
    offset: Constant added to every input after mean subtraction.
    parity_k: parity_sphere: the label is the product of the signs of the first k coordinates.
    gaussian_sep: two_gaussians: distance of the means.
    radius: shifted_sphere: radius of the sphere.
    shift: shifted_sphere: the constant added to every coordinate (the sphere's centre is shift * ones).
    sphere_labels: shifted_sphere: centre (balanced, the side of the centre) | first_coordinate (the authors'
      code: the sign of the shifted first coordinate, unbalanced unless shift is 0).
    seed: Seed of the random selection.
  """
  name: str = "sphere"
  n: int = 500
  d: int = 784
  n_test: int = 1000
  data_dir: Optional[str] = None
  task: str = "binary"
  selection: str = "first"
  subtract_mean: bool = True
  offset: float = 0.0
  parity_k: int = 2
  gaussian_sep: float = 1.0
  radius: float = 1.0
  shift: float = 0.0
  sphere_labels: str = "centre"
  seed: int = 0


def rms_radius(x_ND) -> float:
  """The data radius every study measures distances in: the root mean square norm of the rows."""
  x = np.asarray(x_ND, np.float64)
  return float(np.sqrt(np.mean(np.sum(x * x, axis=1))))


# ----------------------------------------------------------------------------------------------------------
# Synthetic sets (pure functions of a key).

def sphere(key: jax.Array, n: int, d: int, radius: float = 1.0, dtype=jnp.float32):
  """n points uniform on the radius-sphere in R^d; label = sign of the first coordinate (0 -> +1)."""
  x = jax.random.normal(key, (n, d), dtype)
  x = radius * x / jnp.linalg.norm(x, axis=1, keepdims=True)
  y = jnp.where(x[:, 0] >= 0, 1, -1).astype(jnp.int32)
  return x, y


def parity_sphere(key: jax.Array, n: int, d: int, k: int = 2, dtype=jnp.float32):
  """n points uniform on the sqrt(d)-sphere; label = product of the signs of the first k coordinates."""
  x, _ = sphere(key, n, d, radius=float(np.sqrt(d)), dtype=dtype)
  y = jnp.prod(jnp.where(x[:, :k] >= 0, 1, -1), axis=1).astype(jnp.int32)
  return x, y


def shifted_sphere(key: jax.Array, n: int, d: int, radius: float = 1.0, shift: float = 0.0,
                   dtype=jnp.float32, labels: str = "centre"):
  """The synthetic set of "No Prior, No Leakage": points uniform on the radius-sphere about the centre
  shift * (1, ..., 1). labels 'centre': n // 2 points per class (the first half -1), label = the side of the
  centre in the first coordinate (each class uniform on its half-sphere). labels 'first_coordinate': the
  authors' code (RevisitKKTAttackPrior, problems/sphere.py): n points uniform on the sphere, label = the sign
  of the first coordinate AFTER the shift, so the classes are balanced only at shift 0 (for shift >= radius
  every label is +1; `load` refuses a one-class set)."""
  x, _ = sphere(key, n, d, radius, dtype)
  if labels == "first_coordinate":
    x = x + jnp.asarray(shift, dtype)
    return x, jnp.where(x[:, 0] >= 0, 1, -1).astype(jnp.int32)
  if labels != "centre":
    raise ValueError(f"labels must be 'centre' or 'first_coordinate', got {labels!r}")
  y = jnp.where(jnp.arange(n) < n // 2, -1, 1).astype(jnp.int32)
  x = x.at[:, 0].set(jnp.abs(x[:, 0]) * y.astype(dtype))
  return x + jnp.asarray(shift, dtype), y


def two_gaussians(key: jax.Array, n: int, d: int, sep: float = 1.0, dtype=jnp.float32):
  """Balanced labels; x = y * sep * e_1 + N(0, I_d): two Gaussians whose means are 2 sep apart."""
  key_x, key_y = jax.random.split(key)
  y = jnp.where(jax.random.permutation(key_y, n) < n // 2, -1, 1).astype(jnp.int32)
  x = jax.random.normal(key_x, (n, d), dtype)
  x = x.at[:, 0].add(sep * y.astype(dtype))
  return x, y


# ----------------------------------------------------------------------------------------------------------
# Readers for the publishers' formats.

def _read_bytes(path: str) -> bytes:
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found")
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot read ({e})") from None


# Deflate cannot expand data by more than about 1032x; a gzip'd file declaring more is not a real file.
MAX_DEFLATE_RATIO = 1032


def _read_exact(f, n: int, path: str, what: str) -> bytes:
  buf = f.read(n)
  if len(buf) < n:
    raise DataError(f"{path}: truncated {what} ({len(buf)} of {n} bytes)")
  return buf


IDX_CHUNK = 1 << 22  # bytes decompressed per read when rows are selected while streaming


def read_idx(path: str, rows: Optional[np.ndarray] = None) -> np.ndarray:
  """Reads an IDX file (raw or .gz): images (magic 2051) -> (N, H, W) uint8, labels (2049) -> (N,).

  Streams: the header is read and its dims checked against what the file can hold (its size; for .gz the
  deflate limit) before any payload is decompressed, and exactly the declared payload is read, so a
  malformed or hostile file fails fast. With `rows` (indices along the first axis) only those rows are kept
  while the payload streams through in 4 MiB pieces: memory is what was asked for, whatever the header
  declares; the whole file is still read to check its length. Every error names the file.
  """
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found")
  if os.path.isdir(path):
    raise DataError(f"{path}: a directory, not an IDX file")
  size = os.path.getsize(path)
  gz = path.endswith(".gz")
  try:
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
      magic = int.from_bytes(_read_exact(f, 4, path, "IDX header"), "big")
      ndim = {MNIST_IMAGE_MAGIC: 3, MNIST_LABEL_MAGIC: 1}.get(magic)
      if ndim is None:
        raise DataError(f"{path}: wrong magic number {magic} (expected {MNIST_IMAGE_MAGIC} for images "
                        f"or {MNIST_LABEL_MAGIC} for labels)")
      raw_dims = _read_exact(f, 4 * ndim, path, "IDX header")
      dims = [int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim)]
      header = 4 + 4 * ndim
      payload = math.prod(dims)  # exact (Python ints): no int64 overflow
      limit = size * MAX_DEFLATE_RATIO if gz else size - header
      if payload > limit:
        raise DataError(f"{path}: header declares dims {dims} ({payload:,} bytes) but the file "
                        f"({size:,} bytes{', gzip' if gz else ''}) cannot hold that much (truncated, or not an IDX file)")
      row_bytes = math.prod(dims[1:])
      if rows is not None:
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= dims[0]):
          raise DataError(f"{path}: row {int(rows.max())} requested, the file holds {dims[0]}")
        out, got = _stream_rows(f, rows, dims[0], row_bytes)
      else:
        out, got = _read_payload(f, payload)
      if got < payload:
        raise DataError(f"{path}: truncated: header says {dims} ({header + payload} bytes), file has "
                        f"{header + got}")
      extra = len(f.read(1 << 16))
      if extra:
        raise DataError(f"{path}: {'at least ' if extra == 1 << 16 else ''}{extra} bytes past the {dims} the "
                        "header declares")
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
  return out.reshape([dims[0] if rows is None else rows.size] + dims[1:])


def _idx_count(path: str) -> int:
  """The first dimension an IDX file's header declares (header only; the payload is checked by read_idx)."""
  try:
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
      head = _read_exact(f, 8, path, "IDX header")
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
  return int.from_bytes(head[4:8], "big")


def _read_payload(f, payload: int):
  out = np.empty(payload, np.uint8)
  got = f.readinto(memoryview(out)) if payload else 0
  while 0 < got < payload:  # gzip may return short reads
    more = f.readinto(memoryview(out)[got:])
    if not more:
      break
    got += more
  return out, got


def _stream_rows(f, rows: np.ndarray, n_rows: int, row_bytes: int):
  """(the selected rows (len(rows) * row_bytes,), payload bytes read): reads the whole payload in pieces."""
  out = np.empty((rows.size, row_bytes), np.uint8)
  order = np.argsort(rows, kind="stable")
  sorted_rows = rows[order]
  per = max(1, IDX_CHUNK // max(row_bytes, 1))
  buf = np.empty(per * row_bytes, np.uint8)
  got, start, k = 0, 0, 0
  while start < n_rows:
    count = min(per, n_rows - start)
    want = count * row_bytes
    view = memoryview(buf)[:want]
    have = 0
    while have < want:
      more = f.readinto(view[have:])
      if not more:
        break
      have += more
    got += have
    if have < want:
      break
    block = buf[:want].reshape(count, row_bytes)
    while k < sorted_rows.size and sorted_rows[k] < start + count:
      out[order[k]] = block[sorted_rows[k] - start]
      k += 1
    start += count
  return out.reshape(-1), got


def _find(data_dir: str, patterns: Sequence[str], what: str) -> str:
  if not os.path.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  for pattern in patterns:
    hits = sorted(glob.glob(os.path.join(data_dir, pattern)))
    if hits:
      return hits[0]
  raise DataError(f"{data_dir}: no {what} file (looked for {', '.join(patterns)})")


def read_mnist(data_dir: str, split: str = "train", select: Optional[Callable] = None):
  """MNIST images (N, 28, 28) uint8 and labels (N,) from the IDX files in data_dir (raw or .gz).

  select: labels (N,) -> row indices; the labels are read first and only those images are kept while the
  image file streams (memory is what was asked for, whatever a header declares)."""
  prefix = {"train": "train", "test": "t10k"}[split]
  img_path = _find(data_dir, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte",
                              f"{prefix}-images.idx3-ubyte"], f"MNIST {split} images")
  lab_path = _find(data_dir, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte",
                              f"{prefix}-labels.idx1-ubyte"], f"MNIST {split} labels")
  labels = read_idx(lab_path)
  if labels.ndim != 1:
    raise DataError(f"{lab_path}: expected a label file (magic {MNIST_LABEL_MAGIC})")
  n_images = _idx_count(img_path)
  if n_images != len(labels):
    raise DataError(f"{img_path} has {n_images} images but {lab_path} has {len(labels)} labels")
  if labels.size and labels.max() > 9:
    raise DataError(f"{lab_path}: label {labels.max()} outside 0..9")
  rows = None if select is None else np.asarray(select(labels), np.int64)
  images = read_idx(img_path, rows)
  if rows is not None:
    labels = labels[rows]
  if images.ndim != 3:
    raise DataError(f"{img_path}: expected an image file (magic {MNIST_IMAGE_MAGIC})")
  if labels.ndim != 1:
    raise DataError(f"{lab_path}: expected a label file (magic {MNIST_LABEL_MAGIC})")
  if len(images) != len(labels):
    raise DataError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
  if labels.size and labels.max() > 9:
    raise DataError(f"{lab_path}: label {labels.max()} outside 0..9")
  return images, labels


def read_cifar10_bin(path: str):
  """One CIFAR-10 binary batch: images (N, 32, 32, 3) uint8 (HWC) and labels (N,)."""
  raw = _read_bytes(path)
  if len(raw) == 0 or len(raw) % CIFAR_RECORD:
    raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records "
                    "(truncated or not a CIFAR-10 binary batch)")
  rec = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
  labels = rec[:, 0].copy()
  if labels.max() > 9:
    raise DataError(f"{path}: label byte {labels.max()} outside 0..9 (not a CIFAR-10 binary batch?)")
  images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, labels


def read_cifar10(data_dir: str, split: str = "train"):
  """All `data_batch_*.bin` (train) or `test_batch.bin` (test) of data_dir, in file order."""
  if not os.path.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  if split == "train":
    paths = sorted(glob.glob(os.path.join(data_dir, "data_batch_*.bin")),
                   key=lambda p: int("".join(c for c in os.path.basename(p) if c.isdigit()) or 0))
  else:
    paths = [os.path.join(data_dir, "test_batch.bin")]
  if not paths or not os.path.exists(paths[0]):
    raise DataError(f"{data_dir}: no CIFAR-10 {split} batches "
                    f"({'data_batch_*.bin' if split == 'train' else 'test_batch.bin'})")
  parts = [read_cifar10_bin(p) for p in paths]
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------------------
# Tasks.

def binary_label(name: str, classes: np.ndarray) -> np.ndarray:
  """MNIST: odd -> +1, even -> -1. CIFAR-10: vehicles {0,1,8,9} -> -1, animals -> +1."""
  if name == "mnist":
    return np.where(classes % 2 == 1, 1, -1).astype(np.int32)
  if name == "cifar10":
    return np.where(np.isin(classes, CIFAR_VEHICLES), -1, 1).astype(np.int32)
  raise ValueError(name)


def select_balanced(groups: np.ndarray, per_group: int, values: Sequence[int], how: str,
                    rng: Optional[np.random.Generator], source: str) -> np.ndarray:
  """Indices of `per_group` items of each group value, first in file order or at random; sorted."""
  picked = []
  for v in values:
    idx = np.flatnonzero(groups == v)
    if len(idx) < per_group:
      raise DataError(f"{source}: only {len(idx)} samples of class {v}, {per_group} requested")
    if how == "first":
      picked.append(idx[:per_group])
    elif how == "random":
      picked.append(np.sort(rng.choice(idx, per_group, replace=False)))
    else:
      raise ValueError(f"selection must be 'first' or 'random', got {how!r}")
  return np.sort(np.concatenate(picked))


def _image_task(config: DataConfig) -> Dataset:
  if config.data_dir is None:
    raise DataError(f"dataset {config.name!r} needs data_dir (a directory with the publisher's files)")
  data_dir = config.data_dir
  if data_dir == BUNDLED:
    if config.name != "mnist":
      raise DataError(f"data_dir={BUNDLED!r} is the bundled MNIST sample; {config.name!r} needs a directory "
                      "with the publisher's files")
    data_dir = SAMPLE_MNIST_DIR
  rng = np.random.default_rng(config.seed)
  source = (f"the bundled MNIST sample ({SAMPLE_MNIST_DIR}: 1,000 training / 1,200 test images; point data_dir "
            "at a full download for more)" if config.data_dir == BUNDLED else f"{config.name} in {data_dir}")
  if config.task == "binary":
    group, values = (lambda cls: binary_label(config.name, cls)), (-1, 1)
  elif config.task == "multiclass":
    group, values = (lambda cls: np.asarray(cls).astype(np.int32)), tuple(range(10))
  else:
    raise ValueError(f"task must be 'binary' or 'multiclass', got {config.task!r}")
  if config.n % len(values):
    raise DataError(f"n={config.n} is not divisible by the {len(values)} classes of the {config.task} task")
  if config.n_test % len(values):
    raise DataError(f"n_test={config.n_test} is not divisible by {len(values)} classes")
  pick_train = lambda cls: select_balanced(group(cls), config.n // len(values), values, config.selection, rng,
                                           source)
  pick_test = lambda cls: (select_balanced(group(cls), config.n_test // len(values), values, config.selection,
                                           rng, source + " (test split)") if config.n_test
                           else np.arange(len(cls)))
  if config.name == "mnist":  # the selection is made from the labels, then only those images are read
    tr_img, tr_cls = read_mnist(data_dir, "train", pick_train)
    te_img, te_cls = read_mnist(data_dir, "test", pick_test)
    tr_idx, te_idx = np.arange(len(tr_cls)), np.arange(len(te_cls))
  else:
    tr_img, tr_cls = read_cifar10(data_dir, "train")
    te_img, te_cls = read_cifar10(data_dir, "test")
    tr_idx, te_idx = pick_train(tr_cls), pick_test(te_cls)
  tr_grp, te_grp = group(tr_cls), group(te_cls)
  image_shape = tr_img.shape[1:] if tr_img.ndim == 4 else tr_img.shape[1:] + (1,)
  x_tr = tr_img[tr_idx].reshape(len(tr_idx), -1).astype(np.float64) / 255.0
  x_te = te_img[te_idx].reshape(len(te_idx), -1).astype(np.float64) / 255.0
  return _finish(config, x_tr, tr_grp[tr_idx], x_te, te_grp[te_idx], tuple(image_shape),
                 tr_cls[tr_idx].astype(np.int32), te_cls[te_idx].astype(np.int32))


def _finish(config, x_tr, y_tr, x_te, y_te, image_shape, c_tr, c_te) -> Dataset:
  mean = x_tr.mean(axis=0) if config.subtract_mean else np.zeros(x_tr.shape[1])
  offset = np.broadcast_to(np.asarray(config.offset, np.float64), mean.shape).copy()
  return Dataset(x_tr - mean + offset, y_tr.astype(np.int32), x_te - mean + offset,
                 y_te.astype(np.int32), mean, offset, image_shape, c_tr, c_te)


def load(key: jax.Array, config: DataConfig) -> Dataset:
  """Builds the dataset a config names (float64 numpy arrays; the caller casts)."""
  if config.name in ("mnist", "cifar10"):
    return _image_task(config)
  makers = {
      "sphere": lambda k, n: sphere(k, n, config.d, dtype=jnp.float64),
      "shifted_sphere": lambda k, n: shifted_sphere(k, n, config.d, config.radius, config.shift, jnp.float64,
                                                    config.sphere_labels),
      "parity_sphere": lambda k, n: parity_sphere(k, n, config.d, config.parity_k, jnp.float64),
      "two_gaussians": lambda k, n: two_gaussians(k, n, config.d, config.gaussian_sep, jnp.float64),
  }
  if config.name not in makers:
    raise DataError(f"unknown dataset {config.name!r}; expected one of "
                    f"{sorted(makers) + ['mnist', 'cifar10']}")
  if config.n < 2 or config.d < 1:
    raise DataError(f"dataset {config.name!r} needs n >= 2 and d >= 1, got n={config.n}, d={config.d}")
  key_train, key_test = jax.random.split(key)
  with jax.enable_x64(True):
    x_tr, y_tr = makers[config.name](key_train, config.n)
    x_te, y_te = makers[config.name](key_test, max(config.n_test, 1))
  x_tr, x_te = np.asarray(x_tr, np.float64), np.asarray(x_te, np.float64)[:config.n_test]
  y_tr, y_te = np.asarray(y_tr), np.asarray(y_te)[:config.n_test]
  if np.unique(y_tr).size < 2:
    raise DataError(f"dataset {config.name!r}: every training label is {int(y_tr[0])} (with sphere_labels="
                    f"{config.sphere_labels!r} the classes are balanced only near shift 0; shift {config.shift}, "
                    f"radius {config.radius})")
  synthetic_cfg = dataclasses.replace(config, subtract_mean=False)
  return _finish(synthetic_cfg, x_tr, y_tr, x_te, y_te, (), y_tr.copy(), y_te.copy())
