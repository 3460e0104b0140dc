"""Run directories: config.json, metrics.jsonl, summary.json, .npz arrays and pytree checkpoints.

Every write is atomic (a temporary file `.NAME.*.tmp` in the same directory, then os.replace), so a run killed
mid-write leaves the previous version intact; written files get the permissions the umask allows (like
`open`). Pytrees are stored in .npz under their key paths, never pickled.

`claim(path, kind)` is how a job takes a run folder: it locks it (a second process on the same folder is
refused), refuses a folder that holds another kind of run (so an attack can never overwrite a training run),
records the kind, and removes temporary files left by killed writes. `latest_readable_checkpoint` falls back
past a checkpoint that cannot be read, naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import inspect
import json
import os
import re
import stat
import sys
import tempfile
from typing import Any, Callable, Iterable, Optional

import jax
import numpy as np

from jaxrecon import readers


class RunDirError(Exception):
  """A run folder that cannot be used as asked (another kind of run, in use, unreadable); says which."""


TMP_SUFFIX = ".tmp"
TMP_TAG = ".jaxrecon-"  # atomic_write's temp files are `.NAME.jaxrecon-XXXXXXXX.tmp`; only those are ours
_OWN_TMP = re.compile(r"^\..+" + re.escape(TMP_TAG) + r"[A-Za-z0-9_]+" + re.escape(TMP_SUFFIX) + "$")
KIND_FILE = ".jaxrecon_kind"
LOCK_FILE = ".lock"


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write(path: str, write_fn, mode: str = "w") -> None:
  """Calls write_fn(file) on a temporary file beside `path`, then renames it to `path` (a reader or a killed
  run never sees half a file); the file gets the permissions the umask allows."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + TMP_TAG, suffix=TMP_SUFFIX)
  try:
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets what open() would give it
    with os.fdopen(fd, mode) as f:
      write_fn(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def config_from_dict(cls, d: dict):
  """The config dataclass `cls` from its JSON form (what `to_jsonable` wrote): the inverse every config's
  `from_dict` is. A field whose default is a dataclass is read as that dataclass (recursively), JSON lists
  become tuples, absent fields keep their defaults.

  Raises:
    ValueError: naming a key that is not a field of `cls` (or a value that is not an object where a config
      belongs).
  """
  if not isinstance(d, dict):
    raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - set(fields))
  if unknown:
    raise ValueError(f"{cls.__name__} has no field {unknown[0]!r} (fields: {', '.join(fields)})")
  kwargs = {}
  for name, value in d.items():
    f = fields[name]
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
      value = config_from_dict(type(default), value)
    elif isinstance(value, list):
      value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    kwargs[name] = value
  return cls(**kwargs)


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
  atomic_write(path, lambda f: json.dump(to_jsonable(obj), f, indent=2))  # keys in the order made: steps numeric


MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64


def _depth(obj, limit: int) -> int:
  """Nesting depth of a parsed JSON value, iteratively (stops counting past `limit`)."""
  deepest, stack = 0, [(obj, 1)]
  while stack:
    v, d = stack.pop()
    deepest = max(deepest, d)
    if d > limit:
      break
    if isinstance(v, dict):
      stack.extend((x, d + 1) for x in v.values())
    elif isinstance(v, list):
      stack.extend((x, d + 1) for x in v)
  return deepest


