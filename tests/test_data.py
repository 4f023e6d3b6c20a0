"""Data sets: hand-made archives and folders (PNG, so pixels round-trip exactly), caches, errors,
pixel ranges, flips, the synthetic set; one slow test decodes the real CIFAR-10 test split."""

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ddlib.data as data
from ddlib.data import (
    ImageSet,
    default_cache_dir,
    default_data_dir,
    load_dataset,
    parse_dataset_spec,
    random_hflip,
    synthetic_dataset,
    to_model_range,
    to_uint8,
)
from ddlib.errors import DDLibError


def pixels(seed: int, size: int = 8, grey: bool = False) -> np.ndarray:
    """Random (H, W, 3) uint8 pixels; with ``grey`` all three channels are equal."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (size, size, 1 if grey else 3), dtype=np.uint8)
    return np.repeat(x, 3, axis=2) if grey else x


def png(x: np.ndarray, grey: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x[:, :, 0] if grey else x, "L" if grey else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes | None]) -> Path:
    """A .tar.gz with the members in the given order; ``None`` makes a folder entry."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


# Members deliberately out of canonical order; "zebra" sorts after "ant" but comes first.
TOY = {
    "toy/train/zebra/b.png": png(pixels(3)),
    "toy/train/zebra/a.png": png(pixels(2, grey=True), grey=True),
    "toy/classes.tsv": b"ant\tant, emmet\nzebra\tzebra\n",
    "toy/train/ant/1.png": png(pixels(0)),
    "toy/train/ant/2.png": png(pixels(1)),
    "toy/train/ant/notes.txt": b"not an image",
    "toy/train/ant/._1.png": b"macOS metadata",
    "toy/test/ant/9.png": png(pixels(9)),
}
TOY_ORDER = [0, 1, 2, 3]  # seeds of ant/1, ant/2, zebra/a (grey), zebra/b
TOY_LABELS = [0, 0, 1, 1]


def toy_expected() -> torch.Tensor:
    return torch.from_numpy(np.stack([pixels(s, grey=s == 2) for s in TOY_ORDER])).permute(0, 3, 1, 2)


@pytest.fixture
def toy_archive(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "toy.tar.gz", TOY)


@pytest.fixture
def no_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the repository's data folders and $DDLIB_DATA_DIR, as on a fresh machine."""
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo" / "main")
    monkeypatch.delenv("DDLIB_DATA_DIR", raising=False)


def fail_decode(*args: object) -> None:
    raise AssertionError("decoded although a valid cache exists")


def error_of(spec: str, **kwargs: object) -> str:
    with pytest.raises(DDLibError) as info:
        load_dataset(spec, progress=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------
# Specs, locations


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("cifar10", ("cifar10", "train")),
        ("cifar10:test", ("cifar10", "test")),
        ("tiny-imagenet-100:val", ("tiny-imagenet-100", "val")),
        ("/data/in100.tar.gz:val", ("/data/in100.tar.gz", "val")),
        ("/data/a:b/imagenet100", ("/data/a:b/imagenet100", "train")),
        ("C:\\data\\imagenet100", ("C:\\data\\imagenet100", "train")),
    ],
)
def test_parse_dataset_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_dataset_spec(spec) == expected


def test_default_dirs_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_shared_data) -> None:
    monkeypatch.setenv("DDLIB_DATA_DIR", str(tmp_path / "absent"))
    assert default_data_dir() == tmp_path / "absent"  # nothing exists: the first candidate
    (tmp_path / "repo" / "main" / "data").mkdir(parents=True)
    assert default_data_dir() == tmp_path / "repo" / "main" / "data"  # the first existing one
    (tmp_path / "repo" / "shared" / "data").mkdir(parents=True)
    assert default_data_dir() == tmp_path / "repo" / "shared" / "data"
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DDLIB_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "repo" / "main" / ".cache" / "ddlib"


# ------------------------------------------------------------------------------------------------
# Archives and folders


