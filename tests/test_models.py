"""FCN-VGG16: conv formulations vs lax.conv, Caffe deploy geometry vs a direct reference, sizes, params."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pointseg_jax.models import FCN
from pointseg_jax.models import abstract_variables
from pointseg_jax.models import fcn
from pointseg_jax.models import layers
from pointseg_jax.models import param_count
from pointseg_jax.models import vgg16

DN = ("NHWC", "HWIO", "NHWC")


def _rand(rng, shape, scale=1.0):
  return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def _close(a, b, rtol=1e-5):
  """Equal up to float32 round-off, relative to the largest magnitude."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape
  np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1e-30, np.abs(b).max()))


# ------------------------------------------------------------------------------ formulations ---

FORMULATION_CASES = [
    # x shape, kernel shape, padding, impl
    ((2, 9, 11, 5), (3, 3, 5, 4), 1, "wgmm"),
    ((1, 6, 7, 3), (3, 3, 3, 6), ((4, 0), (1, 5)), "wgmm"),      # asymmetric, pad > kernel
    ((1, 4, 5, 3), (3, 3, 3, 2), 100, "wgmm"),                   # conv1_1's pad 100 (caffe)
    ((2, 9, 11, 5), (3, 3, 5, 4), 1, "wgpatch"),
    ((1, 4, 5, 3), (3, 3, 3, 2), ((100, 99), (3, 100)), "wgpatch"),
    ((2, 9, 8, 6), (7, 7, 6, 5), "VALID", "patches"),            # fc6 in caffe mode
    ((1, 3, 4, 6), (7, 7, 6, 5), "SAME", "patches"),             # fc6 in same mode: kernel > map
    ((1, 5, 6, 4), (3, 3, 4, 2), ((1, 0), (0, 2)), "patches"),
    ((2, 5, 4, 7), (1, 1, 7, 3), 0, "einsum"),                   # fc7 / score layers
    ((1, 3, 3, 2), (1, 1, 2, 3), 1, "einsum"),
]


@pytest.mark.parametrize("xshape,kshape,padding,impl", FORMULATION_CASES)
def test_formulation_equals_lax_conv_in_value_and_gradients(xshape, kshape, padding, impl):
  rng = np.random.default_rng(sum(xshape) + sum(kshape))
  x, w = _rand(rng, xshape), _rand(rng, kshape)
  pads = layers.normalize_padding(padding, kshape[:2])
  ref = jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DN)
  got = layers.conv(x, w, padding, impl)
  _close(got, ref)
  g = _rand(rng, ref.shape)
  dx_ref, dw_ref = jax.vjp(
      lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DN),
      x, w)[1](g)
  dx, dw = jax.jit(lambda x, w, g: jax.vjp(lambda x, w: layers.conv(x, w, padding, impl),
                                           x, w)[1](g))(x, w, g)
  _close(dx, dx_ref)
  _close(dw, dw_ref)


def test_normalize_padding():
  assert layers.normalize_padding("SAME", (7, 7)) == ((3, 3), (3, 3))
  assert layers.normalize_padding("SAME", (2, 2)) == ((0, 1), (0, 1))
  assert layers.normalize_padding("valid", (3, 3)) == ((0, 0), (0, 0))
  assert layers.normalize_padding(100, (3, 3)) == ((100, 100), (100, 100))
  with pytest.raises(ValueError, match="padding"):
    layers.normalize_padding("FULL", (3, 3))