def read_json(path: str, expect: type = dict) -> Any:
  """A run folder's JSON file (config.json, summary.json): RunDirError naming the file when it is unreadable,
  truncated, over 64 MiB, nested deeper than 64 levels, or not a JSON `expect` (an object by default)."""
  try:
    if os.path.getsize(path) > MAX_JSON_BYTES:
      raise RunDirError(f"{path}: over {MAX_JSON_BYTES >> 20} MiB, not a run folder's JSON file")
    with open(path) as f:
      obj = json.load(f)
  except RecursionError:
    raise RunDirError(f"{path}: JSON nested too deeply to be a run folder's file") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise RunDirError(f"{path}: unreadable JSON ({type(e).__name__}: {e}); truncated?") from None
  except OSError as e:
    raise RunDirError(f"{path}: cannot read ({e.strerror or e})") from None
  if not isinstance(obj, expect):
    raise RunDirError(f"{path}: holds a JSON {type(obj).__name__}, expected a JSON "
                      f"{'object' if expect is dict else expect.__name__}")
  if _depth(obj, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
    raise RunDirError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
  return obj


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
  """Rewrites a whole .jsonl file atomically (one JSON object per line)."""
  rows = list(rows)
  atomic_write(path, lambda f: f.writelines(json.dumps(to_jsonable(r)) + "\n" for r in rows))


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


def write_npz(path: str, compressed: bool = False, **arrays) -> None:
  """Arrays as .npz (never pickle); `compressed` deflates them (lossless: ~5x smaller for image data sets)."""
  save = np.savez_compressed if compressed else np.savez
  atomic_write(path, lambda f: save(f, **{k: np.asarray(v) for k, v in arrays.items()}), "wb")


def read_npz(path: str, max_bytes: Optional[int] = None) -> dict:
  """The arrays of an .npz file in a run folder, bounded before decompressing (never pickle).

  Args:
    path: the file.
    max_bytes: the most bytes its arrays may take (None: no limit of the caller's); whatever it is, an archive
      may expand at most `readers.MAX_EXPANSION` x its file size (64 MB at least).

  Returns:
    {name: np.ndarray}.

  Raises:
    RunDirError: naming the file, when it is unreadable, hostile or over the limit.
  """
  try:
    return readers.read_npz_bounded(path, sys.maxsize if max_bytes is None else max_bytes)
  except readers.DataError as e:
    raise RunDirError(str(e)) from None
  except OSError as e:
    raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _path_key(path) -> str:
  return re.sub(r"[^0-9A-Za-z_.]+", "_", jax.tree_util.keystr(path)).strip("_") or "leaf"


def flatten_tree(tree, prefix: str) -> dict:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat[f"{prefix}/{_path_key(path)}"] = np.asarray(leaf)
  return flat


def unflatten_tree(template, arrays: dict, prefix: str, missing_ok: bool = False):
  """Fills `template`'s structure from arrays saved by flatten_tree; shapes and dtypes must match.

  missing_ok: a leaf the arrays lack keeps the template's value (state a newer version added, e.g. the
  relative step rule's back-off, read from an older checkpoint)."""
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
  leaves = []
  for path, leaf in leaves_with_path:
    key = f"{prefix}/{_path_key(path)}"
    if key not in arrays and missing_ok:
      leaves.append(leaf)
      continue
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


def latest_readable_checkpoint(workdir: str, log: Callable = print) -> Optional[tuple]:
  """(step, path, arrays) of the newest checkpoint that reads, or None; unreadable ones are renamed
  `*.corrupt` (kept for inspection, never resumed from) with a message naming them."""
  for step, path in reversed(list_checkpoints(workdir)):
    try:
      return step, path, read_npz(path)
    except RunDirError as e:
      log(f"{e}; falling back to the previous checkpoint")
      os.replace(path, path + ".corrupt")
  return None


def remove_stale_temp_files(directory: str) -> int:
  """Deletes the temp files `atomic_write` left when killed (`.NAME.jaxrecon-XXXXXXXX.tmp`, regular files
  only; a user's own `.notes.tmp` is kept). Call with the folder's lock held."""
  removed = 0
  for folder in (directory, os.path.join(directory, "checkpoints")):  # sub-jobs' folders have their own
    if os.path.isdir(folder) and not os.path.islink(folder):
      for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if _OWN_TMP.match(name) and os.path.isfile(full) and not os.path.islink(full):
          os.remove(full)
          removed += 1
  return removed


def _with_defaults(saved, now):
  """`saved` (JSON) with every field a newer version of `now`'s dataclasses added filled by its default, so
  a run written before the field existed compares equal where the field keeps its default."""
  if not isinstance(saved, dict):
    return saved
  if dataclasses.is_dataclass(now):
    out = dict(saved)
    for f in dataclasses.fields(now):
      value = getattr(now, f.name)
      if f.name in out:
        out[f.name] = _with_defaults(out[f.name], value)
      elif f.default is not dataclasses.MISSING:
        out[f.name] = to_jsonable(f.default)
      elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        out[f.name] = to_jsonable(f.default_factory())  # type: ignore[misc]
    return out
  if isinstance(now, dict):
    return {k: _with_defaults(v, now[k]) if k in now else v for k, v in saved.items()}
  return saved


def config_diffs(saved, now, ignore=()) -> list:
  """Sorted top-level keys whose values differ between two configs (dataclasses or their JSON dicts);
  `ignore` holds keys, or "key.subkey" for a field of a nested config, that may differ."""
  saved = _with_defaults(to_jsonable(saved), now)
  now = to_jsonable(now)
  for name in (i for i in ignore if "." in i):
    outer, inner = name.split(".", 1)
    for cfg in (saved, now):
      if isinstance(cfg.get(outer), dict):
        cfg[outer] = {k: v for k, v in cfg[outer].items() if k != inner}
  return sorted(k for k in set(saved) | set(now) if k not in ignore and saved.get(k) != now.get(k))


def _regular_or_absent(path: str, what: str) -> bool:
  """True if `path` is a regular file, False if absent; RunDirError for a link or anything else (a planted
  link must never make a job read or write another file)."""
  try:
    st = os.lstat(path)
  except FileNotFoundError:
    return False
  if not stat.S_ISREG(st.st_mode):
    raise RunDirError(f"{path}: the run folder's {what} is not a regular file (a link?); remove it and retry")
  return True


def kind_of(path: str) -> Optional[str]:
  """The kind of run a folder holds ('train', 'attack', ...), or None if no job has claimed it."""
  marker = os.path.join(path, KIND_FILE)
  if _regular_or_absent(marker, "kind marker"):
    with open(marker) as f:
      return f.read(64).strip() or None
  return None


def enclosing_run(path: str) -> Optional[tuple]:
  """(folder, kind) of the nearest run folder strictly above `path`, or None."""
  here = os.path.dirname(os.path.abspath(path))
  while True:
    marker = os.path.join(here, KIND_FILE)
    if os.path.isfile(marker) and not os.path.islink(marker):
      return here, kind_of(here)
    parent = os.path.dirname(here)
    if parent == here:
      return None
    here = parent


# Runs that hold no other run inside (a study or the main job places its sub-runs in its own folder); a
# training run holds exactly one: its KKT report in `kkt/`.
LEAF_KINDS = ("train", "attack", "kkt")
RESERVED_SUBFOLDERS = ("checkpoints", "kkt")


def check_kind(path: str, kind: str) -> None:
  """Raises RunDirError if `path` holds a run of another kind (before anything is written)."""
  found = kind_of(path)
  if found is not None and found != kind:
    raise RunDirError(f"{path} holds a {found} run; choose another folder for this {kind} run")
  if found is None and kind != "train" and os.path.exists(os.path.join(path, "data.npz")) \
      and os.path.isdir(os.path.join(path, "checkpoints")):
    raise RunDirError(f"{path} holds a training run; choose another folder for this {kind} run")


@contextlib.contextmanager
def claim(path: str, kind: str):
  """Takes a run folder for one job: checks its kind, locks it, records the kind, cleans temp files.

  Raises RunDirError (nothing written) when the folder holds another kind of run or another process holds
  it. The lock is released when the block ends (also when the process dies).
  """
  check_kind(path, kind)
  outer = enclosing_run(path)
  if outer is not None:
    rel = os.path.relpath(os.path.abspath(path), outer[0]).split(os.sep)
    allowed = (kind == "kkt" and outer[1] == "train" and rel == ["kkt"]) or (
        outer[1] not in LEAF_KINDS and rel[0] not in RESERVED_SUBFOLDERS)
    if not allowed:
      raise RunDirError(f"{path} is inside the {outer[1]} run {outer[0]}; choose a folder outside it")
  os.makedirs(path, exist_ok=True)
  lock = os.path.join(path, LOCK_FILE)
  _regular_or_absent(lock, "lock file")
  try:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
  except OSError as e:
    raise RunDirError(f"{lock}: cannot open the lock file ({e.strerror})") from None
  try:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      raise RunDirError(f"{lock}: the run folder's lock file is not a regular file; remove it and retry")
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
      raise RunDirError(f"{path} is in use by another process (pid {holder or '?'}); wait for it or use "
                        "another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    check_kind(path, kind)  # again under the lock
    if kind_of(path) is None:
      atomic_write(os.path.join(path, KIND_FILE), lambda f: f.write(kind + "\n"))
    remove_stale_temp_files(path)
    yield path
  finally:
    os.close(fd)  # releases the lock


def job(kind: str, folder: str):
  """Decorates a job function so that it runs with its run folder (the argument named `folder`) claimed.

  The job's config (the argument named `config`) is validated first (`config.validate()`, every config's one
  validation method), so a config that cannot run is refused before its folder is created.
  """
  def wrap(fn):
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
      bound = sig.bind(*args, **kwargs)
      bound.apply_defaults()
      if bound.arguments.get("config") is not None:
        bound.arguments["config"].validate()
      path = bound.arguments[folder]
      with claim(path, kind):
        return fn(*args, **kwargs)
    return run
  return wrap