def test_archive_round_trip(toy_archive: Path, tmp_path: Path) -> None:
    ds = load_dataset(f"{toy_archive}:train", cache_dir=tmp_path / "cache", progress=True)
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert torch.equal(ds.images, toy_expected())  # canonical order; greyscale became RGB
    assert ds.labels.tolist() == TOY_LABELS and ds.labels.dtype == torch.int64
    assert ds.classes == ("ant", "zebra") and ds.class_names == ("ant", "zebra")
    assert (len(ds), ds.num_classes, ds.image_size, ds.channels) == (4, 2, 8, 3)
    assert ds.name == f"{toy_archive}:train" and ds.source == f"{toy_archive.resolve()}:train"
    test = load_dataset(f"{toy_archive}:test", cache_dir=tmp_path / "cache", progress=False)
    assert test.classes == ("ant",) and torch.equal(test.images[0], torch.from_numpy(pixels(9)).permute(2, 0, 1))


def test_named_set_found_in_data_dir_as_archive_or_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_shared_data
) -> None:
    (tmp_path / "archives").mkdir()
    archive = {name.replace("toy/", "tiny-imagenet-100/"): content for name, content in TOY.items()}
    write_tar(tmp_path / "archives" / "tiny-imagenet-100.tar.gz", archive)
    ds = load_dataset("tiny-imagenet-100", data_dir=tmp_path / "archives", cache_dir=tmp_path / "cache", progress=False)
    assert ds.name == "tiny-imagenet-100:train" and torch.equal(ds.images, toy_expected())

    folder = write_tree(tmp_path / "extracted", {name.replace("toy/", "cifar10/"): content for name, content in TOY.items()})
    monkeypatch.setenv("DDLIB_DATA_DIR", str(folder))
    ds = load_dataset("cifar10:train", cache_dir=tmp_path / "cache", progress=False)
    assert ds.source == str((folder / "cifar10" / "train").resolve())
    assert torch.equal(ds.images, toy_expected()) and ds.labels.tolist() == TOY_LABELS


def test_class_folder_directory(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "in100", {name.removeprefix("toy/"): content for name, content in TOY.items()})
    bare = load_dataset(str(root / "train"), cache_dir=tmp_path / "cache", progress=False)
    split = load_dataset(f"{root}:train", cache_dir=tmp_path / "cache", progress=False)
    for ds in (bare, split):
        assert torch.equal(ds.images, toy_expected()) and ds.labels.tolist() == TOY_LABELS
        assert ds.class_names == ("ant", "zebra")  # classes.tsv beside the split folder
    assert bare.name == str(root / "train") and split.name == f"{root}:train"


def test_limit_takes_the_canonical_prefix_and_keeps_the_full_cache_intact(
    toy_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, cache = f"{toy_archive}:train", tmp_path / "cache"
    first = load_dataset(spec, cache_dir=cache, limit=3, progress=False)
    assert torch.equal(first.images, toy_expected()[:3]) and first.labels.tolist() == TOY_LABELS[:3]
    assert first.classes == ("ant", "zebra")  # the classes of the whole split
    full = load_dataset(spec, cache_dir=cache, progress=False)
    assert len(full) == 4
    monkeypatch.setattr(data, "_decode_image", fail_decode)
    again = load_dataset(spec, cache_dir=cache, limit=2, progress=False)  # sliced from the full cache
    assert torch.equal(again.images, toy_expected()[:2])


def test_cache_is_reused(toy_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, cache = f"{toy_archive}:train", tmp_path / "cache"
    load_dataset(spec, cache_dir=cache, progress=False)
    monkeypatch.setattr(data, "_decode_image", fail_decode)
    ds = load_dataset(spec, cache_dir=cache, progress=False)
    assert torch.equal(ds.images, toy_expected()) and ds.class_names == ("ant", "zebra")
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temporary files left behind


def test_stale_cache_is_rebuilt(toy_archive: Path, tmp_path: Path) -> None:
    spec, cache = f"{toy_archive}:train", tmp_path / "cache"
    load_dataset(spec, cache_dir=cache, progress=False)
    write_tar(toy_archive, {**TOY, "toy/train/ant/1.png": png(pixels(7))})
    os.utime(toy_archive, ns=(1, 1))  # a different time, whatever the file system's resolution
    ds = load_dataset(spec, cache_dir=cache, progress=False)
    assert torch.equal(ds.images[0], torch.from_numpy(pixels(7)).permute(2, 0, 1))
    assert len(list(cache.iterdir())) == 1  # rebuilt in place


def test_stale_folder_cache_is_rebuilt(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "set", {"a/1.png": png(pixels(0)), "b/1.png": png(pixels(1))})
    assert len(load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)) == 2
    write_tree(root, {"b/2.png": png(pixels(2))})
    assert len(load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)) == 3


