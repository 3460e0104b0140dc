import gzip
import os

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from jaxrecon import data
import conftest


def write_idx(path, arr, magic, gz=False):
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
  raw = header + arr.astype(np.uint8).tobytes()
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(raw)


def write_mnist(directory, n_train=40, n_test=20, gz=False, seed=0):
  rng = np.random.default_rng(seed)
  sfx = ".gz" if gz else ""
  sets = {}
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    imgs = rng.integers(0, 256, (n, 28, 28))
    labels = np.arange(n) % 10
    write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{sfx}"), imgs, 2051, gz)
    write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{sfx}"), labels, 2049, gz)
    sets[prefix] = (imgs, labels)
  return sets


def write_cifar(path, n, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % 10
  imgs = rng.integers(0, 256, (n, 3, 32, 32))
  rec = np.concatenate([labels[:, None], imgs.reshape(n, -1)], axis=1).astype(np.uint8)
  with open(path, "wb") as f:
    f.write(rec.tobytes())
  return imgs.transpose(0, 2, 3, 1), labels


class SyntheticTest(parameterized.TestCase):

  def test_sphere(self):
    x, y = data.sphere(jax.random.key(0), 300, 50, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(y, np.where(x[:, 0] >= 0, 1, -1))
    self.assertGreater(np.mean(y == 1), 0.35)

  def test_shifted_sphere_labels(self):
    # 'centre': balanced, each class on its half-sphere about the centre; 'first_coordinate': the authors'
    # problems/sphere.py, label = sign of the first coordinate after the shift (balanced only at shift 0)
    x, y = data.shifted_sphere(jax.random.key(0), 400, 30, 2.0, 0.1, np.float64)
    np.testing.assert_allclose(np.linalg.norm(x - 0.1, axis=1), 2.0, rtol=1e-12)
    self.assertEqual(int(np.sum(y == 1)), 200)
    np.testing.assert_array_equal(y, np.where(x[:, 0] - 0.1 >= 0, 1, -1))
    x, y = data.shifted_sphere(jax.random.key(0), 400, 30, 2.0, 0.1, np.float64, labels="first_coordinate")
    np.testing.assert_allclose(np.linalg.norm(x - 0.1, axis=1), 2.0, rtol=1e-12)
    np.testing.assert_array_equal(y, np.where(x[:, 0] >= 0, 1, -1))
    self.assertBetween(float(np.mean(y == 1)), 0.5, 0.75)  # P(u_1 > -0.05) for u uniform on S^29
    with self.assertRaisesRegex(data.DataError, "every training label is 1"):
      data.load(jax.random.key(0), data.DataConfig(name="shifted_sphere", n=20, d=10, shift=3.0,
                                                   sphere_labels="first_coordinate"))

  def test_parity_sphere_and_gaussians(self):
    x, y = data.parity_sphere(jax.random.key(0), 200, 30, k=2, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.sqrt(30), rtol=1e-12)
    np.testing.assert_array_equal(y, np.sign(x[:, 0]) * np.sign(x[:, 1]))
    x, y = data.two_gaussians(jax.random.key(0), 400, 10, sep=3.0, dtype=np.float64)
    self.assertEqual(int(np.sum(y == 1)), 200)
    self.assertGreater(float(np.mean(np.sign(x[:, 0]) == y)), 0.95)

  def test_load_synthetic_is_seeded(self):
    cfg = data.DataConfig(name="sphere", n=20, d=5, n_test=7)
    a, b = data.load(jax.random.key(3), cfg), data.load(jax.random.key(3), cfg)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    self.assertEqual(a.x_test.shape, (7, 5))
    c = data.load(jax.random.key(4), cfg)
    self.assertFalse(np.allclose(a.x_train, c.x_train))
    np.testing.assert_array_equal(a.mean, 0.0)

  def test_unknown_dataset(self):
    with self.assertRaisesRegex(data.DataError, "unknown dataset"):
      data.load(jax.random.key(0), data.DataConfig(name="imagenet"))


class ReadersTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  @parameterized.parameters(False, True)
  def test_mnist_roundtrip(self, gz):
    sets = write_mnist(self.dir, gz=gz)
    imgs, labels = data.read_mnist(self.dir, "train")
    np.testing.assert_array_equal(imgs, sets["train"][0])
    np.testing.assert_array_equal(labels, sets["train"][1])

  def test_binary_task_first_per_class_and_mean(self):
    sets = write_mnist(self.dir)
    cfg = data.DataConfig(name="mnist", data_dir=self.dir, n=10, n_test=10)
    ds = data.load(jax.random.key(0), cfg)
    labels = sets["train"][1]
    odd, even = np.flatnonzero(labels % 2 == 1)[:5], np.flatnonzero(labels % 2 == 0)[:5]
    idx = np.sort(np.concatenate([odd, even]))
    raw = sets["train"][0][idx].reshape(10, -1) / 255.0
    np.testing.assert_allclose(ds.x_train + ds.mean, raw, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(ds.y_train, np.where(labels[idx] % 2 == 1, 1, -1))
    np.testing.assert_array_equal(ds.classes_train, labels[idx])
    self.assertEqual(ds.image_shape, (28, 28, 1))
    # random selection: balanced, seeded, different from the first-k
    r1 = data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=self.dir, n=10,
                                                      n_test=10, selection="random", seed=1))
    self.assertEqual(int(np.sum(r1.y_train == 1)), 5)

  def test_offset_is_added_after_mean_subtraction(self):
    write_mnist(self.dir)
    base = data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=self.dir, n=10,
                                                        n_test=10))
    off = data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=self.dir, n=10,
                                                       n_test=10, offset=0.25))
    np.testing.assert_allclose(off.x_train - base.x_train, 0.25, atol=1e-12)
    np.testing.assert_allclose(off.offset, 0.25)

  def test_cifar(self):
    imgs, labels = write_cifar(os.path.join(self.dir, "data_batch_1.bin"), 30)
    write_cifar(os.path.join(self.dir, "data_batch_2.bin"), 30, seed=1)
    write_cifar(os.path.join(self.dir, "test_batch.bin"), 20, seed=2)
    x, c = data.read_cifar10(self.dir, "train")
    self.assertEqual(x.shape, (60, 32, 32, 3))
    np.testing.assert_array_equal(x[:30], imgs)
    ds = data.load(jax.random.key(0), data.DataConfig(name="cifar10", data_dir=self.dir, n=12,
                                                      n_test=10))
    np.testing.assert_array_equal(ds.y_train, np.where(np.isin(ds.classes_train, (0, 1, 8, 9)), -1, 1))
    self.assertEqual(ds.x_train.shape, (12, 3072))

  # --- bad input: a clear error naming the file and the problem
  def test_missing_file(self):
    with self.assertRaisesRegex(data.DataError, "no MNIST train images"):
      data.read_mnist(self.dir, "train")
    with self.assertRaisesRegex(data.DataError, "not found"):
      data.read_mnist(os.path.join(self.dir, "nope"), "train")
    with self.assertRaisesRegex(data.DataError, "file not found"):
      data.read_idx(os.path.join(self.dir, "x-idx3-ubyte"))

  def test_wrong_magic(self):
    path = os.path.join(self.dir, "bad-idx3-ubyte")
    write_idx(path, np.zeros((2, 3, 3)), 1234)
    with self.assertRaisesRegex(data.DataError, r"bad-idx3-ubyte: wrong magic number 1234"):
      data.read_idx(path)

  @parameterized.parameters(False, True)
  def test_truncated(self, gz):
    path = os.path.join(self.dir, "t-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, np.zeros((4, 5, 5)), 2051, gz)
    raw = gzip.open(path).read() if gz else open(path, "rb").read()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
      f.write(raw[:-7])
    with self.assertRaisesRegex(data.DataError, "truncated"):
      data.read_idx(path)
    if gz:  # a cut gzip stream is reported, not a traceback from zlib
      with open(path, "rb") as f:
        raw = f.read()
      with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
      with self.assertRaisesRegex(data.DataError, "t-idx3-ubyte.gz"):
        data.read_idx(path)

  def test_hostile_idx_headers_fail_fast_naming_the_file(self):
    # a small .gz whose payload expands far beyond what its header declares: the reader stops 64 KiB past
    # the declared size (before issue 12 it decompressed all of it, 4.8 GB for a 2.3 MB file)
    path = os.path.join(self.dir, "bomb-idx3-ubyte.gz")
    with gzip.open(path, "wb") as f:
      f.write((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28)))
      for _ in range(50):
        f.write(bytes(1 << 20))
    self.assertLess(os.path.getsize(path), 200_000)
    with self.assertRaisesRegex(data.DataError, "bomb-idx3-ubyte.gz: at least 65536 bytes past"):
      data.read_idx(path)
    # dims whose product overflows int64, and dims the deflate limit rules out: refused from the header
    for dims in ((2 ** 32 - 1,) * 3, (60000, 28, 28)):
      path = os.path.join(self.dir, "huge-idx3-ubyte.gz")
      with gzip.open(path, "wb") as f:
        f.write((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + bytes(100))
      with self.assertRaisesRegex(data.DataError, r"huge-idx3-ubyte.gz: header declares dims .* cannot hold"):
        data.read_idx(path)
    # a corrupt deflate stream names the file
    path = os.path.join(self.dir, "bad-idx1-ubyte.gz")
    write_idx(path, np.arange(500) % 10, 2049, gz=True)
    with open(path, "rb") as f:
      raw = bytearray(f.read())
    raw[20:40] = bytes(range(20))
    with open(path, "wb") as f:
      f.write(bytes(raw))
    with self.assertRaisesRegex(data.DataError, "bad-idx1-ubyte.gz"):
      data.read_idx(path)

  def test_labels_do_not_match_images(self):
    write_mnist(self.dir)
    write_idx(os.path.join(self.dir, "train-labels-idx1-ubyte"), np.arange(39) % 10, 2049)
    with self.assertRaisesRegex(data.DataError, "40 images but .* 39 labels"):
      data.read_mnist(self.dir, "train")

  def test_too_few_of_a_class(self):
    write_mnist(self.dir)
    with self.assertRaisesRegex(data.DataError, "only 20 samples of class -1, 30 requested"):
      data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=self.dir, n=60))

  def test_cifar_truncated_and_bad_label(self):
    path = os.path.join(self.dir, "data_batch_1.bin")
    write_cifar(path, 3)
    with open(path, "rb") as f:
      raw = f.read()
    with open(path, "wb") as f:
      f.write(raw[:-10])
    with self.assertRaisesRegex(data.DataError, "data_batch_1.bin: .* not a whole number"):
      data.read_cifar10(self.dir)
    with open(path, "wb") as f:
      f.write(bytes([200]) + raw[1:])
    with self.assertRaisesRegex(data.DataError, "label byte 200"):
      data.read_cifar10(self.dir)

  def test_needs_data_dir(self):
    with self.assertRaisesRegex(data.DataError, "needs data_dir"):
      data.load(jax.random.key(0), data.DataConfig(name="mnist"))

  def test_bundled_sample(self):
    # data_dir='bundled': the MNIST sample in the package, read by the same IDX reader; its licence beside it
    ds = data.load(jax.random.key(0), data.DataConfig(name="mnist", n=20, n_test=1000, data_dir=data.BUNDLED))
    self.assertEqual(ds.x_train.shape, (20, 784))
    self.assertEqual(ds.x_test.shape, (1000, 784))
    self.assertEqual(int(np.sum(ds.y_train == 1)), 10)
    self.assertEqual(ds.classes_train[:4].tolist(), [5, 0, 4, 1])  # MNIST's first training digits
    with open(os.path.join(data.SAMPLE_MNIST_DIR, "README.md")) as f:
      self.assertIn("Attribution-Share Alike 3.0", f.read())
    # more than the sample holds: one error naming the sample and what to do
    with self.assertRaisesRegex(data.DataError, "bundled MNIST sample .* only 482 samples of class -1, 500 requested"):
      data.load(jax.random.key(0), data.DataConfig(name="mnist", n=1000, data_dir=data.BUNDLED))
    with self.assertRaisesRegex(data.DataError, "bundled MNIST sample"):
      data.load(jax.random.key(0), data.DataConfig(name="cifar10", n=10, data_dir=data.BUNDLED))