def test_auto_picks_the_measured_formulation():
  k3 = lambda cin, cout: (3, 3, cin, cout)
  assert layers.resolve_impl("auto", (1, 1, 8, 8), (9, 9), "cpu") == "einsum"
  assert layers.resolve_impl("auto", (7, 7, 8, 8), (9, 9), "cpu") == "patches"
  # width 1/8 FCN: blocks 1-2 (8, 16 channels) wgmm, blocks 3-5 (32, 64) lax; tiny maps lax
  assert layers.resolve_impl("auto", k3(3, 8), (454, 454), "cpu") == "wgmm"
  assert layers.resolve_impl("auto", k3(8, 16), (64, 64), "cpu") == "wgmm"
  assert layers.resolve_impl("auto", k3(8, 16), (63, 64), "cpu") == "lax"
  assert layers.resolve_impl("auto", k3(16, 32), (227, 227), "cpu") == "lax"
  assert layers.resolve_impl("auto", k3(64, 64), (399, 400), "cpu") == "lax"
  # full width: the image layer one patches matmul; 64 channels on >= 400^2 maps, >= 128 wgmm
  assert layers.resolve_impl("auto", k3(3, 64), (454, 454), "cpu") == "wgpatch"
  assert layers.resolve_impl("auto", k3(3, 64), (512, 512), "cpu") == "wgpatch"
  assert layers.resolve_impl("auto", k3(3, 64), (63, 64), "cpu") == "lax"
  assert layers.resolve_impl("auto", k3(64, 64), (400, 400), "cpu") == "wgmm"
  assert layers.resolve_impl("auto", k3(128, 256), (114, 114), "cpu") == "wgmm"
  for backend in ("gpu", "tpu"):
    assert layers.resolve_impl("auto", (7, 7, 8, 8), (9, 9), backend) == "lax"
    assert layers.resolve_impl("auto", k3(3, 8), (454, 454), backend) == "lax"
  assert layers.resolve_impl("patches", k3(3, 8), (2, 2), "tpu") == "patches"
  with pytest.raises(ValueError, match="conv impl"):
    layers.resolve_impl("fft", k3(3, 8), (2, 2))


def test_conv_errors_on_an_input_smaller_than_the_kernel():
  with pytest.raises(ValueError, match="at least 7x7"):
    layers.conv(jnp.zeros((1, 6, 9, 2)), jnp.zeros((7, 7, 2, 3)), "VALID")
  with pytest.raises(ValueError, match="1x1 kernels"):
    layers.conv(jnp.zeros((1, 6, 9, 2)), jnp.zeros((3, 3, 2, 3)), 1, "einsum")


def test_conv_module_params_and_bias():
  mod = layers.Conv(4, 3, padding=1, bias_init=jax.nn.initializers.constant(0.5))
  x = jnp.zeros((1, 5, 6, 2))
  variables = mod.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == {
      "params": {"kernel": (3, 3, 2, 4), "bias": (4,)}}
  np.testing.assert_array_equal(mod.apply(variables, x), np.full((1, 5, 6, 4), 0.5, np.float32))


# ------------------------------------------------------------------------------- upsampling ---


def test_bilinear_taps_are_caffes_upsample_filt():
  # upsample_filt(4): factor 2, centre 1.5 -> 1 - |k - 1.5| / 2
  np.testing.assert_allclose(fcn.bilinear_taps(2), [0.25, 0.75, 0.75, 0.25])
  t = fcn.bilinear_taps(32)      # the 64x64 kernel of FCN-32s' upscore
  assert t.shape == (64,)
  np.testing.assert_allclose(t[[0, 31, 32, 63]], [1 / 64, 63 / 64, 63 / 64, 1 / 64])


def _caffe_deconv_crop(x, factor, offset, out_hw):
  """Caffe Deconvolution(kernel 2f, stride f, per channel, bilinear) + Crop, written as col2im."""
  n, h, w, c = x.shape
  k = 2 * factor
  taps = fcn.bilinear_taps(factor)
  f2d = np.outer(taps, taps)
  full = np.zeros((n, (h - 1) * factor + k, (w - 1) * factor + k, c))
  for i in range(h):
    for j in range(w):
      full[:, i * factor:i * factor + k, j * factor:j * factor + k, :] += (
          f2d[None, :, :, None] * np.asarray(x)[:, i, j, None, None, :])
  if out_hw is None:
    return full
  return full[:, offset:offset + out_hw[0], offset:offset + out_hw[1], :]


