"""Models trained elsewhere: flax (linen, nnx) and PyTorch-exported weights import to the same function."""

import json
import os
import shutil
import struct
import zipfile

from absl.testing import absltest
import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import models
from jaxrecon import nets


def _numpy_forward(layers, x):
  """A forward pass written independently of jaxrecon: [(W (in, out), b or None)], ReLU between layers."""
  h = x
  for k, (w, b) in enumerate(layers):
    h = h @ w + (0.0 if b is None else b)
    if k < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h


def _write_safetensors(path, tensors):  # the format, written here without the safetensors package
  header, blobs, off = {}, [], 0
  for name, a in tensors.items():
    a = np.ascontiguousarray(a, "<f4")
    header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    blobs.append(a.tobytes())
    off += a.nbytes
  h = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class TorchImportTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.layers = [(rng.normal(size=(6, 11)), rng.normal(size=11)), (rng.normal(size=(11, 12)), None),
                   (rng.normal(size=(12, 3)), None)]
    # torch's Linear.weight is (out, in); module names as nn.Sequential numbers them (ReLUs in between)
    self.sd = {"net.0.weight": self.layers[0][0].T, "net.0.bias": self.layers[0][1],
               "net.2.weight": self.layers[1][0].T, "net.4.weight": self.layers[2][0].T}
    self.x = rng.normal(size=(7, 6))

  def test_npz_round_trip_gives_the_same_outputs(self):
    path = os.path.join(self.create_tempdir().full_path, "model.npz")
    np.savez(path, **self.sd)
    params = models.load_torch(path)
    np.testing.assert_allclose(np.asarray(nets.apply(params, jnp.asarray(self.x))),
                               _numpy_forward(self.layers, self.x), rtol=1e-12, atol=1e-12)

  def test_safetensors_round_trip_to_float32_precision(self):
    path = os.path.join(self.create_tempdir().full_path, "model.safetensors")
    _write_safetensors(path, self.sd)
    params = models.load_torch(path)
    np.testing.assert_allclose(np.asarray(nets.apply(params, jnp.asarray(self.x))),
                               _numpy_forward(self.layers, self.x), rtol=1e-5, atol=1e-5)

  def test_layers_in_natural_order(self):
    rng = np.random.default_rng(1)
    ws = [rng.normal(size=(4, 4)) for _ in range(11)]  # "layers.10" must come after "layers.9"
    sd = {f"layers.{k}.weight": w.T for k, w in enumerate(ws)}
    params = models.from_torch_state_dict(sd)
    for k, w in enumerate(ws):
      np.testing.assert_array_equal(params[k]["w"], w)

  def test_uncovered_architectures_name_the_layer(self):
    bad_bias = dict(self.sd, **{"net.2.bias": np.ones(12)})
    with self.assertRaisesRegex(models.ArchitectureError, "layer 'net.2' has a bias"):
      models.from_torch_state_dict(bad_bias)
    conv = {"conv.weight": np.ones((8, 3, 3, 3)), "fc.weight": np.ones((1, 8))}
    with self.assertRaisesRegex(models.ArchitectureError, "layer 'conv'.*not a matrix"):
      models.from_torch_state_dict(conv)
    bn = dict(self.sd, **{"net.1.running_mean": np.zeros(11)})
    with self.assertRaisesRegex(models.ArchitectureError, "net.1.running_mean"):
      models.from_torch_state_dict(bn)
    with self.assertRaisesRegex(models.ArchitectureError, "fan-in"):
      models.from_torch_state_dict(self.sd, order=["net.0", "net.4", "net.2"])
    zero_bias = dict(self.sd, **{"net.4.bias": np.zeros(3)})  # an all-zero later bias is no bias
    models.from_torch_state_dict(zero_bias)

  def test_xy_reader(self):
    path = os.path.join(self.create_tempdir().full_path, "data.npz")
    np.savez(path, x=np.ones((4, 2, 3)), y=np.array([1, -1, 1, -1]))
    x, y = models.read_xy_npz(path)
    self.assertEqual(x.shape, (4, 6))
    np.savez(path, x=np.ones((4, 2)), y=np.ones(3))
    with self.assertRaisesRegex(ValueError, "4 inputs but 3 labels"):
      models.read_xy_npz(path)


