"""FID (and KID) during training: a frozen config whose call samples with DDIM and scores the samples."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ddlib.errors import DDLibError
from ddlib.metrics import images as _images
from ddlib.metrics.reference import reference_features, reference_statistics
from ddlib.metrics.stats import FIDStatistics, fid, kid


@dataclass(frozen=True)
class FIDEvaluator:
    """FID (and KID) of DDIM samples against a reference, for ``train(..., evaluator=…)``.

    ``reference``: a data set spec (statistics and features cached; KID reported) or a statistics
    ``.npz`` (FID only). Samples use fixed seeds, so successive calls differ only through the model.
    Small ``num_samples`` make FID biased high (see the module docstring): compare values within one
    run, not with full-size FIDs. On 2 CPU cores the network scores ~8 images/s.
    ``num_classes``: for class-conditional models, labels ``i % num_classes`` are passed as ``y=``.
    ``sample_shape``: (C, H, W) given to the sampler; default the reference's image shape. For latent
    models pass the latent shape and ``decode`` (latents -> images in [-1, 1]) to the call.
    Call as ``evaluator(model, schedule, step)`` or bind the schedule: ``evaluator.bind(schedule)``, which
    gives the ``evaluator(model, step) -> dict`` that :func:`ddlib.train` expects. The dict holds
    ``fid``, ``fid_n`` (samples), ``fid_ref_n``, ``kid_mean``/``kid_std`` (reference given as a data set
    spec) and the seconds spent sampling and scoring.
    """

    reference: str
    num_samples: int = 500
    reference_count: int | None = None
    ddim_steps: int = 50
    eta: float = 0.0
    batch_size: int = 100
    seed: int = 0
    num_classes: int | None = None
    sample_shape: tuple[int, int, int] | None = None
    device: str | None = None
    kid_subset_size: int = 1000
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def _reference(self):
        if "ref" not in self._cache:
            if str(self.reference).endswith(".npz"):
                st = FIDStatistics.load(self.reference)
                self._cache["ref"] = (st, None)
            else:
                feats, _ = reference_features(self.reference, count=self.reference_count, device=self.device)
                self._cache["ref"] = (reference_statistics(self.reference, count=self.reference_count), feats)
        return self._cache["ref"]

    def bind(self, schedule, decode: Callable | None = None, **model_kwargs) -> Callable[[Any, int], dict]:
        return lambda model, step: self(model, schedule, step, decode=decode, **model_kwargs)

    def __call__(self, model, schedule, step: int, decode: Callable | None = None, **model_kwargs) -> dict:
        from ddlib.data import to_uint8
        from ddlib.samplers import ddim_sample

        ref, ref_feats = self._reference()
        shape = self.sample_shape or tuple(ref.provenance.get("image_shape") or ())
        if len(shape) != 3:
            raise DDLibError("FIDEvaluator needs sample_shape=(C, H, W): the reference does not record its image shape")
        params = model.parameters() if hasattr(model, "parameters") else iter(())
        dev = next((p.device for p in params), torch.device("cpu"))
        t0 = time.perf_counter()
        chunks = []
        for i in range(0, self.num_samples, self.batch_size):
            b = min(self.batch_size, self.num_samples - i)
            g = torch.Generator(device=dev).manual_seed(self.seed * 1_000_003 + i)
            kw = dict(model_kwargs)
            if self.num_classes:
                kw["y"] = torch.arange(i, i + b, device=dev) % self.num_classes
            x = ddim_sample(model, schedule, (b, *shape), num_steps=self.ddim_steps, eta=self.eta, generator=g,
                            progress=False, **kw)
            if decode is not None:
                with torch.no_grad():
                    x = decode(x)
            chunks.append(to_uint8(x).cpu())
        t1 = time.perf_counter()
        feats = _images.compute_features(torch.cat(chunks), device=self.device or dev, progress=False)
        fid_value = fid(FIDStatistics.from_features(feats), ref, features_a=feats)
        out = {"fid": fid_value, "fid_n": int(len(feats)), "fid_ref_n": int(ref.n)}
        if ref_feats is not None:
            out["kid_mean"], out["kid_std"] = kid(feats, ref_feats, subset_size=self.kid_subset_size)
        out.update(fid_sample_seconds=round(t1 - t0, 2), fid_feature_seconds=round(time.perf_counter() - t1, 2))
        return out
