"""ddlib: diffusion models (DDPM, DDIM, latent diffusion, classifier-free guidance) for teaching and reports.

The public API a student uses, one concept per module (``import ddlib`` itself stays light: it loads no torch):

- :mod:`ddlib.schedules`  ``make_schedule``, ``NoiseSchedule``: β_t, ᾱ_t and the forward process q(x_t | x_0)
- :mod:`ddlib.samplers`   ``ddpm_step``, ``ddim_step``, ``ddim_timesteps``, ``ddpm_sample``, ``ddim_sample`` (free functions)
- :mod:`ddlib.guidance`   ``drop_labels`` (training), ``GuidedModel`` (classifier-free guidance at sampling)
- :mod:`ddlib.unet`       the ε-prediction UNet, ``UNetConfig``, ``unet_from_preset``
- :mod:`ddlib.generate`   ``generate``: batched, per-image-seeded sampling to uint8
- :mod:`ddlib.train`      ``TrainConfig``, ``train``, ``load_trained``: the one training loop (EMA, resume, logs)
- :mod:`ddlib.vae`, :mod:`ddlib.train_vae`, :mod:`ddlib.latent`  the KL autoencoder, its training, latent diffusion
- :mod:`ddlib.data`       CIFAR-10, class-folder image sets, a synthetic set; uint8 caches
- :mod:`ddlib.metrics`    FID, KID (with intervals: ``metrics.uncertainty``), Inception Score, reference statistics
- :mod:`ddlib.mixture`    a Gaussian mixture with exact ε*: diffusion with no model error, for the toy lab
- :func:`from_diffusers`  diffusers' ``UNet2DModel`` → a ddlib UNet (:mod:`ddlib.convert`)

Beside the core: :mod:`ddlib.lab` (the report), :mod:`ddlib.grading` (exercises, autograder), :mod:`ddlib.perf`
(benchmarks), :mod:`ddlib.accel` (CUDA graphs), :mod:`ddlib.distributed` (torchrun), :mod:`ddlib.cli`.
"""

from ddlib.errors import DDLibError

__all__ = ["DDLibError", "from_diffusers"]
__version__ = "0.1.0"


def from_diffusers(model_or_folder):
    """A ddlib UNet with the function of diffusers' ``UNet2DModel`` (object or ``save_pretrained`` folder):
    :func:`ddlib.convert.from_diffusers`."""
    from ddlib.convert import from_diffusers as convert

    return convert(model_or_folder)
