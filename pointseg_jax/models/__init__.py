"""Flax models: FCN-VGG16 (32s/16s/8s), its conv formulations and ImageNet weight import.

    from pointseg_jax.models import FCN, load_params
    model = FCN(num_classes=21, variant='32s', width=1.0, mode='caffe')
    logits = model.apply({'params': params}, images_rgb_0_255, train=True, rngs={'dropout': key})
"""
from pointseg_jax.models.fcn import FCN
from pointseg_jax.models.fcn import abstract_variables
from pointseg_jax.models.fcn import init_params
from pointseg_jax.models.fcn import param_count
from pointseg_jax.models.weights import load_params

__all__ = ["FCN", "abstract_variables", "init_params", "param_count", "load_params"]