@pytest.mark.parametrize("factor,offset,hw,out_hw", [
    (32, 19, (3, 4), (37, 41)), (2, 0, (3, 5), None), (16, 27, (2, 2), (5, 9)), (8, 31, (5, 4), (9, 1))])
def test_caffe_upsample_equals_bilinear_deconvolution_and_crop(factor, offset, hw, out_hw):
  rng = np.random.default_rng(factor)
  x = _rand(rng, (2, *hw, 3))
  got = fcn.caffe_upsample(x, factor, offset, out_hw)
  _close(got, _caffe_deconv_crop(x, factor, offset, out_hw))


def test_caffe_upsample_equals_a_full_fixed_kernel_conv_transpose():
  """The released net's upscore: a C->C 64x64 Deconvolution, bilinear on the diagonal."""
  rng = np.random.default_rng(1)
  x = _rand(rng, (1, 2, 3, 3))
  taps = fcn.bilinear_taps(32)
  kernel = np.einsum("h,w,io->hwio", taps, taps, np.eye(3)).astype(np.float32)
  full = jax.lax.conv_transpose(x, kernel, (32, 32), "VALID", dimension_numbers=DN)
  _close(fcn.caffe_upsample(x, 32, 19, (40, 70)), full[:, 19:59, 19:89])


def test_crop_offsets_follow_from_caffe_coordinate_maps():
  """Each Crop offset = where the data pixel 0 falls in the cropped blob (Caffe's coord_map).

  A blob coordinate u maps to data as a*u + b: conv(k, pad) b += a*((k-1)/2 - pad); pool 2/2:
  a *= 2, b += a_old*0.5; deconv(2f, f): a /= f, b -= a_new*(f - 0.5).
  """
  def trace(ops):
    a, b = 1.0, 0.0
    for op, *args in ops:
      if op == "conv":
        k, pad = args
        b += a * ((k - 1) / 2 - pad)
      elif op == "pool":
        b += a * 0.5
        a *= 2
      else:   # deconv
        f = args[0]
        a /= f
        b -= a * (f - 0.5)
    return a, b
  convs = lambda n: [("conv", 3, 1)] * n
  pool3 = [("conv", 3, 100)] + convs(1) + [("pool",)] + convs(2) + [("pool",)] + convs(3) + [
      ("pool",)]
  pool4 = pool3 + convs(3) + [("pool",)]
  score_fr = pool4 + convs(3) + [("pool",), ("conv", 7, 0)]
  offset = lambda ops: -trace(ops)[1] / trace(ops)[0]
  up2 = score_fr + [("deconv", 2)]
  up4 = up2 + [("deconv", 2)]
  # offset of the skip crop = up coordinate minus the skip's, both at the same data pixel
  skip = lambda up, tap: (trace(up)[1] - trace(tap)[1]) / trace(tap)[0]
  assert offset(score_fr + [("deconv", 32)]) == fcn.CAFFE_OFFSETS["32s"][2] == 19
  assert skip(up2, pool4) == fcn.CAFFE_OFFSETS["16s"][0] == 5
  assert offset(up2 + [("deconv", 16)]) == fcn.CAFFE_OFFSETS["16s"][2] == 27
  assert skip(up4, pool3) == fcn.CAFFE_OFFSETS["8s"][1] == 9
  assert offset(up4 + [("deconv", 8)]) == fcn.CAFFE_OFFSETS["8s"][2] == 31


# --------------------------------------------------------------------- the deploy-net forward ---


