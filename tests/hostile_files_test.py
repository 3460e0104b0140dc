"""Issue 27, property test: random bytes, truncations and byte flips of every file kind the project reads give
the reader's one error class (a ValueError or RunDirError naming the file: what the commands print as one line),
never another exception, and never more than a stated memory.

The file kinds: an IDX file raw and gzip'd (MNIST), a CIFAR-10 binary batch, a model .npz, .safetensors and
torch .pt, a run folder's config.json and a checkpoint .npz. For each, 200 mutations of a valid file (truncated
at a random length, 1-8 random bytes overwritten, random bytes of a random length, the valid file with random
bytes appended) are read. Memory: the process's peak RSS may grow by at most 300 MB over the whole test (every
file here is under 64 KB).
"""

import os
import resource
import shutil
import zipfile
import zlib

from absl.testing import absltest
import numpy as np

import data_test
from jaxrecon import models
from jaxrecon import readers
from jaxrecon import workdir as wd

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MUTATIONS = 200
MAX_GROWTH_KB = 300_000


def _mutations(valid: bytes, rng):
  """The valid bytes, then truncations, byte overwrites, random bytes and trailing junk."""
  yield valid
  for i in range(MUTATIONS):
    kind = i % 4
    if kind == 0:
      yield valid[:int(rng.integers(0, len(valid)))]
    elif kind == 1:
      b = bytearray(valid)
      for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
      yield bytes(b)
    elif kind == 2:
      yield rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    else:
      yield valid + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()


class HostileBytesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.d = self.create_tempdir().full_path
    self.addCleanup(shutil.rmtree, self.d, ignore_errors=True)

  def _check(self, name: str, valid_path: str, read, errors):
    """Reads every mutation of valid_path's bytes (written to the same name) with `read`."""
    with open(valid_path, "rb") as f:
      valid = f.read()
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same mutations every run
    outcomes = {"ok": 0, "refused": 0}
    for data in _mutations(valid, rng):
      with open(valid_path, "wb") as f:
        f.write(data)
      try:
        read(valid_path)
        outcomes["ok"] += 1
      except errors as e:
        self.assertIn(os.path.basename(valid_path), str(e))  # the message names the file
        self.assertNotIn("\n", str(e).strip())                 # one line
        outcomes["refused"] += 1
    with open(valid_path, "wb") as f:  # the next kind may read this file too
      f.write(valid)
    self.assertGreaterEqual(outcomes["refused"], MUTATIONS // 4, (name, outcomes))  # random bytes never pass
    return outcomes

  def test_every_file_kind(self):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mnist = os.path.join(self.d, "mnist")
    os.makedirs(mnist)
    data_test.write_mnist(mnist, n_train=30, n_test=10, gz=True)
    raw = os.path.join(self.d, "raw")
    os.makedirs(raw)
    data_test.write_mnist(raw, n_train=30, n_test=10)
    self._check("idx.gz", os.path.join(mnist, "train-images-idx3-ubyte.gz"), readers.read_idx,
                readers.DataError)
    self._check("idx", os.path.join(raw, "train-images-idx3-ubyte"), readers.read_idx, readers.DataError)
    self._check("mnist labels", os.path.join(raw, "train-labels-idx1-ubyte"),
                lambda _: readers.read_mnist(raw, "train"), readers.DataError)
    cifar = os.path.join(self.d, "data_batch_1.bin")
    data_test.write_cifar(cifar, 8)
    self._check("cifar", cifar, readers.read_cifar10_bin, readers.DataError)
    npz = os.path.join(self.d, "model.npz")
    np.savez(npz, **{"0.weight": np.ones((4, 6)), "2.weight": np.ones((1, 4))})
    self._check("npz", npz, models.load_torch, models.ArchitectureError)
    st = os.path.join(self.d, "model.safetensors")
    shutil.copy(os.path.join(DATA, "torch_mlp.pt"), os.path.join(self.d, "model.pt"))
    sd = models.torch_pickle.read(os.path.join(self.d, "model.pt"), 1 << 20)
    _write_safetensors(st, sd)
    self._check("safetensors", st, models.load_torch, models.ArchitectureError)
    self._check("pt", os.path.join(self.d, "model.pt"), models.load_torch, models.ArchitectureError)
    cfg = os.path.join(self.d, "config.json")
    wd.write_json(cfg, {"train": {"steps": 10, "widths": [8, 8]}, "seed": 0})
    self._check("config.json", cfg, wd.read_json, wd.RunDirError)
    ckpt = os.path.join(self.d, "step_00000010.npz")
    wd.write_npz(ckpt, **{"params/0/w": np.ones((6, 8)), "opt/count": np.asarray(3)})
    self._check("checkpoint", ckpt, wd.read_npz, wd.RunDirError)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    self.assertLess(grown_kb, MAX_GROWTH_KB)


  def test_deflate_bomb_checkpoint_is_refused_before_decompressing(self):
    """A 128 MB array of zeros deflated into a ~0.1 MB .npz, planted as a checkpoint: refused from its
    declared size (over readers.MAX_EXPANSION x the file's size), the process's memory barely moves; the same
    file named as a model is refused too (the models' 1 GiB limit does not let it expand 1000x)."""
    path = os.path.join(self.d, "step_00000010.npz")
    n = 16 << 20  # float64 zeros: 128 MB (over the 64 MB floor: refused by the 20x rule alone)
    header = {"descr": "<f8", "fortran_order": False, "shape": (n,)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
      with zf.open("params/0/w.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        chunk = bytes(8 << 20)
        for _ in range(n * 8 // len(chunk)):
          member.write(chunk)
    self.assertLess(os.path.getsize(path), 1 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with self.assertRaisesRegex(wd.RunDirError, r"step_00000010.npz: \d+ bytes once decompressed from a \d+-byte "
                                                r"file, more than 20x its size"):
      wd.read_npz(path)
    with self.assertRaisesRegex(models.ArchitectureError, "more than 20x its size"):
      models.load_torch(path)
    self.assertLess(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 50_000)
    # The caller that knows what it asked for may allow it; a smaller honest file reads as before.
    small = os.path.join(self.d, "ok.npz")
    wd.write_npz(small, compressed=True, x=np.zeros((1000, 784)))
    self.assertEqual(wd.read_npz(small)["x"].shape, (1000, 784))


def _write_safetensors(path, sd):
  import json  # noqa: PLC0415
  import struct  # noqa: PLC0415
  header, payload, off = {}, b"", 0
  for k, v in sd.items():
    raw = np.ascontiguousarray(v, "<f4").tobytes()
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
    payload, off = payload + raw, off + len(raw)
  h = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + payload)


if __name__ == "__main__":
  absltest.main()