class SharedDataTest(absltest.TestCase):
  """The readers on the real publishers' files in ../shared/data (CI points JAXRECON_DATA_DIR there)."""

  def setUp(self):
    super().setUp()
    self.root = conftest.shared_data_dir()
    if self.root is None:
      self.skipTest("real data not found: set JAXRECON_DATA_DIR or place shared/data beside the checkout")

  def test_mnist(self):
    imgs, labels = data.read_mnist(os.path.join(self.root, "mnist"), "train")
    self.assertEqual(imgs.shape, (60000, 28, 28))
    self.assertEqual(labels[:5].tolist(), [5, 0, 4, 1, 9])
    t_imgs, t_labels = data.read_mnist(os.path.join(self.root, "mnist"), "test")
    self.assertEqual(t_imgs.shape, (10000, 28, 28))
    ds = data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=os.path.join(
        self.root, "mnist"), n=500, n_test=0))
    self.assertEqual(ds.x_train.shape, (500, 784))
    self.assertEqual(int(np.sum(ds.y_train == 1)), 250)
    self.assertEqual(ds.x_test.shape, (10000, 784))

  def test_bundled_sample_is_the_first_rows_of_mnist(self):
    # the sample shipped with the package, byte for byte the first rows of the publisher's files
    for split, rows in (("train", 1000), ("test", 1200)):
      imgs, labels = data.read_mnist(data.SAMPLE_MNIST_DIR, split)
      ref_imgs, ref_labels = data.read_mnist(os.path.join(self.root, "mnist"), split,
                                             lambda lab, r=rows: np.arange(r))
      self.assertEqual(imgs.shape, (rows, 28, 28))
      np.testing.assert_array_equal(imgs, ref_imgs)
      np.testing.assert_array_equal(labels, ref_labels[:rows])

  def test_cifar_subset(self):
    imgs, labels = data.read_cifar10(os.path.join(self.root, "cifar10-subset"), "train")
    self.assertEqual(imgs.shape, (4000, 32, 32, 3))
    np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                  [396, 366, 420, 384, 422, 393, 414, 385, 407, 413])
    t_imgs, _ = data.read_cifar10(os.path.join(self.root, "cifar10-subset"), "test")
    self.assertEqual(t_imgs.shape, (1000, 32, 32, 3))