# ------------------------------------------------------------------------------------------------
# Errors: one line, naming the problem and the remedy


def test_unknown_name_lists_the_known_ones() -> None:
    message = error_of("cifar100")
    assert "'cifar100'" in message and all(name in message for name in ("cifar10,", "tiny-imagenet-100", "synthetic"))


def test_unknown_split() -> None:
    message = error_of("cifar10:val")
    assert "'val'" in message and "train, test" in message


def test_missing_archive_says_where_it_looked(tmp_path: Path, no_shared_data) -> None:
    message = error_of("cifar10:test", data_dir=tmp_path / "mine", cache_dir=tmp_path / "cache")
    assert "cifar10.tar.gz" in message and str(tmp_path / "mine") in message
    assert str(tmp_path / "repo" / "shared" / "data") not in message  # an explicit data_dir is the only place
    assert str(tmp_path / "repo" / "shared" / "data") in error_of("cifar10:test", cache_dir=tmp_path / "cache")
    assert all(hint in message for hint in ("--data-dir", "DDLIB_DATA_DIR", "download=True"))
    assert "download=True" not in error_of("tiny-imagenet-100", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_archive(toy_archive: Path, tmp_path: Path, cut: float) -> None:
    content = toy_archive.read_bytes()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(content[: int(len(content) * cut)])
    assert "corrupt or truncated" in error_of(str(broken), cache_dir=tmp_path / "cache")


def test_not_an_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "corrupt or truncated" in error_of(str(garbage), cache_dir=tmp_path / "cache")


def test_missing_split_in_archive(toy_archive: Path, tmp_path: Path) -> None:
    message = error_of(f"{toy_archive}:val", cache_dir=tmp_path / "cache")
    assert "'val'" in message and "test, train" in message


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "no images found" in error_of(str(tmp_path / "empty"), cache_dir=tmp_path / "cache")
    root = write_tree(tmp_path / "set", {"a/1.png": png(pixels(0))})
    (root / "b").mkdir()
    message = error_of(str(root), cache_dir=tmp_path / "cache")
    assert "'b'" in message and "no images" in message
    archive = write_tar(tmp_path / "x.tar.gz", {"x/train/a/1.png": png(pixels(0)), "x/train/b/": None})
    assert "'b'" in error_of(str(archive), cache_dir=tmp_path / "cache")


def test_mixed_sizes_are_named(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "set", {"a/1.png": png(pixels(0, size=8)), "b/1.png": png(pixels(1, size=4))})
    message = error_of(str(root), cache_dir=tmp_path / "cache")
    assert "mixed sizes" in message and "8x8" in message and "4x4" in message and "b/1.png" in message


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "set", {"a/1.png": png(pixels(0)), "a/bad.png": b"\x89PNG not really"})
    assert "a/bad.png" in error_of(str(root), cache_dir=tmp_path / "cache")
    truncated = png(pixels(1, size=64))[:200]
    archive = write_tar(tmp_path / "t.tar.gz", {"t/train/a/1.png": png(pixels(0, size=64)), "t/train/a/2.png": truncated})
    assert "a/2.png" in error_of(str(archive), cache_dir=tmp_path / "cache")


def test_bad_limit_and_unwritable_cache(toy_archive: Path, tmp_path: Path) -> None:
    assert "limit" in error_of("synthetic", limit=0)
    (tmp_path / "file").write_text("a file where the cache folder should be")
    assert "DDLIB_CACHE_DIR" in error_of(str(toy_archive), cache_dir=tmp_path / "file")


# ------------------------------------------------------------------------------------------------
# ImageSet, pixel ranges, flips


def test_imageset_validates_and_subsets() -> None:
    ds = ImageSet(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0, 1, 0]), ("a", "b"), "t")
    assert ds.class_names == ("a", "b") and len(ds.subset(3)) == 3 and ds.subset(3).classes == ("a", "b")
    with pytest.raises(DDLibError, match="labels must lie"):
        ImageSet(ds.images, torch.tensor([0, 1, 2, 0, 0]), ("a", "b"), "t")
    with pytest.raises(DDLibError, match="uint8"):
        ImageSet(ds.images.float(), ds.labels, ("a", "b"), "t")