def _ceil_pool(x):
  x = np.asarray(x)
  n, h, w, c = x.shape
  xp = np.full((n, h + h % 2, w + w % 2, c), -np.inf)
  xp[:, :h, :w] = x
  return xp.reshape(n, xp.shape[1] // 2, 2, xp.shape[2] // 2, 2, c).max(axis=(2, 4))


def _floor_pool(x):
  x = np.asarray(x)
  n, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _reference(params, images, variant, mode):
  """The FCN deploy nets written out layer by layer with lax.conv and numpy (no model code)."""
  def conv(x, name, pad):
    p = params[name]
    y = jax.lax.conv_general_dilated(jnp.asarray(x, jnp.float32), p["kernel"], (1, 1),
                                     pad, dimension_numbers=DN)
    return np.asarray(y + p["bias"], np.float64)
  relu = lambda x: np.maximum(x, 0)
  x = np.asarray(images, np.float64)[..., ::-1] - np.array([104.00699, 116.66877, 122.67892])
  caffe = mode == "caffe"
  pool = _ceil_pool if caffe else _floor_pool
  taps = {}
  for b, n in enumerate((2, 2, 3, 3, 3), start=1):
    for i in range(1, n + 1):
      pad = 100 if (caffe and b == i == 1) else 1
      x = relu(conv(x, f"conv{b}_{i}", [(pad, pad)] * 2))
    x = pool(x)
    taps[b] = x
  x = relu(conv(x, "fc6", "VALID" if caffe else "SAME"))
  x = relu(conv(x, "fc7", "VALID"))
  x = conv(x, "score_fr", "VALID")
  h, w = images.shape[1:3]
  if caffe:
    # released prototxts: 32s crop 19; 16s crops 5, 27; 8s crops 5, 9, 31
    if variant in ("16s", "8s"):
      up = _caffe_deconv_crop(x, 2, 0, None)
      s4 = conv(taps[4], "score_pool4", "VALID")
      x = up + s4[:, 5:5 + up.shape[1], 5:5 + up.shape[2]]
    if variant == "8s":
      up = _caffe_deconv_crop(x, 2, 0, None)
      s3 = conv(taps[3], "score_pool3", "VALID")
      x = up + s3[:, 9:9 + up.shape[1], 9:9 + up.shape[2]]
    factor, offset = {"32s": (32, 19), "16s": (16, 27), "8s": (8, 31)}[variant]
    return _caffe_deconv_crop(x, factor, offset, (h, w))
  resize = lambda x, hw: np.asarray(jax.image.resize(
      jnp.asarray(x, jnp.float32), (x.shape[0], *hw, x.shape[3]), "linear"))
  for name, tap in (("score_pool4", 4), ("score_pool3", 3))[:("32s", "16s", "8s").index(variant)]:
    s = conv(taps[tap], name, "VALID")
    x = resize(x, s.shape[1:3]) + s
  return resize(x, (h, w))


def _random_params(model, seed=0):
  """init_params, with the zero-initialised score layers made random so they are exercised."""
  params = fcn.init_params(model, seed)
  rng = np.random.default_rng(seed)
  return {k: ({"kernel": _rand(rng, v["kernel"].shape, 0.05), "bias": _rand(rng, v["bias"].shape)}
              if k.startswith("score") else v) for k, v in params.items()}


@pytest.mark.parametrize("variant,mode,hw", [
    ("32s", "caffe", (37, 45)), ("16s", "caffe", (33, 40)), ("8s", "caffe", (35, 31)),
    ("32s", "same", (67, 45)), ("8s", "same", (70, 97))])
def test_forward_equals_the_deploy_net_written_out(variant, mode, hw):
  model = FCN(variant=variant, mode=mode, width=1 / 16)
  images = jnp.asarray(np.random.default_rng(2).uniform(0, 255, (2, *hw, 3)), jnp.float32)
  params = _random_params(model)
  got = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, images)
  assert got.shape == (2, *hw, 21) and got.dtype == jnp.float32
  _close(got, _reference(params, images, variant, mode), rtol=1e-4)