class _Linen(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jax.nn.relu(nn.Dense(9)(x))
    x = jax.nn.relu(nn.Dense(9, use_bias=False)(x))
    return nn.Dense(1, use_bias=False)(x)


class _Nnx(nnx.Module):
  def __init__(self, rngs):
    self.first = nnx.Linear(5, 9, rngs=rngs)
    self.second = nnx.Linear(9, 1, use_bias=False, rngs=rngs)

  def __call__(self, x):
    return self.second(jax.nn.relu(self.first(x)))


class FlaxImportTest(absltest.TestCase):

  def test_linen_gives_the_same_outputs(self):
    x = jax.random.normal(jax.random.key(1), (6, 5))
    variables = _Linen().init(jax.random.key(0), x)
    params = models.from_flax(variables)
    self.assertLen(params, 3)
    np.testing.assert_allclose(np.asarray(nets.apply(params, x)), np.asarray(_Linen().apply(variables, x))[:, 0],
                               rtol=1e-5, atol=1e-6)

  def test_nnx_gives_the_same_outputs(self):
    x = jax.random.normal(jax.random.key(1), (6, 5))
    model = _Nnx(nnx.Rngs(0))
    np.testing.assert_allclose(np.asarray(nets.apply(models.from_flax(model), x)), np.asarray(model(x))[:, 0],
                               rtol=1e-5, atol=1e-6)

  def test_inside_out_linen_names_are_put_in_forward_order(self):
    class InsideOut(nn.Module):  # the output layer is built first, so it is Dense_0
      @nn.compact
      def __call__(self, x):
        return nn.Dense(1, use_bias=False)(jax.nn.relu(nn.Dense(7, use_bias=False)(x)))
    x = jax.random.normal(jax.random.key(1), (4, 5))
    variables = InsideOut().init(jax.random.key(0), x)
    params = models.from_flax(variables)
    np.testing.assert_allclose(np.asarray(nets.apply(params, x)), np.asarray(InsideOut().apply(variables, x))[:, 0],
                               rtol=1e-5, atol=1e-6)

  def test_a_later_bias_is_refused(self):
    x = jnp.ones((1, 5))

    class Biased(nn.Module):
      @nn.compact
      def __call__(self, x):
        h = jax.nn.relu(nn.Dense(4)(x))  # linen names modules in the order they are built
        return nn.Dense(1)(h)
    variables = Biased().init(jax.random.key(0), x)
    variables = jax.tree_util.tree_map(lambda a: a + 0.1, variables)
    with self.assertRaisesRegex(models.ArchitectureError, "layer 'Dense_1' has a bias"):
      models.from_flax(variables)



def _safetensors(path, header, payload=b""):
  raw = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw + payload)