def test_model_range_round_trip_is_exact() -> None:
    x = torch.arange(256, dtype=torch.uint8)
    y = to_model_range(x)
    assert y.dtype == torch.float32 and y[0] == -1 and y[-1] == 1
    assert torch.equal(to_uint8(y), x)
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]  # clamped
    with pytest.raises(DDLibError, match="uint8"):
        to_model_range(y)


def test_random_hflip_flips_exactly_the_selected_images() -> None:
    x = torch.rand(64, 3, 5, 7)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, torch.flip(i, dims=[-1])) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert torch.all(flipped ^ kept)  # each image is either flipped or untouched
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(out, random_hflip(x, torch.Generator().manual_seed(0)))  # reproducible
    assert not torch.equal(out, random_hflip(x, torch.Generator().manual_seed(1)))
    assert torch.equal(random_hflip(x, p=0.0), x) and torch.equal(random_hflip(x, p=1.0), torch.flip(x, dims=[-1]))


# ------------------------------------------------------------------------------------------------
# The synthetic set


def test_synthetic_is_deterministic_and_balanced() -> None:
    a, b = synthetic_dataset(seed=3), synthetic_dataset(seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (256, 3, 32, 32) and torch.bincount(a.labels).tolist() == [64] * 4
    train, test = load_dataset("synthetic:train"), load_dataset("synthetic:test", limit=10)
    assert train.name == "synthetic:train" and torch.equal(train.images, synthetic_dataset(seed=0).images)
    assert len(test) == 10 and not torch.equal(test.images, train.images[:10])
    grey = synthetic_dataset(n=8, image_size=16, num_classes=3, channels=1)
    assert grey.images.shape == (8, 1, 16, 16)


def test_synthetic_classes_are_distinct() -> None:
    """A nearest-centroid classifier on the foreground colour separates the classes perfectly."""

    def foreground_colour(ds: ImageSet) -> torch.Tensor:
        x = ds.images.float()
        mask = (x.amax(dim=1, keepdim=True) > 128).float()  # the shape; the background stays dark
        return (x * mask).sum((2, 3)) / mask.sum((2, 3))  # (N, C)

    train, test = synthetic_dataset(seed=0, num_classes=6), synthetic_dataset(n=120, seed=1, num_classes=6)
    f_train, f_test = foreground_colour(train), foreground_colour(test)
    centroids = torch.stack([f_train[train.labels == k].mean(0) for k in range(6)])
    predicted = torch.cdist(f_test, centroids).argmin(1)
    assert torch.equal(predicted, test.labels)
    areas = (train.images.float().amax(1) > 128).float().mean((1, 2))  # every image shows its shape
    assert areas.min() > 0.02


# ------------------------------------------------------------------------------------------------
# The real data


@pytest.mark.slow
def test_real_cifar10_test_split(tmp_path: Path) -> None:
    if data._find_named("cifar10", "test", None) is None:
        pytest.skip("no local copy of cifar10")
    ds = load_dataset("cifar10:test", cache_dir=tmp_path, progress=False)
    assert ds.images.shape == (10000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


def test_one_folder_reader_for_data_sets_and_fid_inputs(tmp_path: Path) -> None:
    """A folder of samples (FID input) and a class-folder data set read the same files the same way: one list
    of image endings, hidden files (macOS ``._x.png``) and other files skipped, the same decoder (grey → RGB)."""
    root = write_tree(tmp_path, TOY) / "toy"
    flat = data.load_image_folder(root / "train")  # recursive; sorted paths: ant/1, ant/2, zebra/a, zebra/b
    assert flat.dtype == torch.uint8 and torch.equal(flat, toy_expected())
    assert torch.equal(flat, load_dataset(str(root / "train"), cache_dir=tmp_path / "cache", progress=False).images)
    from ddlib import metrics

    assert metrics.load_image_folder is data.load_image_folder and metrics.IMAGE_EXTENSIONS is data.IMAGE_EXTENSIONS
    assert data.is_image_file("x.JPEG") and not data.is_image_file("._x.png") and not data.is_image_file("notes.txt")
