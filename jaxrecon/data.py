"""Datasets: the paper's synthetic sets, and image tasks from MNIST IDX / CIFAR-10 binary files
(`jaxrecon.readers` reads those; its names are re-exported here).

All loaders return a `Dataset` of flat float arrays x (N, D) with binary labels y in {-1, +1} (or integer
class labels for multiclass tasks). Image sets are scaled to [0, 1]; with `subtract_mean` the per-pixel mean
of the training images is removed from train and test alike and kept in `mean`, so `x + mean` shows an image
again. An optional `offset` (a scalar or a (D,) vector) is added to every training and test input after that:
the secret-offset defence trains on shifted inputs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Literal, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.readers import (CIFAR_RECORD, IDX_CHUNK, MAX_DEFLATE_RATIO, MNIST_IMAGE_MAGIC,  # noqa: F401
                              MNIST_LABEL_MAGIC, DataError, read_cifar10, read_cifar10_bin, read_idx, read_mnist)

CIFAR_VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck
# `data_dir="bundled"` reads the MNIST sample shipped with the package (the first 1,000 training and 1,200 test
# images in the publisher's IDX format; sample_data/mnist/README.md says what it is and its licence).
BUNDLED = "bundled"
SPHERE_LABELS = ("centre", "first_coordinate")  # shifted_sphere's labellings (see `shifted_sphere`)
SAMPLE_MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "mnist")


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

  def validate(self) -> None:
    """Raises DataError (a ValueError) naming the field a load cannot honour; reads no file."""
    if self.name not in datasets():
      raise DataError(f"unknown dataset {self.name!r}; expected one of {list(datasets())} (the registries "
                      "data.SYNTHETIC and data.IMAGE_SETS)")
    if self.task not in ("binary", "multiclass"):
      raise DataError(f"task must be 'binary' or 'multiclass', got {self.task!r}")
    if self.selection not in ("first", "random"):
      raise DataError(f"selection must be 'first' or 'random', got {self.selection!r}")
    if self.n_test < 0:
      raise DataError(f"n_test must be >= 0, got {self.n_test}")
    if not is_image(self.name):
      if self.n < 2 or self.d < 1:
        raise DataError(f"dataset {self.name!r} needs n >= 2 and d >= 1, got n={self.n}, d={self.d}")
      if self.sphere_labels not in SPHERE_LABELS:
        raise DataError(f"sphere_labels must be one of {SPHERE_LABELS}, got {self.sphere_labels!r}")
      if self.name == "parity_sphere" and not 1 <= self.parity_k <= self.d:
        raise DataError(f"parity_k must be in [1, d={self.d}], got {self.parity_k}")
      if self.name == "shifted_sphere" and not self.radius > 0:
        raise DataError(f"radius must be positive, got {self.radius}")
      return
    if self.data_dir is None:
      raise DataError(f"dataset {self.name!r} needs data_dir (a directory with the publisher's files)")
    if self.data_dir == BUNDLED and IMAGE_SETS[self.name].bundled_dir is None:
      raise DataError(f"data_dir={BUNDLED!r} is the bundled MNIST sample; {self.name!r} needs a directory "
                      "with the publisher's files")
    classes = 2 if self.task == "binary" else IMAGE_SETS[self.name].n_classes
    if self.n < classes or self.n % classes:
      raise DataError(f"n={self.n} is not a positive multiple of the {classes} classes of the {self.task} task")
    if self.n_test % classes:
      raise DataError(f"n_test={self.n_test} is not divisible by {classes} classes")


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
  if labels not in SPHERE_LABELS:
    raise ValueError(f"labels must be one of {SPHERE_LABELS}, got {labels!r}")
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
# Tasks.

def binary_label(name: str, classes: np.ndarray) -> np.ndarray:
  """The reference's binary task of an image set: MNIST odd -> +1, even -> -1; CIFAR-10 vehicles {0,1,8,9} -> -1,
  animals -> +1."""
  return np.asarray(IMAGE_SETS[name].binary_label(np.asarray(classes)), np.int32)


def _selected(read: Callable) -> Callable:
  """A reader that returns the whole split, made to apply the caller's selection itself."""
  def read_and_select(data_dir: str, split: str, select: Callable):
    images, classes = read(data_dir, split)
    idx = np.asarray(select(classes), np.int64)
    return images[idx], classes[idx]
  return read_and_select


