"""The classification net the FCN converts: VGG16 convs + fc6/fc7 + an fc8 classifier.

Used to pretrain the synthetic configs' backbone on the `synthetic_classes` corpus
(`pointseg_jax.pretrain`), the role ImageNet classification plays for the paper's VGG16.
Layer names and shapes are the FCN's (conv1_1 .. conv5_3, fc6 [7,7,C,F], fc7 [1,1,F,F]), so the
trained params load into `FCN` by name; fc8 [1,1,F,K] becomes score_fr through the authors' row
trick (`weights.py`).

fc6/fc7/fc8 run as convolutions over the whole image and the class scores are averaged over
positions: VGG's own dense evaluation (Simonyan & Zisserman 2015, §3.2: the fully connected layers
converted to convolutions, the class score map spatially averaged), which lets the classifier see
images smaller than the FCN's. On a small image pool5 is small (2x2 at 64 px) and SAME padding
means fc6's outer taps only ever multiply zeros: they get no gradient, so they start at zero
(`reachable_taps_init`) and stay there, instead of keeping random values that the FCN, on its
larger pool5 map, would read as noise. Fine-tuning then grows them from zero.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from pointseg_jax.models import layers
from pointseg_jax.models import vgg16


def reachable_taps_init(reach: tuple[int, int]) -> nn.initializers.Initializer:
  """He init on the central (2 rh + 1) x (2 rw + 1) taps of a kernel (fan-in over those taps
  only), zero on the taps that never see the input: pool5 of side n reaches offsets |d| < n."""
  def init(key, shape, dtype=jnp.float32):
    kh, kw, cin, cout = shape
    rh, rw = min(reach[0], kh // 2), min(reach[1], kw // 2)
    live = nn.initializers.kaiming_normal()(key, (2 * rh + 1, 2 * rw + 1, cin, cout), dtype)
    return jnp.zeros(shape, dtype).at[kh // 2 - rh:kh // 2 + rh + 1,
                                      kw // 2 - rw:kw // 2 + rw + 1].set(live)
  return init


class Classifier(nn.Module):
  """VGG16 classifier in 'same' geometry; `apply(..., images_rgb_0_255)` -> logits [B, K].

  Attributes:
    num_classes: K, the corpus classes.
    width: multiplier on every conv's channels and on fc6/fc7's 4096 (the FCN's `width`).
    dropout: rate after fc6 and fc7 in training (VGG's 0.5).
  """
  num_classes: int
  width: float = 1.0
  dropout: float = 0.5

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    x = vgg16.preprocess(images.astype(jnp.float32))
    x = vgg16.backbone(x, width=self.width, mode="same")["pool5"]
    fc = vgg16.scaled(vgg16.FC_CHANNELS, self.width)
    reach = (x.shape[1] - 1, x.shape[2] - 1)
    x = layers.Conv(fc, vgg16.FC6_KERNEL, padding="SAME", name="fc6",
                    kernel_init=reachable_taps_init(reach))(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    x = layers.Conv(fc, 1, name="fc7")(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    # Zero-initialised, like the FCN's score layers: the first loss is log K, not the huge one
    # He-initialised logits over unnormalised 0..255 inputs give.
    x = layers.Conv(self.num_classes, 1, name="fc8", kernel_init=nn.initializers.zeros_init())(x)
    return jnp.mean(x, axis=(1, 2))
