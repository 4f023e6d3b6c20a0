"""ddlib: diffusion models (DDPM, DDIM, latent diffusion, classifier-free guidance) for teaching and reports.

Modules, one concept each:

- :mod:`ddlib.schedules`  noise schedules β_t, ᾱ_t and the forward process q(x_t | x_0)
- :mod:`ddlib.samplers`   DDPM and DDIM update steps and sampling loops (free functions)
- :mod:`ddlib.unet`       the ε-prediction UNet, its config dataclass and named presets
- :mod:`ddlib.data`       CIFAR-10, class-folder image sets, a synthetic set; uint8 caches
- :mod:`ddlib.train`      the training loop: AdamW, warmup, EMA, clipping, checkpoints, resume, logs
- :mod:`ddlib.checkpoint` atomic checkpoint files, loaded with ``weights_only=True``
- :mod:`ddlib.metrics`    FID, KID, Inception Score, cached reference statistics
- :mod:`ddlib.convert`    diffusers' UNet2DModel → a ddlib UNet and run folder (:func:`from_diffusers`)
"""

from ddlib.errors import DDLibError

__all__ = ["DDLibError", "from_diffusers"]


def from_diffusers(model_or_folder):
    """A ddlib UNet with the function of diffusers' ``UNet2DModel`` (object or ``save_pretrained`` folder):
    :func:`ddlib.convert.from_diffusers`."""
    from ddlib.convert import from_diffusers as convert

    return convert(model_or_folder)

__version__ = "0.1.0"