class ImageSet(NamedTuple):
  """An image data set in its publisher's format: read(data_dir, split, select) -> (images (N, H, W[, C]) uint8,
  classes (N,)) keeping only the rows select(classes) picks; the reference's binary labels of its classes; its
  class count; the directory of a sample shipped with the package (data_dir='bundled'), if any."""
  read: Callable
  binary_label: Callable
  n_classes: int
  bundled_dir: Optional[str] = None


class Synthetic(NamedTuple):
  """A generated data set: make(config, key, n) -> (x (n, d) float64, y (n,) +-1)."""
  make: Callable


# The dataset registry: the one place a data set is named. `DataConfig.name`, `--dataset`, the jobs' image /
# vector and class-count choices look it up here; a new data set is one entry (tests/data_test.py adds one).
IMAGE_SETS: dict = {
    "mnist": ImageSet(read_mnist, lambda c: np.where(c % 2 == 1, 1, -1), 10, SAMPLE_MNIST_DIR),
    "cifar10": ImageSet(_selected(read_cifar10), lambda c: np.where(np.isin(c, CIFAR_VEHICLES), -1, 1), 10),
}
DatasetName = Literal["sphere", "shifted_sphere", "parity_sphere", "two_gaussians", "mnist", "cifar10"]
SYNTHETIC: dict = {
    "sphere": Synthetic(lambda c, k, n: sphere(k, n, c.d, dtype=jnp.float64)),
    "shifted_sphere": Synthetic(lambda c, k, n: shifted_sphere(k, n, c.d, c.radius, c.shift, jnp.float64,
                                                               c.sphere_labels)),
    "parity_sphere": Synthetic(lambda c, k, n: parity_sphere(k, n, c.d, c.parity_k, jnp.float64)),
    "two_gaussians": Synthetic(lambda c, k, n: two_gaussians(k, n, c.d, c.gaussian_sep, jnp.float64)),
}


def datasets() -> tuple:
  """Every registered data set's name (synthetic first)."""
  return tuple(SYNTHETIC) + tuple(IMAGE_SETS)


def is_image(name: str) -> bool:
  return name in IMAGE_SETS


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
  data_dir, spec = config.data_dir, IMAGE_SETS[config.name]
  if data_dir == BUNDLED:
    data_dir = spec.bundled_dir
  rng = np.random.default_rng(config.seed)
  source = (f"the bundled MNIST sample ({SAMPLE_MNIST_DIR}: 1,000 training / 1,200 test images; point data_dir "
            "at a full download for more)" if config.data_dir == BUNDLED else f"{config.name} in {data_dir}")
  if config.task == "binary":
    group, values = (lambda cls: binary_label(config.name, cls)), (-1, 1)
  else:
    group, values = (lambda cls: np.asarray(cls).astype(np.int32)), tuple(range(spec.n_classes))
  pick_train = lambda cls: select_balanced(group(cls), config.n // len(values), values, config.selection, rng,
                                           source)
  pick_test = lambda cls: (select_balanced(group(cls), config.n_test // len(values), values, config.selection,
                                           rng, source + " (test split)") if config.n_test
                           else np.arange(len(cls)))
  # the selection is made from the labels (MNIST: then only those images are read)
  tr_img, tr_cls = spec.read(data_dir, "train", pick_train)
  te_img, te_cls = spec.read(data_dir, "test", pick_test)
  tr_idx, te_idx = np.arange(len(tr_cls)), np.arange(len(te_cls))
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
  config.validate()
  if config.name in IMAGE_SETS:
    return _image_task(config)
  make = SYNTHETIC[config.name].make
  key_train, key_test = jax.random.split(key)
  with jax.enable_x64(True):
    x_tr, y_tr = make(config, key_train, config.n)
    x_te, y_te = make(config, key_test, max(config.n_test, 1))
  x_tr, x_te = np.asarray(x_tr, np.float64), np.asarray(x_te, np.float64)[:config.n_test]
  y_tr, y_te = np.asarray(y_tr), np.asarray(y_te)[:config.n_test]
  if np.unique(y_tr).size < 2:
    raise DataError(f"dataset {config.name!r}: every training label is {int(y_tr[0])} (with sphere_labels="
                    f"{config.sphere_labels!r} the classes are balanced only near shift 0; shift {config.shift}, "
                    f"radius {config.radius})")
  synthetic_cfg = dataclasses.replace(config, subtract_mean=False)
  return _finish(synthetic_cfg, x_tr, y_tr, x_te, y_te, (), y_tr.copy(), y_te.copy())
