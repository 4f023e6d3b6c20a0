"""FID (and KID) during training: a frozen config whose call samples with DDIM and scores the samples."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ddlib.metrics import images as _images
from ddlib.metrics.reference import Source, fid_kid, reference_features, reference_statistics
from ddlib.metrics.stats import FIDStatistics


@dataclass(frozen=True)
class FIDEvaluator:
    """FID (and KID) of DDIM samples against a reference, for ``train(..., evaluator=…)``.

    ``reference``: a data set spec (statistics and features cached; KID reported) or a statistics
    ``.npz`` (FID only). Samples come from :func:`ddlib.generate.generate` with fixed per-image seeds,
    so successive calls differ only through the model; class-conditional models get labels cycling
    through the classes, at guidance scale ``guidance``. Small ``num_samples`` make FID biased high
    (see the module docstring): compare values within one run, not with full-size FIDs. On a CPU the
    network is slow (docs/measurements.md): keep ``num_samples`` small there.
    Call as ``evaluator(model, schedule, step)`` or bind the schedule (and, for latent models, the
    decoder): ``evaluator.bind(schedule, decode=vae.decode)`` gives the ``evaluator(model, step) -> dict``
    that :func:`ddlib.train` expects. The dict holds ``fid``, ``fid_n`` (samples), ``fid_ref_n``,
    ``kid_mean``/``kid_std`` (reference given as a data set spec) and the seconds spent sampling and scoring.
    """

    reference: str
    num_samples: int = 500
    reference_count: int | None = None
    ddim_steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0
    batch_size: int = 100
    seed: int = 0
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

    def bind(self, schedule, decode: Callable | None = None) -> Callable[[Any, int], dict]:
        return lambda model, step: self(model, schedule, step, decode=decode)

    def __call__(self, model, schedule, step: int, decode: Callable | None = None) -> dict:
        from ddlib.generate import generate

        ref, ref_feats = self._reference()
        t0 = time.perf_counter()
        guidance = self.guidance if model.config.num_classes is not None else 1.0
        images, _ = generate(model, schedule, self.num_samples, num_steps=self.ddim_steps, eta=self.eta,
                             guidance=guidance, seed=self.seed, batch_size=self.batch_size, decode=decode,
                             progress=False)
        t1 = time.perf_counter()
        dev = self.device or next(model.parameters()).device
        feats = _images.compute_features(images, device=dev, progress=False)
        scores = fid_kid(Source.from_features(feats, "samples"), Source(str(self.reference), ref, ref_feats),
                         kid_subset_size=self.kid_subset_size)
        out = {"fid": scores.pop("fid"), "fid_n": scores.pop("n"), "fid_ref_n": scores.pop("reference_n"), **scores}
        out.update(fid_sample_seconds=round(t1 - t0, 2), fid_feature_seconds=round(time.perf_counter() - t1, 2))
        return out