def test_conv_formulations_do_not_change_the_network_or_its_gradients():
  """conv_impl='auto' (wgmm, patches, einsum on CPU) vs 'lax': same logits and param grads."""
  images = jnp.asarray(np.random.default_rng(3).uniform(0, 255, (1, 40, 36, 3)), jnp.float32)
  fast, ref = (FCN(variant="8s", width=1 / 16, conv_impl=i) for i in ("auto", "lax"))
  params = _random_params(ref)
  target = jax.random.normal(jax.random.key(4), (1, 40, 36, 21))

  def grads(model):
    loss = lambda p: jnp.sum(model.apply({"params": p}, images) * target)
    return jax.jit(jax.value_and_grad(loss))(params)
  (lf, gf), (lr, gr) = grads(fast), grads(ref)
  assert layers.resolve_impl("auto", (3, 3, 3, 4), (238, 234), jax.default_backend()) == "wgmm"
  _close(lf, lr, 1e-5)
  for k in gr:
    _close(gf[k]["kernel"], gr[k]["kernel"], 1e-4)
    _close(gf[k]["bias"], gr[k]["bias"], 1e-4)


# ------------------------------------------------------------------------------------- sizes ---


@pytest.mark.parametrize("mode", ["caffe", "same"])
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_shape_equals_input_shape(mode, variant):
  model = FCN(variant=variant, mode=mode, width=1 / 8)
  sizes = [(375, 500), (33, 47), (500, 32)] + ([(1, 1), (2, 7)] if mode == "caffe" else [])
  for hw in sizes:
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32))
    assert (out.shape, out.dtype) == ((2, *hw, 21), jnp.float32), hw


def test_caffe_mode_runs_a_one_pixel_image():
  model = FCN(width=1 / 16)
  x = jnp.full((1, 1, 1, 3), 128.0)
  logits = jax.jit(model.apply)({"params": fcn.init_params(model)}, x)
  assert logits.shape == (1, 1, 1, 21) and bool(jnp.isfinite(logits).all())


@pytest.mark.parametrize("hw", [(31, 40), (40, 31), (1, 1)])
def test_same_mode_below_32_pixels_is_a_clear_error(hw):
  model = FCN(mode="same", width=1 / 8)
  with pytest.raises(ValueError, match=r"mode='same' needs H, W >= 32.*mode='caffe'"):
    model.init(jax.random.key(0), jnp.zeros((1, *hw, 3)))


@pytest.mark.parametrize("kwargs,shape,match", [
    (dict(variant="4s"), (1, 8, 8, 3), "variant"), (dict(mode="valid"), (1, 8, 8, 3), "mode"),
    (dict(width=0), (1, 8, 8, 3), "width"), ({}, (8, 8, 3), r"\[B, H, W, 3\]"),
    ({}, (1, 8, 8, 1), r"\[B, H, W, 3\]")])
def test_bad_arguments_are_clear_errors(kwargs, shape, match):
  with pytest.raises(ValueError, match=match):
    FCN(**kwargs).init(jax.random.key(0), jnp.zeros(shape))


def test_feature_size_matches_the_network():
  # caffe: ceil((n + 198) / 32); same: floor(n / 32)
  assert [vgg16.feature_size(n, "caffe") for n in (1, 31, 500)] == [7, 8, 22]
  assert [vgg16.feature_size(n, "same") for n in (32, 63, 500)] == [1, 1, 15]


# ------------------------------------------------------------------------------- parameters ---

FULL_SHAPES = {
    "conv1_1": (3, 3, 3, 64), "conv1_2": (3, 3, 64, 64),
    "conv2_1": (3, 3, 64, 128), "conv2_2": (3, 3, 128, 128),
    "conv3_1": (3, 3, 128, 256), "conv3_2": (3, 3, 256, 256), "conv3_3": (3, 3, 256, 256),
    "conv4_1": (3, 3, 256, 512), "conv4_2": (3, 3, 512, 512), "conv4_3": (3, 3, 512, 512),
    "conv5_1": (3, 3, 512, 512), "conv5_2": (3, 3, 512, 512), "conv5_3": (3, 3, 512, 512),
    "fc6": (7, 7, 512, 4096), "fc7": (1, 1, 4096, 4096), "score_fr": (1, 1, 4096, 21),
}


