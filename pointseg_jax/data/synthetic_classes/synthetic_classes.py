"""`synthetic_classes`: the classification corpus the synthetic backbone is pretrained on.

160 classes (corpus.py), balanced, one object per image, train and held-out splits; the ImageNet
of the embedded benchmark (docs/training.md, "Pretraining").
"""
import dataclasses
from typing import Iterator

import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from pointseg_jax.data.prepare import NoStdoutBanner
from pointseg_jax.data.synthetic_classes import corpus


@dataclasses.dataclass
class SyntheticClassesConfig(tfds.core.BuilderConfig):
  """Images per class in each split, image side, seed."""
  train_per_class: int = 120
  heldout_per_class: int = 20
  size: int = 64
  seed: int = 0


class SyntheticClasses(NoStdoutBanner, tfds.core.GeneratorBasedBuilder):
  """Object-centric procedural images of 160 classes (the benchmark's 20 among them)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "160 shape x colour x texture classes on benchmark backgrounds."}
  BUILDER_CONFIGS = [
      SyntheticClassesConfig(name="tiny", description="2 + 1 images per class at 32 px (tests).",
                             train_per_class=2, heldout_per_class=1, size=32, seed=1),
      SyntheticClassesConfig(name="default",
                             description="120 + 20 images per class at 64 px (pretraining).",
                             train_per_class=120, heldout_per_class=20, size=64, seed=0),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=corpus.CLASS_NAMES_CORPUS),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    per_class = {"train": cfg.train_per_class, "heldout": cfg.heldout_per_class}
    return {split: self._generate_examples(split, per_class[split] * corpus.NUM_CLASSES)
            for split in corpus.SPLITS}

  def _generate_examples(self, split: str, num: int) -> Iterator[tuple[str, dict]]:
    cfg = self.builder_config
    with tqdm_utils.tqdm(total=num, desc=f"synthetic_classes/{cfg.name} {split}",
                         unit=" images", leave=False) as bar:
      for index in range(num):
        yield corpus.make_example(cfg.seed, split, index, cfg.size)
        bar.update(1)
