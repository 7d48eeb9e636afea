"""pointseg_jax: What's the Point (Bearman et al., ECCV 2016) in JAX/Flax.

Semantic segmentation trained from point clicks, image labels, squiggles, boxes or full masks through
the paper's four losses (Eq. 1-4). See README.md for the map of modules.
"""

__version__ = "0.1.0"

NUM_CLASSES = 21
IGNORE_INDEX = 255
# PASCAL VOC class names, standard ids (0 = background; the released click JSON uses the same ids).
CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
