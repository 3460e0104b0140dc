"""Readers for the publishers' formats: MNIST IDX (raw or .gz) and the CIFAR-10 binary version.

Every reader bounds what it allocates by what the file can hold and what the caller asked for, and every error
is a `DataError` naming the file. `jaxrecon.data` builds datasets on these.
"""

from __future__ import annotations

import glob
import gzip
import math
import os
import struct
import zipfile
import zlib
from typing import Callable, Optional, Sequence

import numpy as np

MNIST_IMAGE_MAGIC = 2051
MNIST_LABEL_MAGIC = 2049
CIFAR_RECORD = 1 + 3 * 32 * 32


# What Python's zipfile / zlib raise on a damaged or hostile archive (a bad name encoding, an unknown
# compression method, an encrypted member, a bad CRC, a truncated stream): every reader of a zip catches these
# (models, torch_pickle, workdir).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
              RuntimeError, KeyError, IndexError, struct.error, zlib.error)


class DataError(ValueError):
  """A data file is missing or malformed, or the request cannot be met; the message names the file."""



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


# What a zip archive (.npz, torch .pt) may hold once decompressed: MAX_EXPANSION x its file size, and never less
# than MIN_EXPANDED_BYTES, whatever larger limit the caller allows. Honest files fit (stored entries expand 1x,
# deflated float arrays ~1-2x, a data.npz of images ~5x); a 10 MB deflate bomb asks at most 200 MB instead of
# its ~10 GB.
MAX_EXPANSION = 20
MIN_EXPANDED_BYTES = 64 << 20


def expansion_limit(path: str, max_bytes: int) -> int:
  """The most bytes a zip archive at `path` may decompress to: max_bytes, capped by its size x MAX_EXPANSION
  (MIN_EXPANDED_BYTES at least)."""
  return min(max_bytes, max(MIN_EXPANDED_BYTES, MAX_EXPANSION * os.path.getsize(path)))


def read_npz_bounded(path: str, max_bytes: int, check_names: Optional[Callable] = None,
                     limit_hint: str = "") -> dict:
  """{name: array} of an .npz whose arrays, once decompressed, total at most `max_bytes`.

  Each member's size is checked twice before it is decompressed: the zip entry's declared size against
  `max_bytes` (summed over members), and the .npy header's shape x itemsize against that entry (a header
  claiming more than its entry holds is a lie). Object arrays are refused: nothing is ever unpickled.

  Args:
    path: the .npz file.
    max_bytes: the most bytes the arrays may take in memory.
    check_names: called with the archive's member names before anything is read (a caller refusing a kind).
    limit_hint: how the caller raises the limit, quoted in the error.

  Returns:
    {name: np.ndarray}, names without the `.npy` suffix.

  Raises:
    DataError: naming the file, for an unreadable, hostile or over-limit archive.
  """
  hint = f" ({limit_hint})" if limit_hint else ""
  try:
    zf = zipfile.ZipFile(path)
  except ZIP_ERRORS as e:
    raise DataError(f"{path}: not an .npz (zip) file ({type(e).__name__}: {e})") from None
  with zf:
    infos = zf.infolist()
    if check_names is not None:
      check_names([i.filename for i in infos])
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
      raise DataError(f"{path}: {total} bytes once decompressed, over the {max_bytes}-byte limit{hint}")
    limit = expansion_limit(path, max_bytes)
    if total > limit:
      raise DataError(f"{path}: {total} bytes once decompressed from a {os.path.getsize(path)}-byte file, more than "
                      f"{MAX_EXPANSION}x its size (a deflate bomb?); refused before decompressing")
    out = {}
    for info in infos:
      name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
      try:
        with zf.open(info) as member:
          version = np.lib.format.read_magic(member)
          read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
          shape, _, dt = read(member)
          if dt.hasobject:
            raise DataError(f"{path}: array {name!r} holds Python objects (refused: never unpickled)")
          nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
          if nbytes > max_bytes or nbytes > info.file_size:
            raise DataError(f"{path}: array {name!r} declares {shape} {dt} ({nbytes} bytes) in a "
                            f"{info.file_size}-byte entry")
        with zf.open(info) as member:
          out[name] = np.lib.format.read_array(member, allow_pickle=False)
      except DataError:
        raise
      except ZIP_ERRORS as e:
        raise DataError(f"{path}: array {name!r} unreadable ({type(e).__name__}: {e})") from None
  return out


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
