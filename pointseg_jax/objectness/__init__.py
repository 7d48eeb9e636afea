"""Objectness prior (Alexe, Deselaers, Ferrari, TPAMI 2012) as the WTP authors used it for Eq. 4.

    from pointseg_jax import objectness
    o = objectness.heatmap(image_uint8_rgb, rng=0)        # uint8 [H, W]; P(obj) = (o + 1) / 257
    boxes, scores = objectness.objectness_boxes(image)   # the 1000 NMS-sampled scored windows

Pure numpy/scipy/scikit-image; the cue model ships inside the package (`alexe_v22.npz`).
See docs/objectness.md.
"""
from pointseg_jax.objectness.model import Model, default_model, load as load_model, load_packaged
from pointseg_jax.objectness.pipeline import as_rgb_uint8, heatmap, objectness_boxes
from pointseg_jax.objectness.render import boxes_to_heatmap, score_sum

__all__ = ["Model", "as_rgb_uint8", "boxes_to_heatmap", "default_model", "heatmap", "load_model",
           "load_packaged", "objectness_boxes", "score_sum"]
