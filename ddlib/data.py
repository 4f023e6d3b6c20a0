"""Image data sets as uint8 tensors: CIFAR-10, class-folder sets (Tiny-ImageNet-100, ImageNet-100), a toy set.

Every data set is loaded whole into an :class:`ImageSet`: one contiguous ``uint8`` tensor of shape
``(N, C, H, W)``, ``int64`` labels and the class names. Models see pixels through
:func:`to_model_range` (``x / 127.5 - 1``, so x₀ ∈ [-1, 1] as in DDPM, Ho et al. 2020, §3.3), and
samples come back through :func:`to_uint8`; :func:`random_hflip` is the only augmentation the
diffusion papers use on these sets.

Specs
    ``load_dataset(spec)`` takes ``"name:split"`` (the split defaults to ``train``):

    - ``cifar10:train|test`` — 50,000 / 10,000 images, 32×32, 10 classes;
    - ``tiny-imagenet-100:train|val`` — 500 / 50 images per class, 64×64, 100 classes;
    - ``synthetic:train|test`` — :func:`synthetic_dataset` with seed 0 / 1, made in code;
    - a path: a class-folder directory ``<dir>/<class>/<image>`` (``<dir>:split`` reads
      ``<dir>/<split>/<class>/<image>``), or an archive ``<file>.tar.gz:split`` holding
      ``<top>/<split>/<class>/<image>``. All images of a set must share one size.

Layout and order
    Labels follow the sorted class-folder names (for CIFAR-10 this is the standard order
    airplane … truck; for Tiny-ImageNet the wnids, with human names from ``classes.tsv`` in
    :attr:`ImageSet.class_names`). Images are ordered by class folder, then by file name (plain
    string order: ``n01443537_10.JPEG`` comes before ``n01443537_2.JPEG``); ``limit=n`` keeps the
    first ``n`` of that order. Greyscale, palette and CMYK images are converted to RGB.

Where the data comes from
    The machines this course runs on reach no web site, only package registries. The real data sets
    therefore travel as archives, ``cifar10.tar.gz`` and ``tiny-imagenet-100.tar.gz``, looked for in
    the ``data_dir`` argument (the command line's ``--data-dir``), then ``$DDLIB_DATA_DIR``, then
    ``<repo>/../shared/data``, then ``<repo>/data``; an extracted ``<data dir>/<name>/<split>/``
    folder is accepted too. Their provenance is in ``shared/data/README.md``. With internet,
    ``download=True`` fetches the original CIFAR-10 through torchvision (same label order) when no
    local copy exists.

    The offline CIFAR-10 copy is JPEG-re-encoded (quality about 75) and therefore lossy: its pixels
    differ from the original by about 6 levels on average, and an FID computed against it is not
    comparable with published CIFAR-10 FIDs, which use the original pixels (FID between the original
    and the JPEG version of the same images is about 26). Train and evaluate against one copy
    consistently and name the reference next to every number; :attr:`ImageSet.source` records it.

Caches
    Decoding 50,000 JPEGs takes seconds, loading their pixels a fraction of that, so each split is
    decoded once and stored as an uncompressed ``.npz`` under ``cache_dir`` (default
    ``$DDLIB_CACHE_DIR``, else ``<repo>/.cache/ddlib``). The file records its provenance — source
    path, split, ``limit``, and the archive's size and modification time (for a folder, a digest of
    its file list with sizes and times) — and is rebuilt when that no longer matches. A load with
    ``limit`` slices the full cache when one exists and otherwise decodes and caches only its first
    ``limit`` images, in a file of its own. Caches are written atomically (:func:`ddlib.files.atomic_open`), so an interrupted run never leaves a half-written cache behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ddlib import distributed
from ddlib.errors import DDLibError
from ddlib.pixels import rgb_array
from ddlib.files import atomic_open

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSet",
    "KNOWN_SPLITS",
    "default_cache_dir",
    "default_data_dir",
    "is_image_file",
    "load_dataset",
    "load_image_folder",
    "parse_dataset_spec",
    "random_hflip",
    "synthetic_dataset",
    "to_model_range",
    "to_uint8",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The directory holding the ``ddlib`` package; data and cache locations are found relative to it."""

