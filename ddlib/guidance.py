"""Classifier-free guidance (Ho & Salimans 2022).

Training: with probability ``p_uncond`` a sample's label is replaced by the null class, so one
network learns both ε_θ(x_t, t, y) and ε_θ(x_t, t, ∅) (:func:`drop_labels`).

Sampling: ε̂ = ε_θ(x_t, t, ∅) + s · (ε_θ(x_t, t, y) − ε_θ(x_t, t, ∅)).
The paper writes ε̃ = (1 + w) ε_θ(x_t, y) − w ε_θ(x_t, ∅); the two agree with s = 1 + w, so s = 1
(w = 0) is plain conditional sampling and s = 0 (w = −1) is unconditional sampling.
:class:`GuidedModel` has the model's own call signature, so the samplers use it unchanged; it runs
the conditional and unconditional passes as one batch of 2B.
"""

from __future__ import annotations

import torch
from torch import nn

from ddlib import distributed
from ddlib.errors import DDLibError


def drop_labels(y: torch.Tensor, p_uncond: float, null_class: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_class`` independently with probability ``p_uncond``."""
    if not 0.0 <= p_uncond <= 1.0:
        raise DDLibError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    drop = distributed.rows(lambda n: torch.rand((n, *y.shape[1:]), generator=generator, device=y.device), len(y)) < p_uncond
    return torch.where(drop, torch.full_like(y, null_class), y)


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    """Labels must be integers in 0..num_classes-1 (the null class num_classes is added by guidance).

    The range is checked for CPU tensors (``ddlib.generate`` checks labels there before moving them): reading a
    GPU tensor's values would make the host wait for the GPU at every sampling step.
    """
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise DDLibError(f"class labels must be an integer tensor, got {y.dtype}")
    if y.numel() and y.device.type == "cpu" and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DDLibError(f"class label out of range: got {int(y.min())}..{int(y.max())}, the model has classes 0..{num_classes - 1}")


class GuidedModel(nn.Module):
    """Wrap a class-conditional ε-model as ``model(x, t, y)`` returning the guided ε̂ at scale ``s``."""

    def __init__(self, model: nn.Module, scale: float):
        super().__init__()
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes is None:
            raise DDLibError("classifier-free guidance needs a class-conditional model (train with --class-conditional)")
        if not 0 <= scale < float("inf"):  # NaN fails this too
            raise DDLibError(f"guidance scale must be >= 0 and finite (1 = conditional, 0 = unconditional), got {scale}")
        self.model = model
        self.scale = float(scale)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, device=x.device)
        check_labels(y, self.num_classes)
        y = y.long().expand(x.shape[0]) if y.dim() == 0 else y.long()
        null = torch.full_like(y, self.num_classes)
        if self.scale == 1.0:  # ε_u + 1·(ε_c − ε_u) = ε_c: skip the unconditional pass
            return self.model(x, t, y)
        if self.scale == 0.0:
            return self.model(x, t, null)
        eps = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, C, H, W)
        eps_c, eps_u = eps.chunk(2)
        return eps_u + self.scale * (eps_c - eps_u)