class HostileFileTest(absltest.TestCase):
  """Issue 27: what a model file holds can neither exhaust memory nor pass as a model (one clear error)."""

  def setUp(self):
    super().setUp()
    self.d = self.create_tempdir().full_path
    self.addCleanup(shutil.rmtree, self.d, ignore_errors=True)

  def refused(self, path, pattern):
    with self.assertRaisesRegex(models.ArchitectureError, pattern):
      models.load_torch(path)

  def test_a_small_file_declaring_a_huge_array_is_refused_before_decompressing(self):
    # 65536 x 4096 float64 zeros (2 GiB) deflate to ~2 MB: refused from the declared size, nothing allocated
    import resource  # noqa: PLC0415
    path = os.path.join(self.d, "bomb.npz")
    np.savez_compressed(path, **{"0.weight": np.zeros((4096, 16384))})  # 512 MiB declared
    self.assertLess(os.path.getsize(path), 2_000_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with self.assertRaisesRegex(models.ArchitectureError, "over the 268435456-byte limit"):
      models.load_torch(path, max_bytes=256 << 20)
    self.assertLess(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 100_000)  # KiB: < 100 MB more

  def test_not_an_npz(self):
    np.save(os.path.join(self.d, "a.npy"), np.zeros(3))
    os.rename(os.path.join(self.d, "a.npy"), os.path.join(self.d, "a.npz"))
    self.refused(os.path.join(self.d, "a.npz"), "not an .npz")
    open(os.path.join(self.d, "empty.npz"), "wb").close()
    self.refused(os.path.join(self.d, "empty.npz"), "not an .npz")
    self.refused(self.d, "a directory")
    with open(os.path.join(self.d, "t.npz"), "wb") as f:  # the layout of a torch.save zip, named .npz
      with zipfile.ZipFile(f, "w") as z:
        z.writestr("model/data.pkl", b"\x80\x02cos\nsystem\n.")
    self.refused(os.path.join(self.d, "t.npz"), "refused os.system")
    with self.assertRaisesRegex(models.ArchitectureError, "a torch.save archive"):
      models.read_npz_bounded(os.path.join(self.d, "t.npz"))

  def test_values_that_cannot_be_a_model(self):
    w = np.ones((3, 4))
    for name, bad, pattern in (("nan", np.where(w > 0, np.nan, 0.0), "non-finite"),
                               ("cplx", w + 1j, "not real-valued"), ("zero", np.ones((0, 4)), "zero-width")):
      path = os.path.join(self.d, f"{name}.npz")
      np.savez(path, **{"0.weight": bad, "1.weight": np.ones((1, bad.shape[0]))})
      self.refused(path, pattern)

  def test_hostile_safetensors_headers(self):
    p = os.path.join(self.d, "m.safetensors")
    good = np.ones((2, 3), "<f4").tobytes()
    cases = [
        ([1, 2], b"", "JSON list"),
        ({"w": {"shape": [2, 3], "data_offsets": [0, 24]}}, good, "lacks dtype"),
        ({"w": {"dtype": "F32", "shape": [8, -40], "data_offsets": [0, 24]}}, good, "non-negative integers"),
        ({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
          "v": {"dtype": "F32", "shape": [2, 3], "data_offsets": [12, 36]}}, good + good, "overlap"),
        ({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, good[:10], "past the end"),
    ]
    for header, payload, pattern in cases:
      _safetensors(p, header, payload)
      self.refused(p, pattern)
    with open(p, "wb") as f:  # a header length of 2^63
      f.write(struct.pack("<Q", 1 << 63) + b"{}")
    self.refused(p, "does not fit")


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class _Payload:
  """Unpickling this runs a shell command: what a hostile .pt holds."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


class TorchSaveTest(absltest.TestCase):
  """Issue 26: `torch.save(model.state_dict(), "model.pt")` read without torch and without running its code.

  tests/data holds files written by torch 2.14.1 (torch is not needed to run this test): torch_mlp.pt, the
  state_dict of nn.Sequential(Linear(12, 8), ReLU, Linear(8, 6, bias=False), ReLU, Linear(6, 1, bias=False));
  torch_mlp_views.pt, the same weights in float64 with the first layer a transposed view at offset 17 of a
  200-element storage; torch_mlp_expected.npz, 7 inputs and torch's own outputs for them; torch_whole_model.pt,
  `torch.save(model)`; torch_legacy.pt, the pre-1.6 format."""

  def setUp(self):
    super().setUp()
    self.d = self.create_tempdir().full_path
    self.addCleanup(shutil.rmtree, self.d, ignore_errors=True)

  def test_a_real_torch_export_gives_torchs_outputs(self):
    ref = np.load(os.path.join(DATA, "torch_mlp_expected.npz"))
    for name in ("torch_mlp.pt", "torch_mlp_views.pt"):
      params = models.load_torch(os.path.join(DATA, name))
      self.assertEqual([sorted(p) for p in params], [["b", "w"], ["w"], ["w"]])
      out = np.asarray(nets.apply(params, jnp.asarray(ref["x"]))).reshape(-1)
      np.testing.assert_allclose(out, ref["out"].reshape(-1), atol=1e-6)  # torch computed in float32

  def test_a_whole_pickled_model_and_the_legacy_format_are_refused_with_the_export(self):
    with self.assertRaisesRegex(models.ArchitectureError, "refused torch.nn.*whole pickled model.*state_dict"):
      models.load_torch(os.path.join(DATA, "torch_whole_model.pt"))
    with self.assertRaisesRegex(models.ArchitectureError, "pre-1.6 torch file.*state_dict"):
      models.load_torch(os.path.join(DATA, "torch_legacy.pt"))

  def _rewrite(self, name, pkl=None, storages=None):
    """A copy of torch_mlp.pt with its pickle or some storages replaced."""
    out = os.path.join(self.d, name)
    with zipfile.ZipFile(os.path.join(DATA, "torch_mlp.pt")) as src, zipfile.ZipFile(out, "w") as dst:
      for info in src.infolist():
        data = src.read(info)
        if info.filename.endswith("data.pkl") and pkl is not None:
          data = pkl
        key = info.filename.rpartition("/data/")[2] if "/data/" in info.filename else None
        if storages and key in storages:
          data = storages[key]
        dst.writestr(info.filename, data)
    return out

  def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(self):
    import pickle  # noqa: PLC0415
    marker = os.path.join(self.d, "ran")
    path = self._rewrite("evil.pt", pkl=pickle.dumps({"0.weight": _Payload(marker)}, protocol=2))
    with self.assertRaisesRegex(models.ArchitectureError, r"refused (posix|os)\.system"):
      models.load_torch(path)
    self.assertFalse(os.path.exists(marker))
    self.assertTrue(pickle.loads(pickle.dumps(_Payload(marker))) == 0 and os.path.exists(marker))  # it would have

  def test_storages_that_lie_about_their_size_are_refused(self):
    with zipfile.ZipFile(os.path.join(DATA, "torch_mlp.pt")) as z:
      pkl = z.read("torch_mlp/data.pkl")
    short = self._rewrite("short.pt", storages={"0": b"\0" * 40})  # the 8 x 12 float32 weight needs 384 bytes
    with self.assertRaisesRegex(models.ArchitectureError, "storage '0' should hold 384 bytes, the archive has 40"):
      models.load_torch(short)
    with self.assertRaisesRegex(models.ArchitectureError, "over|more than 100 bytes"):
      models.load_torch(os.path.join(DATA, "torch_mlp.pt"), max_bytes=100)
    # a tensor whose shape reaches past its storage: (8, 12) -> (8, 13) in the pickle's size tuple
    grown = self._rewrite("grown.pt", pkl=pkl.replace(b"K\x08K\x0c\x86", b"K\x08K\x0d\x86", 1))
    with self.assertRaisesRegex(models.ArchitectureError, "reaches element"):
      models.load_torch(grown)
    with self.assertRaisesRegex(models.ArchitectureError, "unreadable torch pickle"):
      models.load_torch(self._rewrite("cut.pt", pkl=pkl[:len(pkl) // 2]))


if __name__ == "__main__":
  absltest.main()