KNOWN_SPLITS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test"),
    "tiny-imagenet-100": ("train", "val"),
    "synthetic": ("train", "test"),
}
"""The data sets known by name, with their splits (the first is the default)."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
"""File name endings read as images (compared in lower case); other files in class folders are ignored."""

_CACHE_VERSION = 1  # bump when the cache's content or layout changes, to invalidate old caches


class TensorSet:
    """What a training loop reads from a data set held as one tensor ``images`` (N, C, H, W) with ``labels``
    and ``classes``: its length, class count, spatial size and channel count."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def labels_present(self) -> list[int]:
        """The labels that occur, ascending: all of 0 … K−1, unless the set was cut (``limit``) to its first classes."""
        return torch.unique(self.labels).tolist()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """The height H (all sets here are square)."""
        return self.images.shape[2]

    @property
    def channels(self) -> int:
        return self.images.shape[1]


@dataclass(frozen=True, eq=False)
class ImageSet(TensorSet):
    """A whole image data set in memory.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``, contiguous.
        labels: ``int64`` tensor of shape ``(N,)`` with values in ``0 … num_classes - 1``.
        classes: class identifiers in label order (the sorted class-folder names, e.g. wnids).
        name: what was loaded, e.g. ``"cifar10:train"``.
        class_names: human-readable names in label order (``classes.tsv`` when the set has one);
            defaults to ``classes``.
        source: where the pixels came from (archive or folder path, ``torchvision …`` or
            ``synthetic``), for provenance in reports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    class_names: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DDLibError(f"ImageSet images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                             f"of shape {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise DDLibError(f"ImageSet labels must be an int64 tensor of shape ({len(self.images)},), got "
                             f"{self.labels.dtype} of shape {tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DDLibError(f"ImageSet labels must lie in 0..{len(self.classes) - 1} for {len(self.classes)} classes")
        if self.class_names and len(self.class_names) != len(self.classes):
            raise DDLibError(f"ImageSet has {len(self.classes)} classes but {len(self.class_names)} class names")
        object.__setattr__(self, "images", self.images.contiguous())
        object.__setattr__(self, "class_names", self.class_names or self.classes)

    def subset(self, n: int) -> ImageSet:
        """The first ``n`` images (all of them when ``n >= len(self)``), in the set's order.

        The result owns copies, so the full set's memory can be freed.
        """
        return dataclasses.replace(self, images=self.images[:n].clone(), labels=self.labels[:n].clone())


# --------------------------------------------------------------------------------------------------
# Pixel ranges and augmentation


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels {0, …, 255} to float32 in [-1, 1]: ``x / 127.5 - 1`` (Ho et al. 2020, §3.3)."""
    if x.dtype != torch.uint8:
        raise DDLibError(f"to_model_range expects uint8 pixels, got {x.dtype}: the images are already scaled")
    return x.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map model-range values to uint8 pixels: clamp to [-1, 1], then ``round((x + 1) · 127.5)``.

    The exact inverse of :func:`to_model_range` on its 256 values.
    """
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def images_sha1(images: torch.Tensor) -> str:
    """The sha1 of an image tensor's bytes: names an image set in caches and provenance."""
    return hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Flip each image of a batch ``x`` of shape (B, …, W) left-right with probability ``p``, independently.

    One uniform number per image is drawn from ``generator`` (on the generator's device, or on
    ``x``'s device without one); the result lives on ``x``'s device.
    """
    device = generator.device if generator is not None else x.device
    u = distributed.rows(lambda n: torch.rand(n, generator=generator, device=device), x.shape[0])  # (B,)
    flip = (u < p).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


# --------------------------------------------------------------------------------------------------
# The synthetic set


def synthetic_dataset(
    n: int = 256, image_size: int = 32, num_classes: int = 4, channels: int = 3, seed: int = 0
) -> ImageSet:
    """A toy set made in code that a tiny classifier or diffusion model learns in seconds.

    Class ``k`` is a shape — a filled square, a disc or diagonal stripes, cycling with ``k`` — in a
    colour of its own (hue ``k / num_classes``; with ``channels != 3``, brightness rising with
    ``k``), at a random position and size on a dark noisy background. Labels cycle ``0, 1, …``, so
    every prefix is class-balanced. The same arguments give the same images.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes  # (N,)
    if channels == 3:  # fully saturated hues: r, g, b are piecewise-linear in the hue
        hue = torch.arange(num_classes) / num_classes  # (K,)
        colours = (torch.stack([(6 * hue - 3).abs() - 1, 2 - (6 * hue - 2).abs(), 2 - (6 * hue - 4).abs()], 1)
                   .clamp(0, 1))  # (K, 3)
    else:
        colours = torch.linspace(0.4, 1.0, num_classes)[:, None].expand(num_classes, channels)  # (K, C)

    s = image_size
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * 0.5 + 0.25) * s  # centres in the middle half
    r = (torch.rand(n, 1, 1, generator=g) * 0.17 + 0.17) * s  # half-sizes: 1/6 to 1/3 of the image
    yy, xx = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")  # (H, W)
    square = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)  # (N, H, W)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    stripes = square & (torch.div(yy + xx, (r / 2).clamp(min=2), rounding_mode="floor") % 2 == 0)
    shape = (labels % 3).view(n, 1, 1)
    mask = torch.where(shape == 0, square, torch.where(shape == 1, disc, stripes))  # (N, H, W)

    background = (0.1 + 0.05 * torch.randn(n, channels, s, s, generator=g)).clamp(0, 1)  # (N, C, H, W)
    x = torch.where(mask[:, None], colours[labels][:, :, None, None], background)
    shapes = ("square", "disc", "stripes")
    return ImageSet(
        images=(x * 255).round().to(torch.uint8),
        labels=labels,
        classes=tuple(f"{k:02d}-{shapes[k % 3]}" for k in range(num_classes)),
        name=f"synthetic:seed{seed}",
        source="synthetic",
    )


