"""Published numbers the report quotes beside its own measurements (the seed report's Table I).

Each row is quoted from the paper named in ``source`` (table given), with the evaluation protocol
as the paper states it. These are *not* comparable with this package's measurements: the papers
score 50,000 samples of models trained for days on GPUs against the original (lossless) training
sets, while the report's numbers come from small models, few samples and the offline JPEG copies
of the data (see ``shared/data/README.md``). The report prints both side by side with that caveat.
"""

from __future__ import annotations

DDPM = "Ho et al. 2020, Tab. 1"
DDIM = "Song et al. 2021, Tab. 1"
ADM = "Dhariwal & Nichol 2021, abstract"
CFG = "Ho & Salimans 2022, ImageNet 128×128"
LDM = "Rombach et al. 2022, Tab. 3"

REFERENCES: dict[str, str] = {
    "Ho et al. 2020": "J. Ho, A. Jain, P. Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.",
    "Song et al. 2021": "J. Song, C. Meng, S. Ermon. Denoising Diffusion Implicit Models. ICLR 2021.",
    "Nichol & Dhariwal 2021": "A. Nichol, P. Dhariwal. Improved Denoising Diffusion Probabilistic Models. ICML 2021.",
    "Dhariwal & Nichol 2021": "P. Dhariwal, A. Nichol. Diffusion Models Beat GANs on Image Synthesis. NeurIPS 2021.",
    "Ho & Salimans 2022": "J. Ho, T. Salimans. Classifier-Free Diffusion Guidance. arXiv:2207.12598, 2022.",
    "Rombach et al. 2022": "R. Rombach, A. Blattmann, D. Lorenz, P. Esser, B. Ommer. High-Resolution Image Synthesis "
                           "with Latent Diffusion Models. CVPR 2022.",
}
"""Full citations of the short sources above (the report prints them under Table I)."""

_CIFAR_REF = "CIFAR-10 train (original)"


def _ddim_rows() -> list[dict]:
    # DDIM paper, Table 1 (CIFAR-10, 50k samples; T = 1000; S = dim(τ) sampling steps)
    fids = {0.0: (13.36, 6.84, 4.67, 4.16, 4.04), 0.5: (16.66, 8.35, 5.25, 4.46, 4.29), 1.0: (41.07, 18.36, 8.01, 5.78, 4.73)}
    rows = []
    for eta, values in fids.items():
        for steps, value in zip((10, 20, 50, 100, 1000), values):
            rows.append({"method": "DDIM" if eta == 0 else f"DDIM η={eta:g}", "dataset": "CIFAR-10 32×32", "steps": steps,
                         "eta": eta, "fid": value, "is": None, "n_samples": 50_000, "reference": _CIFAR_REF, "source": DDIM})
    return rows


LITERATURE: list[dict] = [
    {"method": "DDPM (L_simple)", "dataset": "CIFAR-10 32×32", "steps": 1000, "eta": None, "fid": 3.17, "is": 9.46,
     "n_samples": 50_000, "reference": _CIFAR_REF, "source": DDPM},
    *_ddim_rows(),
    {"method": "ADM-G (classifier guidance)", "dataset": "ImageNet 128×128", "steps": None, "eta": None, "fid": 2.97,
     "is": None, "n_samples": 50_000, "reference": "ImageNet train", "source": ADM},
    {"method": "ADM-G (classifier guidance)", "dataset": "ImageNet 256×256", "steps": None, "eta": None, "fid": 4.59,
     "is": None, "n_samples": 50_000, "reference": "ImageNet train", "source": ADM},
    {"method": "CFG (best FID setting)", "dataset": "ImageNet 128×128", "steps": None, "eta": None, "fid": 2.43,
     "is": None, "n_samples": 50_000, "reference": "ImageNet train", "source": CFG},
    {"method": "LDM-4-G (CFG scale 1.5)", "dataset": "ImageNet 256×256", "steps": None, "eta": None, "fid": 3.60,
     "is": 247.67, "n_samples": 50_000, "reference": "ImageNet train", "source": LDM},
]
"""Quoted rows: method, dataset, sampling steps, η (DDIM), FID, IS (None: not quoted), samples, reference, source."""


SEED_TABLE_I: list[dict] = [
    {"method": "DDPM", "dataset": "CIFAR-10", "is": 9.46, "fid": 3.17, "steps": 1000, "eta": None,
     "seed_source": "Ho et al. (2020)", "checked": "agrees: Ho et al. 2020, Tab. 1"},
    {"method": "DDIM (S=10)", "dataset": "CIFAR-10", "is": None, "fid": 13.36, "steps": 10, "eta": 0.0,
     "seed_source": "Song et al. (2021)", "checked": "agrees: Song et al. 2021, Tab. 1"},
    {"method": "DDIM (S=50)", "dataset": "CIFAR-10", "is": None, "fid": 4.67, "steps": 50, "eta": 0.0,
     "seed_source": "Song et al. (2021)", "checked": "agrees: Song et al. 2021, Tab. 1"},
    {"method": "DDIM (S=1000)", "dataset": "CIFAR-10", "is": None, "fid": 4.04, "steps": 1000, "eta": 0.0,
     "seed_source": "Song et al. (2021)", "checked": "agrees: Song et al. 2021, Tab. 1"},
    {"method": "LDM", "dataset": "ImageNet", "is": None, "fid": 27.0, "steps": None, "eta": None,
     "seed_source": "Rombach et al. (2022)",
     "checked": "NOT TRACED (see note)"},
]
"""The seed report's Table I, row for row as it printed it, with where each number was checked."""

LDM_NOT_TRACED = ("The seed's LDM row (ImageNet, FID 27.0) could not be traced: Rombach et al. 2022 report no ImageNet "
                  "FID of 27.0; their class-conditional ImageNet 256×256 rows (Tab. 3) are LDM-4 at 10.56 without "
                  "guidance and LDM-4-G at 3.60 with classifier-free guidance s = 1.5.")

SEED_TABLE_VI: list[dict] = [
    {"dataset": "CIFAR-10", "model": "DDIM (baseline, linear schedule)", "fid": 47.92, "is": 6.03,
     "train_steps": 187_000, "batch_size": 128, "sampling_steps": 250},
    {"dataset": "ImageNet-100", "model": "DDIM + CFG + VAE", "fid": 323.51, "is": 2.51, "train_steps": 52_000,
     "batch_size": 128, "sampling_steps": 250},
]
"""The seed report's Table VI (its own measurements). It states neither its sample count nor its FID reference;
its DDIM section samples with S = 250 steps."""


def literature_rows(methods: tuple[str, ...] | None = None) -> list[dict]:
    """The quoted rows, optionally only those whose method starts with one of ``methods``; provenance added."""
    rows = [r for r in LITERATURE if methods is None or r["method"].startswith(methods)]
    return [{**r, "profile": "literature", "hardware": "as published", "wall_s": None} for r in rows]