def test_full_fcn32s_has_the_papers_parameter_count_and_caffe_layer_names():
  params = abstract_variables(FCN())["params"]
  assert param_count(params) == 134_346_581
  assert {k: (v["kernel"].shape, v["bias"].shape) for k, v in params.items()} == {
      k: (s, (s[-1],)) for k, s in FULL_SHAPES.items()}
  assert all(v["kernel"].dtype == jnp.float32 for v in params.values())


@pytest.mark.parametrize("variant,extra", [("16s", 512 * 21 + 21), ("8s", 512 * 21 + 256 * 21 + 42)])
def test_skip_heads_add_score_pool_layers(variant, extra):
  params = abstract_variables(FCN(variant=variant, mode="same"))["params"]
  assert param_count(params) == 134_346_581 + extra
  assert params["score_pool4"]["kernel"].shape == (1, 1, 512, 21)
  if variant == "8s":
    assert params["score_pool3"]["kernel"].shape == (1, 1, 256, 21)


def test_width_scales_convs_and_fc():
  params = abstract_variables(FCN(width=1 / 8, num_classes=5))["params"]
  shapes = {k: v["kernel"].shape for k, v in params.items()}
  assert shapes["conv1_1"] == (3, 3, 3, 8) and shapes["conv3_3"] == (3, 3, 32, 32)
  assert shapes["conv5_3"] == (3, 3, 64, 64) and shapes["fc6"] == (7, 7, 64, 512)
  assert shapes["fc7"] == (1, 1, 512, 512) and shapes["score_fr"] == (1, 1, 512, 5)


def test_init_params_has_model_inits_tree_and_law():
  model = FCN(variant="8s", width=1 / 4)
  params = fcn.init_params(model, seed=3)
  abstract = abstract_variables(model)["params"]
  assert jax.tree.map(lambda a: (a.shape, a.dtype), params) == jax.tree.map(
      lambda a: (a.shape, np.dtype(a.dtype)), abstract)
  k = params["conv3_3"]["kernel"]          # fan_in 3*3*64: He std sqrt(2/576) = 0.0589
  assert abs(k.std() - np.sqrt(2 / 576)) < 0.05 * np.sqrt(2 / 576) and np.abs(k).max() <= 2 * (
      np.sqrt(2 / 576) / 0.87962566103423978) + 1e-6
  assert not params["score_pool3"]["kernel"].any() and not params["fc6"]["bias"].any()
  assert not np.array_equal(k, fcn.init_params(model, seed=4)["conv3_3"]["kernel"])


def test_param_count_of_a_small_tree():
  assert param_count({"a": np.zeros((2, 3)), "b": {"c": jax.ShapeDtypeStruct((4,), jnp.float32)}}) == 10


# ---------------------------------------------------------------------- preprocessing, dropout ---


def test_preprocess_is_bgr_minus_the_caffe_mean():
  rgb = jnp.array([[[[255.0, 0.0, 10.0]]]])
  np.testing.assert_allclose(vgg16.preprocess(rgb)[0, 0, 0],
                             [10 - 104.00699, 0 - 116.66877, 255 - 122.67892], rtol=1e-6)


def test_dropout_only_in_training():
  model = FCN(width=1 / 16, mode="same")
  x = jnp.asarray(np.random.default_rng(5).uniform(0, 255, (1, 32, 32, 3)), jnp.float32)
  params = _random_params(model)
  apply = jax.jit(lambda p, x, k: (model.apply({"params": p}, x),
                                   model.apply({"params": p}, x, train=True, rngs={"dropout": k})))
  ev1, tr1 = apply(params, x, jax.random.key(1))
  ev2, tr2 = apply(params, x, jax.random.key(2))
  np.testing.assert_array_equal(ev1, ev2)
  assert float(jnp.abs(tr1 - tr2).max()) > 1e-3
  no_drop = FCN(width=1 / 16, mode="same", dropout=0.0)
  _close(no_drop.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)}), ev1)