# --------------------------------------------------------------------------------------------------
# Specs and locations


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """Split ``"name:split"`` or ``"path:split"`` into its two parts; the split defaults to ``"train"``.

    Only the last colon separates, and only when no path separator follows it, so Windows drive
    letters and colons inside folder names stay part of the path.
    """
    name, split = _split_spec(spec)
    return name, split or "train"


def _split_spec(spec: str) -> tuple[str, str | None]:
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return head, tail
    return spec, None


def _search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where named data sets are looked for, in order. An explicit ``data_dir`` is the only place searched."""
    if data_dir:
        return [Path(data_dir).expanduser()]
    given = [Path(d).expanduser() for d in (os.environ.get("DDLIB_DATA_DIR"),) if d]
    return given + [REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "data"]


def default_data_dir() -> Path:
    """The first existing folder of ``$DDLIB_DATA_DIR``, ``<repo>/../shared/data`` and ``<repo>/data``.

    When none exists, the first of them (the one a user would be asked to create).
    """
    dirs = _search_dirs()
    return next((d for d in dirs if d.is_dir()), dirs[0])


def default_cache_dir() -> Path:
    """``$DDLIB_CACHE_DIR`` when set, else ``<repo>/.cache/ddlib``."""
    env = os.environ.get("DDLIB_CACHE_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / ".cache" / "ddlib"


@dataclass(frozen=True)
class _Source:
    """Image files on disk: the ``<top>/<split>/<class>/<image>`` members of the archive ``path``,
    or, when ``split`` is None, the ``<class>/<image>`` files of the folder ``path``."""

    path: Path
    split: str | None = None

    def __str__(self) -> str:
        return str(self.path.resolve()) + (f":{self.split}" if self.split else "")

    @property
    def layout(self) -> str:
        if self.split:
            return f"members <top>/{self.split}/<class>/<image> in {self.path}"
        return f"files {self.path}/<class>/<image>"

    def stamp(self) -> dict[str, int | str]:
        """What identifies the content: an archive's size and time, a digest of a folder's file list."""
        if self.split:
            st = self.path.stat()
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        digest = hashlib.sha256()
        for cls, name, path in sorted(_read_folder(self.path)[0], key=lambda f: f[:2]):
            st = path.stat()
            digest.update(f"{cls}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"files_sha256": digest.hexdigest()}

    def cache_file(self, cache_dir: Path, limit: int | None) -> Path:
        stem = (re.sub(r"\.(tar(\.\w+)?|tgz)$", "", self.path.name) + f"-{self.split}" if self.split
                else f"{self.path.parent.name}-{self.path.name}")
        first = "" if limit is None else f"-first{limit}"
        key = hashlib.sha256(str(self).encode()).hexdigest()[:12]
        return cache_dir / f"{stem}{first}-{key}.npz"


def _find_named(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> _Source | None:
    for folder in _search_dirs(data_dir):
        if (folder / f"{name}.tar.gz").is_file():
            return _Source(folder / f"{name}.tar.gz", split)
        if (folder / name / split).is_dir():
            return _Source(folder / name / split)
    return None


def _missing_message(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> str:
    looked = ", ".join(str(d) for d in _search_dirs(data_dir))
    hint = "pass --data-dir (data_dir= in Python) or set DDLIB_DATA_DIR to the folder that holds it"
    if name == "cifar10":
        hint += "; from Python, load_dataset(..., download=True) fetches the original CIFAR-10 from the internet"
    return f"{name} not found: looked for {name}.tar.gz and {name}/{split}/ in {looked}; {hint}"


# --------------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    spec: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ImageSet:
    """Load a whole data set split as an :class:`ImageSet`, decoding it once and caching the pixels.

    Args:
        spec: ``"cifar10:train"``, ``"cifar10:test"``, ``"tiny-imagenet-100:train"``,
            ``"tiny-imagenet-100:val"``, ``"synthetic:train"``, ``"synthetic:test"``; or a
            class-folder directory (``"<dir>"``, or ``"<dir>:<split>"`` for ``<dir>/<split>/``); or
            ``"<archive>.tar.gz:<split>"``. The split defaults to ``train``.
        data_dir: where the named archives are looked for first (see the module docstring).
        cache_dir: where decoded pixels are cached; default :func:`default_cache_dir`.
        download: for ``cifar10`` with no local copy, fetch the original through torchvision into
            ``cache_dir`` (needs internet).
        limit: keep only the first ``limit`` images of the canonical order (class folder, then
            file name); the classes stay those of the whole split.
        progress: show tqdm progress bars while reading and decoding.

    Raises:
        DDLibError: unknown name or split, missing or corrupt archive, empty folder, images of
            mixed sizes, an undecodable image, an unwritable cache; the message says what to do.
    """
    if limit is not None and limit < 1:
        raise DDLibError(f"limit must be a positive number of images, got {limit}")
    name, split = _split_spec(spec)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if name in KNOWN_SPLITS:
        split = split or "train"
        if split not in KNOWN_SPLITS[name]:
            raise DDLibError(f"unknown split {split!r} of {name}: use one of {', '.join(KNOWN_SPLITS[name])}, "
                             f"e.g. {name}:{KNOWN_SPLITS[name][0]}")
        label = f"{name}:{split}"
        if name == "synthetic":  # train and test differ by seed only
            dataset = dataclasses.replace(synthetic_dataset(seed=KNOWN_SPLITS[name].index(split)), name=label)
            return dataset if limit is None else dataset.subset(limit)
        source = _find_named(name, split, data_dir)
        if source is None:
            if name == "cifar10" and (download or (cache / "cifar-10-batches-py").is_dir()):
                dataset = _torchvision_cifar10(split, cache, download)
                return dataset if limit is None else dataset.subset(limit)
            raise DDLibError(_missing_message(name, split, data_dir))
    else:
        path = Path(name).expanduser()
        if path.is_file():
            split = split or "train"
            source, label = _Source(path, split), f"{name}:{split}"
        elif path.is_dir():
            source, label = _Source(path / split if split else path), spec
            if not source.path.is_dir():
                found = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "no folders"
                raise DDLibError(f"no split folder {split!r} in {path} (it holds {found}): use {path}:<split> "
                                 f"with one of those, or {path} itself if it holds the class folders")
        else:
            raise DDLibError(f"unknown data set {name!r}: use one of {', '.join(KNOWN_SPLITS)}, or the path of an "
                             f"existing class-folder directory or .tar.gz archive")
    arrays = _load_cached(source, limit, cache, progress)
    return ImageSet(
        images=torch.from_numpy(arrays["images"]),
        labels=torch.from_numpy(arrays["labels"]),
        classes=tuple(str(c) for c in arrays["classes"]),
        name=label,
        class_names=tuple(str(c) for c in arrays["class_names"]),
        source=str(source),
    )


def _torchvision_cifar10(split: str, root: Path, download: bool) -> ImageSet:
    """The original, lossless CIFAR-10 through torchvision, downloaded into ``root`` when asked."""
    from torchvision.datasets import CIFAR10  # only this rarely used path needs torchvision

    try:
        data = CIFAR10(root=str(root), train=split == "train", download=download)
    except (RuntimeError, OSError) as err:
        raise DDLibError(f"cannot get CIFAR-10 through torchvision into {root} ({err}): check the internet "
                         f"connection, or use a local cifar10.tar.gz (--data-dir)") from err
    return ImageSet(
        images=torch.from_numpy(data.data).permute(0, 3, 1, 2),  # (N, H, W, C) -> (N, C, H, W)
        labels=torch.tensor(data.targets, dtype=torch.int64),
        classes=tuple(data.classes),
        name=f"cifar10:{split}",
        source=f"torchvision CIFAR10, original pixels, in {root.resolve()}",
    )


def _load_cached(source: _Source, limit: int | None, cache_dir: Path, progress: bool) -> dict[str, np.ndarray]:
    """The decoded arrays of ``source``: from the full cache (sliced), the ``limit`` cache, or decoded anew."""
    provenance = {"version": _CACHE_VERSION, "source": str(source), **source.stamp()}
    full = _read_cache(source.cache_file(cache_dir, None), {**provenance, "limit": None})
    if full is not None:
        if limit is None:
            return full
        return {**full, "images": full["images"][:limit].copy(), "labels": full["labels"][:limit].copy()}
    path, provenance = source.cache_file(cache_dir, limit), {**provenance, "limit": limit}
    if limit is not None and (cached := _read_cache(path, provenance)) is not None:
        return cached
    arrays = _decode(source, limit, progress)
    _write_cache(path, provenance, arrays)
    return arrays


_CACHED_ARRAYS = ("images", "labels", "classes", "class_names")


def _read_cache(path: Path, provenance: dict[str, object]) -> dict[str, np.ndarray] | None:
    """The arrays cached in ``path`` if it exists and records exactly ``provenance``, else None."""
    try:
        with np.load(path) as npz:
            if json.loads(str(npz["provenance"])) != provenance:
                return None
            return {key: npz[key] for key in _CACHED_ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or unreadable: rebuild
        return None


def _write_cache(path: Path, provenance: dict[str, object], arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` atomically: a temporary file in the same folder, then a rename."""
    try:
        with atomic_open(path) as f:
            np.savez(f, provenance=np.array(json.dumps(provenance)), **arrays)
    except OSError as err:
        raise DDLibError(f"cannot write the data cache {path} ({err}): pass cache_dir= or set DDLIB_CACHE_DIR "
                         f"to a writable folder") from err