class StreamingSelectionTest(absltest.TestCase):

  def test_asked_for_20_images_reads_only_those_whatever_the_header_declares(self):
    # issue 27: a small .gz whose header HONESTLY declares 100,000 images (78 MB of zeros) was decompressed
    # whole before the selection; now the labels choose and the image payload streams in 4 MiB pieces
    import tracemalloc  # noqa: PLC0415
    d = self.create_tempdir().full_path
    n = 100_000
    labels = np.arange(n) % 10
    imgs = np.zeros((n, 28, 28), np.uint8)
    imgs[:, 0, 0] = labels  # each image says which row it is (mod 10) so the selection can be checked
    for prefix in ("train", "t10k"):
      write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), imgs, 2051, gz=True)
      write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), labels, 2049, gz=True)
    self.assertLess(os.path.getsize(os.path.join(d, "train-images-idx3-ubyte.gz")), 400_000)
    del imgs
    tracemalloc.start()
    try:
      ds = data.load(jax.random.key(0), data.DataConfig(name="mnist", data_dir=d, n=20, n_test=20,
                                                        selection="random", subtract_mean=False))
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertLess(peak, 32 << 20)  # measured 18 MB (labels, a 4 MiB piece and gzip's copy), not 78 MB
    np.testing.assert_array_equal(np.round(ds.x_train[:, 0] * 255), ds.classes_train)
    self.assertEqual(ds.x_train.shape, (20, 784))


