"""Flax models: FCN-VGG16 (32s/16s/8s), its conv formulations and ImageNet weight import.

    from pointseg_jax.models import FCN
    from pointseg_jax.models import weights
    model = FCN(num_classes=21, variant='32s', width=1.0, mode='caffe')
    params = weights.load_params('fcn32s_init.npz', model)
    logits = model.apply({'params': params}, images_rgb_0_255, train=True, rngs={'dropout': key})

`weights` is not imported here: it is also a program (`python -m pointseg_jax.models.weights`),
and a package that imports its own `-m` module makes runpy execute a second copy of it (and warn).
"""
from pointseg_jax.models.fcn import FCN
from pointseg_jax.models.fcn import abstract_variables
from pointseg_jax.models.fcn import init_params
from pointseg_jax.models.fcn import param_count

__all__ = ["FCN", "abstract_variables", "init_params", "param_count"]