# --------------------------------------------------------------------------------------------------
# Reading and decoding image files

_Files = list[tuple[str, str, bytes | Path]]  # (class folder, file name, the file's bytes or its path)


def _decode(source: _Source, limit: int | None, progress: bool) -> dict[str, np.ndarray]:
    """Read the files of ``source``, order them canonically, decode the first ``limit`` of them."""
    if source.split:
        files, class_dirs, names = _read_archive(source.path, source.split, progress)
    else:
        files, class_dirs, names = _read_folder(source.path)
    if not files:
        raise DDLibError(f"no images found: expected {source.layout} ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    classes = sorted(class_dirs)
    if empty := sorted(set(classes) - {cls for cls, _, _ in files}):
        raise DDLibError(f"class folder {empty[0]!r} holds no images ({source.layout}): add images or remove it")
    files = sorted(files, key=lambda f: f[:2])[:limit]
    label_of = {cls: i for i, cls in enumerate(classes)}
    return {
        "images": _decode_images(files, str(source), progress),
        "labels": np.array([label_of[cls] for cls, _, _ in files], dtype=np.int64),
        "classes": np.array(classes),
        "class_names": np.array([names.get(cls, cls) for cls in classes]),
    }


def is_image_file(file_name: str) -> bool:
    """An image file name; hidden files (macOS ``._x.jpg`` companions, ``.DS_Store``) are not."""
    return not file_name.startswith(".") and Path(file_name).suffix.lower() in IMAGE_EXTENSIONS


def _parse_class_names(text: str) -> dict[str, str]:
    """``classes.tsv`` lines ``wnid<TAB>name, synonym, …`` → ``{wnid: name}`` (the first synonym)."""
    rows = (line.split("\t", 1) for line in text.splitlines())
    return {row[0]: row[1].split(",")[0].strip() for row in rows if len(row) == 2}


def _read_archive(path: Path, split: str, progress: bool) -> tuple[_Files, set[str], dict[str, str]]:
    """One streaming pass over a tar archive: the split's image members (bytes), class folders, names."""
    files: _Files = []
    class_dirs: set[str] = set()
    splits: set[str] = set()
    names: dict[str, str] = {}
    try:
        with (
            open(path, "rb") as raw,
            tqdm.wrapattr(raw, "read", total=path.stat().st_size, desc=f"reading {path.name}",
                          disable=not progress) as stream,
            tarfile.open(fileobj=stream, mode="r|*") as tar,
        ):
            for member in tar:
                parts = PurePosixPath(member.name).parts  # <top>/<split>/<class>/<image>
                if member.isdir():
                    parts += ("",)  # a folder counts as if it held an unnamed entry
                if len(parts) == 2 and parts[1] == "classes.tsv":
                    names = _parse_class_names(tar.extractfile(member).read().decode())
                if len(parts) >= 3:
                    splits.add(parts[1])
                if len(parts) == 4 and parts[1] == split:
                    class_dirs.add(parts[2])
                    if member.isfile() and is_image_file(parts[3]):
                        files.append((parts[2], parts[3], tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DDLibError(f"cannot read the archive {path} ({err}): it is corrupt or truncated: copy it again "
                         f"(shared/data/README.md lists the course archives' sha256)") from err
    if split not in splits:
        found = ", ".join(sorted(splits)) or "no <top>/<split>/ folders"
        raise DDLibError(f"no split {split!r} in the archive {path} (it holds {found}): use {path}:<split>")
    return files, class_dirs, names


def _read_folder(root: Path) -> tuple[_Files, set[str], dict[str, str]]:
    """The image files (paths) of a class-folder directory, its class folders, and the names of
    ``classes.tsv`` in the folder or beside it."""
    class_dirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    files: _Files = [(cls, f.name, f) for cls in class_dirs for f in (root / cls).iterdir()
                     if f.is_file() and is_image_file(f.name)]
    tsv = next((p for p in (root / "classes.tsv", root.parent / "classes.tsv") if p.is_file()), None)
    return files, class_dirs, _parse_class_names(tsv.read_text()) if tsv else {}


def load_image_folder(path: str | os.PathLike) -> torch.Tensor:
    """All images anywhere under ``path`` (sorted paths, labels ignored) as uint8 (N, 3, H, W); one size required.

    The reader for a folder of samples (FID inputs); class-folder data sets go through :func:`load_dataset`.
    Image files are those :func:`is_image_file` accepts, decoded like a data set's.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if is_image_file(p.name) and p.is_file())
    if not files:
        raise DDLibError(f"no images in folder {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                         "point at a folder of images")
    entries: _Files = [(p.parent.relative_to(root).as_posix(), p.name, p) for p in files]
    return torch.from_numpy(_decode_images(entries, str(root), progress=len(files) >= 1000))


def _decode_image(payload: bytes | Path, name: str) -> np.ndarray:
    """Decode one image file into an (H, W, 3) uint8 array; greyscale, palette, CMYK become RGB."""
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as img:
            return rgb_array(img, name)  # 16-bit greyscale scaled, not clipped to white
    except DDLibError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DDLibError(f"cannot decode the image {name} ({type(err).__name__}): replace or delete the file") from err


def _decode_images(files: _Files, where: str, progress: bool) -> np.ndarray:
    """Decode ``files`` into one (N, 3, H, W) uint8 array; every image must have the first one's size."""
    (cls0, name0, payload0), n = files[0], len(files)
    first = _decode_image(payload0, f"{cls0}/{name0} in {where}")  # (H, W, 3)
    out = np.empty((n, 3, *first.shape[:2]), dtype=np.uint8)  # (N, 3, H, W)
    for i, (cls, name, payload) in enumerate(tqdm(files, desc=f"decoding {n} images", unit="img",
                                                    disable=not progress)):
        pixels = first if i == 0 else _decode_image(payload, f"{cls}/{name} in {where}")
        if pixels.shape != first.shape:
            raise DDLibError(f"images of mixed sizes in {where}: {cls0}/{name0} is {first.shape[1]}x{first.shape[0]} "
                             f"but {cls}/{name} is {pixels.shape[1]}x{pixels.shape[0]}; resize them to one size first")
        out[i] = pixels.transpose(2, 0, 1)
    return out
