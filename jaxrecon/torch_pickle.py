"""`torch.save(model.state_dict(), "model.pt")` read without torch and without running the file's code.

A torch file is a zip archive: `<name>/data.pkl` (a pickle of the state_dict) and one raw little-endian storage
per tensor (`<name>/data/<key>`). Unpickling runs whatever callables the pickle names, so a `.pt` from someone
else can run code. This reader's unpickler resolves only the names a state_dict of plain tensors needs
(`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, the `torch.*Storage`
types, which it maps to numpy dtypes) and refuses every other global by name before calling anything. The
storages' sizes are checked against the zip's declared sizes and `max_bytes` before they are read, and every
tensor's (offset, shape, stride) must lie inside its storage. What torch's own `torch.load(weights_only=True)`
would accept and this does not: tensors on other devices' layouts (quantized, sparse), and the pre-1.6 non-zip
format; those are refused with the export that works.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np

from jaxrecon import readers
from jaxrecon.readers import ZIP_ERRORS

# torch's legacy storage type names -> the numpy dtype of their bytes (little-endian in the archive)
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
MAX_PICKLE_BYTES = 64 << 20  # a state_dict's pickle holds names and shapes only (kilobytes)
EXPORT_HINT = ("export the weights alone: torch.save(model.state_dict(), path), or "
               "safetensors.torch.save_file(model.state_dict(), path)")


class TorchFileError(ValueError):
  """A .pt file this reader refuses or cannot read; the message names the file and the reason."""


class _Storage:
  """A storage's persistent id, resolved to an array when a tensor is rebuilt from it."""

  def __init__(self, dtype, key: str, numel: int):
    self.dtype, self.key, self.numel = dtype, key, numel


class _StorageType:
  def __init__(self, name: str):
    self.name, self.dtype = name, STORAGE_DTYPES[name]


class _Unpickler(pickle.Unpickler):
  """Resolves only a state_dict's globals; every storage is read from the archive, bounded."""

  def __init__(self, data: bytes, read_storage, path: str):
    super().__init__(io.BytesIO(data))
    self._read_storage, self._path, self._arrays = read_storage, path, {}

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return self._rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda data, requires_grad=False, backward_hooks=None: data
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    hint = " (a whole pickled model, not a state_dict)" if module.startswith(("torch.nn", "__main__")) else ""
    raise TorchFileError(f"{self._path}: refused {module}.{name}{hint}: a .pt file can run code when it is "
                         f"unpickled, and jaxrecon reads only tensors in ordered dicts; {EXPORT_HINT}")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
      raise TorchFileError(f"{self._path}: a storage reference of an unknown kind ({str(pid)[:80]})")
    return _Storage(pid[1].dtype, pid[2], pid[4])

  def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, backward_hooks=None,
                      metadata=None):
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _Storage):
      raise TorchFileError(f"{self._path}: a tensor without a storage")
    size, stride = tuple(size), tuple(stride)
    if not (isinstance(offset, int) and offset >= 0 and len(size) == len(stride)
            and all(isinstance(v, int) and v >= 0 for v in size + stride)):
      raise TorchFileError(f"{self._path}: a tensor with offset {offset}, size {size}, stride {stride}")
    if storage.key not in self._arrays:
      self._arrays[storage.key] = self._read_storage(storage)
    flat = self._arrays[storage.key]
    if 0 in size:
      return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
      raise TorchFileError(f"{self._path}: a tensor (offset {offset}, size {size}, stride {stride}) reaches "
                           f"element {last} of a {flat.size}-element storage")
    view = np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride),
                                           writeable=False)
    return np.array(view)


def read(path: str, max_bytes: int) -> dict:
  """{name: array} of a `torch.save`d state_dict (a .pt / .pth zip), never running the file's code.

  Args:
    path: the file.
    max_bytes: the most bytes of storages accepted (the pickle itself: MAX_PICKLE_BYTES).
  Returns:
    The state_dict's entries as numpy arrays, in the file's order.
  Raises:
    TorchFileError naming the file: not a torch zip, a global other than a state_dict's, a storage of
    the wrong size or over `max_bytes`, a tensor outside its storage, a value that is not a tensor.
  """
  try:
    zf = zipfile.ZipFile(path)
  except ZIP_ERRORS:
    with open(path, "rb") as f:
      head = f.read(2)
    kind = "a pre-1.6 torch file (not a zip)" if head[:1] == b"\x80" else "not a torch .pt zip archive"
    raise TorchFileError(f"{path}: {kind}; {EXPORT_HINT}") from None
  with zf:
    infos = {i.filename: i for i in zf.infolist()}
    pkl = [n for n in infos if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise TorchFileError(f"{path}: a zip without one <name>/data.pkl: not a torch.save archive; {EXPORT_HINT}")
    prefix = pkl[0][:-len("data.pkl")]
    try:
      byteorder = zf.read(prefix + "byteorder").strip() if prefix + "byteorder" in infos else b"little"
    except ZIP_ERRORS as e:
      raise TorchFileError(f"{path}: unreadable archive ({type(e).__name__}: {e})") from None
    if byteorder != b"little":
      raise TorchFileError(f"{path}: storages in {byteorder.decode(errors='replace')}-endian order (unsupported)")
    if infos[pkl[0]].file_size > MAX_PICKLE_BYTES:
      raise TorchFileError(f"{path}: a {infos[pkl[0]].file_size}-byte pickle: not a state_dict of tensors")
    budget = [readers.expansion_limit(path, max_bytes)]  # a deflated storage may not expand without bound

    def read_storage(storage: _Storage) -> np.ndarray:
      info = infos.get(f"{prefix}data/{storage.key}")
      nbytes = storage.numel * np.dtype(storage.dtype).itemsize
      if info is None or info.file_size != nbytes:
        raise TorchFileError(f"{path}: storage {storage.key!r} should hold {nbytes} bytes, the archive has "
                             f"{'none' if info is None else info.file_size}")
      budget[0] -= nbytes
      if budget[0] < 0:
        raise TorchFileError(f"{path}: tensors of more than {min(max_bytes, readers.expansion_limit(path, max_bytes))} "
                             f"bytes (the limit: max_bytes / --max_model_mb, and at most {readers.MAX_EXPANSION}x "
                             "the file's size)")
      return np.frombuffer(zf.read(info), np.dtype(storage.dtype).newbyteorder("<"))

    try:
      obj = _Unpickler(zf.read(pkl[0]), read_storage, path).load()
    except TorchFileError:
      raise
    except (pickle.UnpicklingError, TypeError, AttributeError, RecursionError, MemoryError) + ZIP_ERRORS as e:
      raise TorchFileError(f"{path}: unreadable torch pickle ({type(e).__name__}: {e})") from None
  if not isinstance(obj, dict):
    raise TorchFileError(f"{path}: holds a {type(obj).__name__}, not a state_dict; {EXPORT_HINT}")
  bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
  if bad:
    raise TorchFileError(f"{path}: entries {bad[:3]} are not tensors (a checkpoint holding more than the "
                         f"weights? save model.state_dict() alone)")
  return dict(obj)