class RegistryTest(absltest.TestCase):
  """Issue 25: a new data set is one registry entry; loading and training take it by name."""

  def test_a_new_synthetic_set_by_one_entry(self):
    from unittest import mock  # noqa: PLC0415
    from jaxrecon import train  # noqa: PLC0415
    from jaxrecon.experiments import train as train_job  # noqa: PLC0415

    def ring(config, key, n):  # points on a circle in the first two coordinates, labelled by the half plane
      t = jax.random.uniform(key, (n,), minval=0.0, maxval=2 * np.pi, dtype=np.float64)
      x = np.zeros((n, config.d))
      x[:, 0], x[:, 1] = np.cos(t), np.sin(t)
      return x, np.where(np.sin(t) > 0, 1, -1)

    with mock.patch.dict(data.SYNTHETIC, {"ring": data.Synthetic(ring)}):
      self.assertIn("ring", data.datasets())
      ds = data.load(jax.random.key(0), data.DataConfig(name="ring", n=12, d=3, n_test=6))
      np.testing.assert_allclose(np.linalg.norm(ds.x_train, axis=1), 1.0)  # what the entry made, unchanged
      self.assertEqual(set(np.unique(ds.y_train)), {-1, 1})
      d = self.create_tempdir().full_path
      cfg = train.TrainConfig(data=data.DataConfig(name="ring", n=12, d=3, n_test=6), widths=(8,),
                              init_scales=(0.3,), optimizer="gd", lr=0.5, steps=20, log_every=10, relaxed=False)
      self.assertEqual(train_job.run(cfg, d, log=lambda *_: None)["steps"], 20)
    with self.assertRaisesRegex(data.DataError, "unknown dataset 'ring'"):
      data.load(jax.random.key(0), data.DataConfig(name="ring", n=12, d=3))
    self.assertEqual(data.binary_label("cifar10", np.arange(10)).tolist(), [-1, -1, 1, 1, 1, 1, 1, 1, -1, -1])


if __name__ == "__main__":
  absltest.main()
