"""A small CNN classifier, trained in code, that scores class consistency of class-conditional samples.

Class consistency of samples drawn for labels y_1 … y_N is the fraction the classifier assigns to
their requested class, (1/N) Σ 1[argmax_k p(k | x_i) = y_i]; on real images with their true labels
the same number is the classifier's accuracy. It is a proxy for how strongly guidance conditions
the samples (Ho & Salimans 2022 use Inception-based IS for the same purpose), so it is only as good
as the classifier: report its validation accuracy beside it.

Network: three stages of (conv 3×3 → BatchNorm → ReLU) × 2 with max-pooling between them (widths
w, 2w, 4w), global average pooling and a linear layer, so any image size works. Training: AdamW,
cross-entropy, random horizontal flips, the data order of :func:`ddlib.train.batch_indices`, seeded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ddlib.data import ImageSet, random_hflip, to_model_range
from ddlib.device import resolve_device
from ddlib.errors import DDLibError
from ddlib.guidance import check_labels
from ddlib.train import batch_indices, step_seed


class SmallCNN(nn.Module):
    """logits = f(x) for uint8 or [-1, 1] images (B, C, H, W) → (B, num_classes)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_model_range(x) if x.dtype == torch.uint8 else x
        return self.head(self.features(x).mean(dim=(2, 3)))


def train_classifier(
    data: ImageSet,
    steps: int = 1000,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    width: int = 32,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> SmallCNN:
    """Train a :class:`SmallCNN` on ``data`` for ``steps`` batches; returned in eval mode, on ``device``.

    The learning rate decays as a cosine from ``lr`` to 0. The caller's global RNG is left as it was.
    """
    if steps < 1 or batch_size < 1:
        raise DDLibError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    device = resolve_device(device)
    images, labels = data.images.to(device), data.labels.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = SmallCNN(data.num_classes, data.channels, width).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for step in tqdm(range(steps), desc="classifier", disable=not progress):
            torch.manual_seed(step_seed(seed, step))
            idx = batch_indices(len(images), batch_size, step, seed).to(device)
            loss = F.cross_entropy(model(random_hflip(to_model_range(images[idx]))), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: SmallCNN, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """argmax_k p(k | x) for uint8 ``images`` (N, C, H, W) → int64 (N,) on the CPU."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != classifier.in_channels:
        raise DDLibError(f"the classifier expects uint8 images (N, {classifier.in_channels}, H, W), got {images.dtype} "
                         f"of shape {tuple(images.shape)}; convert samples with ddlib.data.to_uint8")
    device = next(classifier.parameters()).device
    classifier.eval()
    return torch.cat([classifier(images[i : i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])


def class_consistency(classifier: SmallCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """The fraction of uint8 ``images`` the classifier assigns to their ``labels`` (accuracy on real data)."""
    labels = torch.as_tensor(labels)
    check_labels(labels, classifier.num_classes)
    if labels.shape != images.shape[:1]:
        raise DDLibError(f"need one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")
    return float((predict(classifier, images, batch_size) == labels.long().cpu()).double().mean())
