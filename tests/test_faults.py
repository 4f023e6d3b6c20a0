"""The fault matrix: bad inputs and faults, each with the exit status, the one-line message, and the files that
must survive it (docs/errors.md summarises it).

Every case runs in a fresh copy of a small workspace (a trained 2-step run, damaged files, odd images,
broken profiles). Before the call every file in the workspace is hashed; afterwards each one must still be
there, unchanged, unless the case lists it under ``changes`` (``survive`` names the files the case is about).

Kinds of call:
- ``cli("…")``: ``python -m ddlib …`` run in this process (``ddlib.cli.main``), ``{ws}`` is the workspace.
  For a non-zero status, stderr must hold exactly one ``error: …`` (or ``interrupted``) line matching
  ``message`` and no traceback; for status 0, ``message`` is searched in stdout + stderr.
- ``api(fn)``: ``fn(ws)`` in Python; ``code="raise"`` expects a one-line :class:`DDLibError` matching
  ``message``; ``code=0`` expects ``fn`` to return a string that matches.
- ``proc(fn)``: ``fn(ws)`` starts real processes (two at once, signals) and returns ``(status, stderr)``;
  these are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from ddlib.errors import DDLibError

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:  # test_wiring's stand-in feature extractor, here and in subprocesses
    sys.path.insert(0, TESTS_DIR)

REPO = Path(__file__).resolve().parents[1]
RUN_ARGS = "--data tiny8 --data-limit 32 --preset test --timesteps 10 --batch-size 8 --class-conditional"
TRAIN = f"train {RUN_ARGS} --steps 2 --checkpoint-every 1 --log-every 1 --warmup 1 --no-progress --device cpu"
SAMPLE = "sample {ws}/run --out {ws}/out/s --num 2 --steps 2 --no-progress --device cpu"
REPORT = "report --reports-dir {ws}/reports --profile"


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    call: tuple
    code: int | str  # exit status, or "raise" (an API call raising DDLibError)
    message: str  # regex
    survive: tuple[str, ...] = ()  # paths (in the workspace; "repo:" for the repository) that must survive unchanged
    changes: tuple[str, ...] = ()  # workspace paths (prefixes) the call may change or remove
    slow: bool = False


def cli(cmd: str) -> tuple:
    return ("cli", cmd)


def api(fn: Callable) -> tuple:
    return ("api", fn)


def proc(fn: Callable) -> tuple:
    return ("proc", fn)


# --------------------------------------------------------------------------------------------------
# helpers the API and process cases use


def _fit_steps(ws: Path, run: str, steps: int = 2, **kw):
    from ddlib.data import load_dataset
    from ddlib.train import TrainConfig, train

    cfg = TrainConfig(dataset="tiny8", data_limit=32, preset="test", num_train_timesteps=10, batch_size=8,
                      class_conditional=True, steps=steps, checkpoint_every=1, log_every=1, warmup_steps=1)
    return train(cfg, ws / run, data=load_dataset("tiny8", limit=32, progress=False), device="cpu",
                 progress=False, **kw)


def _train_while_holding(ws: Path):
    from ddlib.checkpoint import run_lock

    with run_lock(ws / "run"):
        return _fit_steps(ws, "run")


def _loaded_run(ws: Path):
    from ddlib.train import load_trained

    return load_trained(ws / "run")


def _generate(ws: Path, **kw):
    from ddlib.generate import generate

    t = _loaded_run(ws)
    return generate(t.model, t.schedule, 2, num_steps=2, progress=False, **kw)


def _stats(d: int, mu=0.0):
    from ddlib.metrics.stats import FIDStatistics

    return FIDStatistics(np.full(d, mu), np.eye(d), 10, {"preprocessing": "p"})


def _warned(fn) -> str:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return f"{out} | " + " | ".join(str(x.message) for x in w)


def _stand_in_reference(ws: Path) -> str:
    """A cached reference whose stats file is truncated: rebuilt with a stand-in feature extractor."""
    from ddlib.metrics import reference
    from test_wiring import stand_in_features

    with stand_in_features():
        first = reference.reference_statistics("synthetic:test", count=16, cache_dir=ws / "cache", progress=False)
        spath, _ = reference.reference_paths("synthetic:test", 16, ws / "cache")
        spath.write_bytes(spath.read_bytes()[:100])  # killed mid-copy
        again = _warned(lambda: f'{reference.reference_statistics("synthetic:test", count=16, cache_dir=ws / "cache", progress=False).mu.sum():.6f}')
    return f"first {first.mu.sum():.6f} again {again}"


def _report_interrupted(ws: Path) -> str:
    """run_report stopped by a KeyboardInterrupt inside a notebook: STATUS says interrupted."""
    from ddlib.lab import pipeline

    nbs = ws / "nbs"
    (nbs / "profiles").mkdir(parents=True)
    (nbs / "01_x.py").write_text(NB_HEADER + '# %% tags=["parameters"]\nprofile = "p"\nreports_dir = "r"\n')
    (nbs / "profiles" / "p.yaml").write_text("profile: p\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt("SIGTERM")

    real, pipeline.execute_notebook = pipeline.execute_notebook, interrupted
    real_kernel, pipeline.ensure_kernel = pipeline.ensure_kernel, lambda *a: None
    try:
        pipeline.run_report(str(nbs / "profiles" / "p.yaml"), reports_dir=ws / "reports", notebooks_dir=nbs,
                            log=lambda s: None)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.execute_notebook, pipeline.ensure_kernel = real, real_kernel
    return (ws / "reports" / "p" / "STATUS").read_text()


NB_HEADER = "\n".join((REPO / "notebooks" / "01_ddpm_cifar10.py").read_text().splitlines()[:13]) + "\n"


def _py(code: str, ws: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def _ddlib(args: str, ws: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddlib", *shlex.split(args.format(ws=ws))], cwd=ws,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for(path: Path, p: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if p.poll() is not None or time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path} never appeared: {p.communicate()[1][-2000:]}")
        time.sleep(0.05)


def _two_trainings(ws: Path):
    """A long training holds the folder; a second one into it is refused; then SIGTERM ends the first tidily."""
    a = _ddlib(f"{TRAIN.replace('--steps 2', '--steps 100000')} --out {{ws}}/two", ws)
    _wait_for(ws / "two" / "log.jsonl", a)
    b = _ddlib(f"{TRAIN} --out {{ws}}/two", ws)
    b_err = b.communicate()[1]
    a.send_signal(signal.SIGTERM)
    a_err = a.communicate()[1]
    from ddlib.train import read_log

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SIGTERM may have torn the last line
        steps = [r["step"] for r in read_log(ws / "two" / "log.jsonl")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), steps  # one writer: no interleaving
    assert a.returncode == 128 + signal.SIGTERM and a_err.strip().endswith("interrupted"), a_err
    assert not (ws / "two" / ".ddlib.lock").exists()
    return b.returncode, b_err


def _sigterm_then_resume(ws: Path):
    """SIGTERM during training: exit 143, lock released, the checkpoint loads, the run resumes."""
    a = _ddlib(f"{TRAIN.replace('--steps 2', '--steps 100000')} --out {{ws}}/sig", ws)
    _wait_for(ws / "sig" / "checkpoint.pt", a)
    a.send_signal(signal.SIGTERM)
    a_err = a.communicate()[1]
    from ddlib.checkpoint import load_checkpoint

    step = load_checkpoint(ws / "sig" / "checkpoint.pt")["step"]
    b = _ddlib(f"{TRAIN.replace('--steps 2', f'--steps {step + 1}')} --out {{ws}}/sig", ws)
    out, err = b.communicate()
    assert b.returncode == 0 and f"step {step + 1}:" in out, err
    return a.returncode, a_err


_FID_SCRIPT = f"TESTS = {TESTS_DIR!r}\n" + """
import sys
sys.path.insert(0, TESTS)
from test_wiring import stand_in_features
from ddlib.cli import main
with stand_in_features():
    sys.exit(main(["fid", "synthetic:test", "synthetic:train", "--limit", "24", "--no-progress", "--device", "cpu"]))
"""


def _two_fids(ws: Path):
    """Two fid runs on one cold cache at once: both succeed with the same value (no shared temp name)."""
    env = {"DDLIB_CACHE_DIR": str(ws / "cache2")}
    ps = [_py(_FID_SCRIPT, ws, **env) for _ in range(2)]
    outs = [p.communicate() for p in ps]
    values = [o[0].strip().splitlines()[-1] if o[0].strip() else "" for o in outs]
    codes = [p.returncode for p in ps]
    assert codes == [0, 0] and values[0] == values[1], (codes, [o[1][-1500:] for o in outs])
    assert not list((ws / "cache2").rglob("*.tmp*"))
    return 0, f"FID {values[0]} twice"


def _report_sigterm(ws: Path):
    """A real SIGTERM from inside a running notebook: the report's STATUS says interrupted, exit 143."""
    nbs = ws / "nbs"
    (nbs / "profiles").mkdir(parents=True)
    (nbs / "01_x.py").write_text(NB_HEADER + '# %% tags=["parameters"]\nprofile = "p"\nreports_dir = "r"\n\n'
                                 "# %%\nimport os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(30)\n")
    (nbs / "profiles" / "p.yaml").write_text("profile: p\n")
    p = _ddlib(f"report --reports-dir {{ws}}/reports --profile {nbs}/profiles/p.yaml --notebooks-dir {nbs}", ws)
    _, err = p.communicate(timeout=600)
    status = (ws / "reports" / "p" / "STATUS").read_text()
    assert status.startswith("interrupted"), status
    # the kernel, torn down mid-message, may print its own traceback first; ddlib's own output is the last line
    return p.returncode, err.strip().splitlines()[-1]


# --------------------------------------------------------------------------------------------------
# the matrix

CASES: list[Case] = [
    # --- train: numbers refused where they enter -------------------------------------------------------------
    Case("train-lr-nan", "NaN learning rate", cli(f"{TRAIN} --out {{ws}}/o --lr nan"), 2, r"--lr: must be a finite number"),
    Case("train-lr-inf", "infinite learning rate", cli(f"{TRAIN} --out {{ws}}/o --lr inf"), 2, r"--lr: must be a finite"),
    Case("train-lr-neg", "negative learning rate", cli(f"{TRAIN} --out {{ws}}/o --lr -1"), 2, r"--lr: must be > 0"),
    Case("train-lr-text", "learning rate not a number", cli(f"{TRAIN} --out {{ws}}/o --lr fast"), 2, r"--lr: expected a number"),
    Case("train-clip-nan", "NaN gradient clip (silently no clipping before)", cli(f"{TRAIN} --out {{ws}}/o --grad-clip nan"), 2, r"--grad-clip: must be a finite"),
    Case("train-clip-neg", "negative gradient clip", cli(f"{TRAIN} --out {{ws}}/o --grad-clip -1"), 2, r"--grad-clip: must be >= 0"),
    Case("train-ckpt-0", "checkpoint every 0 steps", cli(f"{TRAIN} --out {{ws}}/o --checkpoint-every 0"), 2, r"--checkpoint-every: must be >= 1"),
    Case("train-log-0", "log every 0 steps", cli(f"{TRAIN} --out {{ws}}/o --log-every 0"), 2, r"--log-every: must be >= 1"),
    Case("train-steps-0", "zero steps", cli(f"{TRAIN} --out {{ws}}/o --steps 0"), 2, r"--steps: must be >= 1"),
    Case("train-batch-0", "zero batch size", cli(f"{TRAIN} --out {{ws}}/o --batch-size 0"), 2, r"--batch-size: must be >= 1"),
    Case("train-batch-big", "batch larger than the data", cli(f"{TRAIN} --out {{ws}}/o --batch-size 64"), 2, r"batch_size 64 is larger than the data set \(32 images\)"),
    Case("train-ema-1.5", "EMA decay above 1", cli(f"{TRAIN} --out {{ws}}/o --ema-decay 1.5"), 2, r"--ema-decay: must be <= 1"),
    Case("train-ema-1", "EMA decay of exactly 1 (weights never move)", cli(f"{TRAIN} --out {{ws}}/o --ema-decay 1"), 2, r"ema_decay must lie in \[0, 1\)"),
    Case("train-puncond-2", "label dropout probability 2", cli(f"{TRAIN} --out {{ws}}/o --p-uncond 2"), 2, r"--p-uncond: must be <= 1"),
    Case("train-warmup-neg", "negative warm-up", cli(f"{TRAIN} --out {{ws}}/o --warmup -1"), 2, r"--warmup: must be >= 0"),
    Case("train-T-0", "zero diffusion steps", cli(f"{TRAIN} --out {{ws}}/o --timesteps 0"), 2, r"--timesteps: must be >= 1"),
    Case("train-steps-float", "fractional step count", cli(f"{TRAIN} --out {{ws}}/o --steps 2.5"), 2, r"--steps: expected an integer"),
    Case("train-device-gpu0", "device name torch does not know", cli(f"{TRAIN} --out {{ws}}/o --device gpu0"), 2, r"unknown device 'gpu0'; use auto, cpu, cuda"),
    Case("train-device-cuda7", "a GPU that is not there", cli(f"{TRAIN} --out {{ws}}/o --device cuda:7"), 2, r"(no CUDA GPU is visible|cuda:7 does not exist)"),
    Case("train-preset", "unknown preset (argparse)", cli(f"{TRAIN} --out {{ws}}/o --preset huge"), 2, r"argument --preset: invalid choice: 'huge'"),
    Case("train-no-out", "missing --out (argparse)", cli(TRAIN), 2, r"the following arguments are required: --out"),
    Case("train-unknown-opt", "unknown option (argparse)", cli(f"{TRAIN} --out {{ws}}/o --lr-decay 2"), 2, r"unrecognized arguments: --lr-decay 2"),
    # --- train: data --------------------------------------------------------------------------------------------
    Case("train-no-data", "data set not found names an option train has", cli(f"{TRAIN.replace('tiny8', 'cifar10:train')} --out {{ws}}/o --data-dir {{ws}}/empty"), 2, r"cifar10 not found: .*pass --data-dir"),
    Case("train-nonsquare", "non-square images (not a UNet shape error)", cli(f"{TRAIN.replace('tiny8', 'nonsquare')} --out {{ws}}/o"), 2, r"nonsquare has 12x8 images; ddlib's UNets take square images"),
    Case("train-corrupt-image", "an image file that does not decode", cli(f"{TRAIN.replace('tiny8', 'corrupt')} --out {{ws}}/o"), 2, r"cannot decode the image .*bad\.png.*replace or delete"),
    # --- train: the run folder ----------------------------------------------------------------------------------
    Case("train-foreign", "a folder holding someone's config.json, log.jsonl, eval.jsonl", cli(f"{TRAIN} --out {{ws}}/foreign"), 2, r"holds files ddlib did not write .*--overwrite", survive=("foreign/config.json", "foreign/log.jsonl", "foreign/eval.jsonl", "foreign/notes.txt")),
    Case("train-foreign-overwrite", "--overwrite writes there and keeps other files", cli(f"{TRAIN} --out {{ws}}/foreign --overwrite"), 0, r"step 2: loss", survive=("foreign/notes.txt",), changes=("foreign/config.json", "foreign/log.jsonl", "foreign/eval.jsonl")),
    Case("train-out-is-file", "--out is a file", cli(f"{TRAIN} --out {{ws}}/afile"), 2, r"cannot write to run folder .*afile.*choose a writable --out", survive=("afile",)),
    Case("train-out-under-file", "--out cannot be created (unwritable before training)", cli(f"{TRAIN} --out {{ws}}/afile/run"), 2, r"cannot write to run folder .*afile/run.*choose a writable --out", survive=("afile",)),
    Case("train-ckpt-unwritable", "checkpoint cannot be written during training", cli(f"{TRAIN} --out {{ws}}/ckptdir --no-resume"), 2, r"cannot write checkpoint .*checkpoint\.pt .*previous checkpoint is intact", changes=("ckptdir/",)),
    Case("train-vae-folder", "a VAE checkpoint in the folder (not 'different config')", cli(f"{TRAIN} --out {{ws}}/vae_run"), 2, r"holds a 'vae' checkpoint, not a 'unet' one", survive=("vae_run/checkpoint.pt",)),
    Case("train-garbage-ckpt", "checkpoint.pt that is not a checkpoint; no unsafe-loading hint", cli(f"{TRAIN} --out {{ws}}/garbage_run"), 2, r"^(?!.*(weights_only|trust|allow_pickle)).*corrupt or not a ddlib checkpoint", survive=("garbage_run/checkpoint.pt",)),
    Case("train-pickle-ckpt", "checkpoint holding Python objects; no unsafe-loading hint", cli(f"{TRAIN} --out {{ws}}/pickle_run"), 2, r"^(?!.*(weights_only|trust|allow_pickle)).*holds Python objects", survive=("pickle_run/checkpoint.pt",)),
    Case("train-other-config", "resume under another config", cli(f"{TRAIN} --out {{ws}}/run --lr 0.5"), 2, r"different config \(lr: 0\.0001 -> 0\.5\)", survive=("run/checkpoint.pt", "run/log.jsonl", "run/config.json")),
    Case("train-locked", "a folder another live process trains into", cli(f"{TRAIN} --out {{ws}}/locked"), 2, r"in use by pid 1 on host", survive=("locked/.ddlib.lock", "locked/checkpoint.pt")),
    Case("train-stale-lock", "a lock left by a dead process is taken over", cli(f"{TRAIN} --out {{ws}}/stale"), 0, r"step 2: loss", changes=("stale/",)),
    Case("train-stale-tmp", "temporary files of killed checkpoint writes removed at the next start", cli(f"{TRAIN} --out {{ws}}/tmprun"), 0, r"step 2: loss", survive=("tmprun/checkpoint.pt",), changes=("tmprun/checkpoint.pt.pid999999999.x.tmp", "tmprun/checkpoint.pt.abcd.tmp")),
    Case("train-torn-log", "a torn last line of log.jsonl is dropped with a warning; the run resumes", cli(f"{TRAIN.replace('--steps 2', '--steps 3')} --out {{ws}}/torn"), 0, r"step 3: loss", changes=("torn/",)),
    Case("train-bad-log", "a damaged line inside log.jsonl", cli(f"{TRAIN} --out {{ws}}/badlog"), 2, r"log\.jsonl line 1 is not a JSON record; fix or delete", survive=("badlog/log.jsonl", "badlog/checkpoint.pt")),
    # --- sample ---------------------------------------------------------------------------------------------
    Case("sample-guidance-nan", "NaN guidance (all-black images before)", cli(f"{SAMPLE} --guidance nan"), 2, r"--guidance: must be a finite number"),
    Case("sample-guidance-neg", "negative guidance", cli(f"{SAMPLE} --guidance -2"), 2, r"--guidance: must be >= 0"),
    Case("sample-eta-nan", "NaN eta (all-black images before)", cli(f"{SAMPLE} --eta nan"), 2, r"--eta: must be a finite number"),
    Case("sample-eta-neg", "negative eta", cli(f"{SAMPLE} --eta -1"), 2, r"--eta: must be >= 0"),
    Case("sample-batch-0", "zero batch size", cli(f"{SAMPLE} --batch-size 0"), 2, r"--batch-size: must be >= 1"),
    Case("sample-num-0", "zero images", cli(f"{SAMPLE} --num 0"), 2, r"--num(/--num-images)?: must be >= 1"),
    Case("sample-steps-0", "zero DDIM steps", cli(f"{SAMPLE} --steps 0"), 2, r"--steps: must be >= 1"),
    Case("sample-steps-big", "more DDIM steps than T", cli(f"{SAMPLE} --steps 50"), 2, r"num_steps must be an integer in 1\.\.10"),
    Case("sample-class-99", "a class the model does not have", cli(f"{SAMPLE} --class 99"), 2, r"class label out of range: got 99\.\.99, the model has classes 0\.\.1"),
    Case("sample-no-run", "a run folder with no checkpoint", cli("sample {ws}/empty --out {ws}/out/s --no-progress"), 2, r"no checkpoint at .*empty/checkpoint\.pt; train first"),
    Case("sample-vae", "a VAE run given to sample", cli("sample {ws}/vae_run --out {ws}/out/s --no-progress"), 2, r"holds a 'vae' model, not a diffusion UNet"),
    Case("sample-out-unwritable", "--out cannot be written (checked before sampling)", cli("sample {ws}/run --out {ws}/afile/s --num 2 --no-progress"), 2, r"cannot write to .*afile.*choose a writable --out", survive=("afile",)),
    Case("sample-device", "device name torch does not know", cli(f"{SAMPLE} --device gpu0"), 2, r"unknown device 'gpu0'"),
    Case("sample-sampler", "unknown sampler (argparse)", cli(f"{SAMPLE} --sampler euler"), 2, r"argument --sampler: invalid choice"),
    Case("sample-streams", "many images: written batch by batch, a 64-image grid", cli("sample {ws}/run --out {ws}/out/many --num 70 --batch-size 16 --steps 1 --no-progress --device cpu"), 0, r"wrote .*many\.npz \(70 images, ddim\) and .*many\.png \(the first 64\)", changes=("out/",)),
    # --- fid / stats: files that cannot be used are refused before the network runs ---------------------------
    Case("fid-not-zip", ".npz that is not a zip", cli("fid {ws}/bad/notzip.npz {ws}/bad/stats4.npz"), 2, r"notzip\.npz is damaged or not an \.npz .*write it again", survive=("bad/notzip.npz",)),
    Case("fid-object-array", ".npz holding object arrays; no allow_pickle hint", cli("fid {ws}/bad/objects.npz {ws}/bad/stats4.npz"), 2, r"^(?!.*allow_pickle).*objects\.npz .*holds Python objects", survive=("bad/objects.npz",)),
    Case("fid-truncated", "a truncated .npz", cli("fid {ws}/bad/truncated.npz {ws}/bad/stats4.npz"), 2, r"truncated\.npz is damaged or not an \.npz", survive=("bad/truncated.npz",)),
    Case("fid-nan-stats", "statistics holding NaN (printed nan before)", cli("fid {ws}/bad/nan_stats.npz {ws}/bad/stats4.npz"), 2, r"nan_stats\.npz hold NaN or inf values; recompute"),
    Case("fid-dims", "statistics of different dimensions", cli("fid {ws}/bad/stats4.npz {ws}/bad/stats5.npz"), 2, r"cannot compare statistics of 4- and 5-d features"),
    Case("fid-float-images", "images stored as floats", cli("fid {ws}/bad/float_images.npz {ws}/bad/stats4.npz"), 2, r"must be uint8 in \[0, 255\], got torch\.float32"),
    Case("fid-missing", "a path that does not exist", cli("fid {ws}/nope.npz {ws}/bad/stats4.npz"), 2, r"A '.*nope\.npz' is not a folder, an \.npz file, or a data set spec"),
    Case("fid-empty-folder", "a folder without images", cli("fid {ws}/empty {ws}/bad/stats4.npz"), 2, r"no images in folder .*empty"),
    Case("fid-mixed", "images of two sizes", cli("fid {ws}/mixed {ws}/bad/stats4.npz"), 2, r"images of mixed sizes in .*mixed"),
    Case("fid-limit-1", "--limit below 2", cli("fid {ws}/bad/stats4.npz {ws}/bad/stats4.npz --limit 1"), 2, r"--limit must be at least 2"),
    Case("fid-float-tiff", "floating-point pixels", cli("fid {ws}/ftiff {ws}/bad/stats4.npz"), 2, r"floating-point pixels \(mode F\)"),
    Case("stats-bad-out", "stats --out that is not .npz", cli("stats {ws}/mixed --out {ws}/x.txt"), 2, r"--out must end in \.npz"),
    # --- report pipeline ---------------------------------------------------------------------------------------
    Case("report-profile-dotdot", "--set profile=.. (deleted notebooks/ before)", cli(f"{REPORT} smoke --set profile=.."), 2, r"profile name '\.\.' cannot name a folder", survive=("repo:notebooks/01_ddpm_cifar10.py", "repo:notebooks/profiles/smoke.yaml")),
    Case("report-profile-abs", "--set profile=/tmp (an absolute path)", cli(f"{REPORT} smoke --set profile=/tmp"), 2, r"profile name '/tmp' cannot name a folder"),
    Case("report-profile-slash", "--set profile=a/b", cli(f"{REPORT} smoke --set profile=a/b"), 2, r"profile name 'a/b' cannot name a folder"),
    Case("report-profile-dot", "--set profile=.", cli(f"{REPORT} smoke --set profile=."), 2, r"profile name '\.' cannot name a folder"),
    Case("report-yaml-syntax", "a profile with a YAML syntax error", cli(f"{REPORT} {{ws}}/profiles/broken.yaml"), 2, r"broken\.yaml is not valid YAML at line 3, column 1 \(expected ',' or '\]'"),
    Case("report-yaml-list", "a profile that is a list", cli(f"{REPORT} {{ws}}/profiles/list.yaml"), 2, r"list\.yaml must hold a mapping"),
    Case("report-no-profile", "an unknown profile", cli(f"{REPORT} nosuch"), 2, r"no profile 'nosuch' .*profiles: "),
    Case("report-bad-type", "a text value for a number names the parameter (TypeError before)", cli(f"{REPORT} smoke --set train_steps=abc"), 2, r"profile parameter train_steps must be a number .*got 'abc'"),
    Case("report-nan-value", "a NaN parameter", cli(f"{REPORT} smoke --set lr=.nan"), 2, r"profile parameter lr must be finite"),
    Case("report-unknown-key", "a parameter no notebook declares", cli(f"{REPORT} smoke --set trian_steps=3"), 2, r"trian_steps are not declared"),
    Case("report-set-syntax", "--set without '='", cli(f"{REPORT} smoke --set train_steps"), 2, r"--set takes KEY=VALUE"),
    Case("report-set-yaml", "--set value that is not YAML", cli(f"{REPORT} smoke --set x=[1"), 2, r"the value is not valid YAML"),
    Case("pdf-dotdot", "pdf --profile .. ", cli("pdf --reports-dir {ws}/reports --profile .."), 2, r"profile name '\.\.' cannot name a folder"),
    Case("report-interrupted", "STATUS after an interrupt says interrupted", api(_report_interrupted), 0, r"^interrupted: profile p stopped by SIGTERM"),
    # --- Python API ---------------------------------------------------------------------------------------------
    Case("api-config-lr-nan", "TrainConfig(lr=nan)", api(lambda ws: __import__("ddlib.train").train.TrainConfig(lr=float("nan"))), "raise", r"lr must be a finite number"),
    Case("api-config-clip-nan", "TrainConfig(grad_clip=nan)", api(lambda ws: __import__("ddlib.train").train.TrainConfig(grad_clip=float("nan"))), "raise", r"grad_clip .* must be a finite"),
    Case("api-config-ckpt-0", "TrainConfig(checkpoint_every=0)", api(lambda ws: __import__("ddlib.train").train.TrainConfig(checkpoint_every=0)), "raise", r"checkpoint_every must be >= 1"),
    Case("api-config-steps-float", "TrainConfig(steps=2.5)", api(lambda ws: __import__("ddlib.train").train.TrainConfig(steps=2.5)), "raise", r"steps must be an integer"),
    Case("api-config-puncond", "TrainConfig(p_uncond=nan)", api(lambda ws: __import__("ddlib.train").train.TrainConfig(p_uncond=float("nan"))), "raise", r"p_uncond must be a finite"),
    Case("api-generate-guidance", "generate(guidance=nan)", api(lambda ws: _generate(ws, guidance=float("nan"))), "raise", r"guidance must be a finite"),
    Case("api-generate-batch", "generate(batch_size=0)", api(lambda ws: _generate(ws, batch_size=0)), "raise", r"batch_size must be >= 1"),
    Case("api-generate-eta", "generate(eta=inf)", api(lambda ws: _generate(ws, eta=float("inf"))), "raise", r"eta must be a finite"),
    Case("api-ddim-eta-nan", "ddim_step(eta=nan)", api(lambda ws: __import__("ddlib.samplers").samplers.ddim_step(_loaded_run(ws).schedule, torch.zeros(1, 3, 8, 8), 5, 2, torch.zeros(1, 3, 8, 8), eta=float("nan"))), "raise", r"eta must be >= 0 and finite"),
    Case("api-guided-nan", "GuidedModel(scale=nan)", api(lambda ws: __import__("ddlib.guidance").guidance.GuidedModel(_loaded_run(ws).model, float("nan"))), "raise", r"guidance scale must be >= 0 and finite"),
    Case("api-device", "resolve_device('gpu0')", api(lambda ws: __import__("ddlib.device").device.resolve_device("gpu0")), "raise", r"unknown device 'gpu0'"),
    Case("api-fid-nan", "fid() of statistics holding NaN", api(lambda ws: __import__("ddlib.metrics.stats").metrics.stats.fid(_stats(4, float("nan")), _stats(4))), "raise", r"FID statistics of A hold NaN or inf"),
    Case("api-frechet-inf", "frechet_distance with inf", api(lambda ws: __import__("ddlib.metrics.stats").metrics.stats.frechet_distance(np.zeros(2), np.eye(2) * np.inf, np.zeros(2), np.eye(2))), "raise", r"hold NaN or inf"),
    Case("api-lock-twice", "a second writer in this very process", api(_train_while_holding), "raise", r"in use by pid \d+ on host", survive=("run/checkpoint.pt",)),
    Case("api-foreign", "train() into a foreign folder", api(lambda ws: _fit_steps(ws, "foreign")), "raise", r"holds files ddlib did not write", survive=("foreign/config.json", "foreign/log.jsonl", "foreign/eval.jsonl")),
    Case("api-check-name", "check_name('../x')", api(lambda ws: __import__("ddlib.errors").errors.check_name("profile", "../x")), "raise", r"cannot name a folder"),
    Case("api-read-log-torn", "read_log of a torn last line warns and keeps the rest", api(lambda ws: _warned(lambda: len(__import__("ddlib.train").train.read_log(ws / "torn" / "log.jsonl")))), 0, r"^2 \| .*dropped a torn last line"),
    Case("api-read-log-bad", "read_log of a damaged middle line", api(lambda ws: __import__("ddlib.train").train.read_log(ws / "badlog" / "log.jsonl")), "raise", r"line 1 is not a JSON record"),
    Case("api-png16-folder", "16-bit PNGs decoded to the right grey (not 99.6 % white)", api(lambda ws: f"mean {__import__('ddlib.metrics.images').metrics.images.load_image_folder(ws / 'png16').float().mean():.2f}"), 0, r"^mean 128\.00$"),
    Case("api-png16-dataset", "16-bit PNG class folder through load_dataset", api(lambda ws: "values " + str(sorted(set(__import__("ddlib.data").data.load_dataset(str(ws / "png16"), cache_dir=ws / "cache", progress=False).images.flatten().tolist())))), 0, r"^values \[128\]$", changes=("cache/",)),
    Case("api-stats-load-nan", "FIDStatistics.load of NaN statistics", api(lambda ws: __import__("ddlib.metrics.stats").metrics.stats.FIDStatistics.load(ws / "bad" / "nan_stats.npz", preprocessing=None)), "raise", r"hold NaN or inf"),
    Case("api-truncated-reference", "a truncated cached reference is rebuilt (stand-in extractor)", api(_stand_in_reference), 0, r"first (-?[\d.]+) again \1 \| rebuilding", changes=("cache/",)),
    Case("api-load-vae-as-unet", "load_trained of a VAE run", api(lambda ws: __import__("ddlib.train").train.load_trained(ws / "vae_run")), "raise", r"holds a 'vae' model"),
    # --- concurrency and signals (real processes) ---------------------------------------------------------
    Case("proc-two-trainings", "two trainings into one folder: the second refused; SIGTERM ends the first tidily", proc(_two_trainings), 2, r"in use by pid \d+ on host", changes=("two/",), slow=True),
    Case("proc-sigterm-train", "SIGTERM during training: exit 143, checkpoint intact, resumes", proc(_sigterm_then_resume), 128 + signal.SIGTERM, r"^interrupted$", changes=("sig/",), slow=True),
    Case("proc-two-fids", "two fid runs on one cold cache", proc(_two_fids), 0, r"FID [\d.]+ twice", changes=("cache2/",), slow=True),
    Case("proc-report-sigterm", "SIGTERM while a notebook runs: STATUS interrupted", proc(_report_sigterm), 128 + signal.SIGTERM, r"interrupted", changes=("nbs/", "reports/"), slow=True),
]


# --------------------------------------------------------------------------------------------------
# the workspace every case starts from


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these cases run tiny models, and on shared cores spinning OpenMP threads make them crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    from ddlib.checkpoint import save_checkpoint
    from ddlib.metrics.inception import PREPROCESSING_ID
    from ddlib.metrics.stats import FIDStatistics

    ws = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    for i in range(32):  # the data every training case uses: 32 RGB 8×8 images in two classes
        _png(ws / "tiny8" / f"c{i % 2}" / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    here, cache = os.getcwd(), os.environ.get("DDLIB_CACHE_DIR")
    os.chdir(ws)  # runs name their data "tiny8", relative to the workspace, so that copies resume them
    os.environ["DDLIB_CACHE_DIR"] = str(ws.parent / "cache")
    try:
        _fit_steps(ws, "run")
    finally:
        os.chdir(here)
        if cache is None:
            os.environ.pop("DDLIB_CACHE_DIR")
        else:
            os.environ["DDLIB_CACHE_DIR"] = cache
    (ws / "empty").mkdir()
    (ws / "reports").mkdir()
    (ws / "afile").write_text("not a folder\n")
    (ws / "foreign").mkdir()
    for name, text in (("config.json", '{"mine": 1}\n'), ("log.jsonl", '{"my": "log"}\n'),
                       ("eval.jsonl", '{"my": "eval"}\n'), ("notes.txt", "keep me\n")):
        (ws / "foreign" / name).write_text(text)
    save_checkpoint({"kind": "vae", "config": {"preset": "x"}, "step": 1}, ws / "vae_run" / "checkpoint.pt")
    (ws / "garbage_run").mkdir()
    (ws / "garbage_run" / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    (ws / "pickle_run").mkdir()
    import fractions

    torch.save({"format": "ddlib-checkpoint-v1", "x": fractions.Fraction(1, 2)}, ws / "pickle_run" / "checkpoint.pt")
    # a folder whose checkpoint.pt is a directory: the first checkpoint write fails
    (ws / "ckptdir" / "checkpoint.pt").mkdir(parents=True)
    (ws / "ckptdir" / "checkpoint.pt" / "x").write_text("x")
    # a folder locked by a live process (pid 1) on this host
    shutil.copytree(ws / "run", ws / "locked")
    (ws / "locked" / ".ddlib.lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "since": "then"}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (ws / "stale").mkdir()
    (ws / "stale" / ".ddlib.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    shutil.copytree(ws / "run", ws / "tmprun")
    (ws / "tmprun" / "checkpoint.pt.pid999999999.x.tmp").write_bytes(b"half a checkpoint")
    (ws / "tmprun" / "checkpoint.pt.abcd.tmp").write_bytes(b"half a checkpoint, old name")
    shutil.copytree(ws / "run", ws / "torn")
    with (ws / "torn" / "log.jsonl").open("a") as f:
        f.write('{"step": 3, "lo')
    shutil.copytree(ws / "run", ws / "badlog")
    (ws / "badlog" / "log.jsonl").write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.0}\n')
    # damaged and odd .npz files
    bad = ws / "bad"
    bad.mkdir()
    (bad / "notzip.npz").write_text("this is not a zip archive\n")
    np.save(bad / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(bad / "objects.npz", "w") as z:
        z.write(bad / "objects.npy", "images.npy")
    (bad / "objects.npy").unlink()
    prep = {"preprocessing": PREPROCESSING_ID}
    FIDStatistics(np.zeros(4), np.eye(4), 10, prep).save(bad / "stats4.npz")
    FIDStatistics(np.zeros(5), np.eye(5), 10, prep).save(bad / "stats5.npz")
    np.savez(bad / "nan_stats.npz", mu=np.array([0, np.nan, 0, 0]), sigma=np.eye(4), n=10,
             provenance=np.array(json.dumps(prep)))
    data = (bad / "stats5.npz").read_bytes()
    (bad / "truncated.npz").write_bytes(data[: len(data) // 2])
    np.savez(bad / "float_images.npz", images=np.zeros((4, 8, 8, 3), np.float32))
    # images
    for i in range(4):
        _png(ws / "png16" / f"c{i % 2}" / f"{i}.png", np.full((8, 8), 128 * 257, np.uint16))
        _png(ws / "nonsquare" / f"c{i % 2}" / f"{i}.png", np.zeros((8, 12, 3), np.uint8))
        _png(ws / "corrupt" / f"c{i % 2}" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    (ws / "corrupt" / "c0" / "bad.png").write_bytes(b"\x89PNG not really")
    _png(ws / "mixed" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _png(ws / "mixed" / "b.png", np.zeros((9, 9, 3), np.uint8))
    (ws / "ftiff").mkdir()
    Image.fromarray(np.zeros((8, 8), np.float32), "F").save(ws / "ftiff" / "a.tif")
    Image.fromarray(np.zeros((8, 8), np.float32), "F").save(ws / "ftiff" / "b.tif")
    (ws / "profiles").mkdir()
    (ws / "profiles" / "broken.yaml").write_text("profile: broken\ntrain_steps: [3\n")
    (ws / "profiles" / "list.yaml").write_text("- a\n- b\n")
    return ws


def _digest(path: Path) -> str:
    if path.is_dir():
        return "dir"
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*"))}


def _resolve(ws: Path, name: str) -> Path:
    return REPO / name[5:] if name.startswith("repo:") else ws / name


def _run(case: Case, ws: Path, capsys) -> tuple[int | str, str]:
    kind, what = case.call
    if kind == "cli":
        from ddlib.cli import main

        capsys.readouterr()
        try:
            code = main(shlex.split(what.format(ws=ws)))
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
        out, err = capsys.readouterr()
        return code, out + err if code == 0 else err
    if kind == "proc":
        return what(ws)
    try:
        value = what(ws)
    except DDLibError as err:
        return "raise", str(err)
    return 0, str(value)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_fault(case: Case, template: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    shutil.copytree(template, ws, symlinks=True)
    monkeypatch.chdir(ws)
    before = _snapshot(ws)
    repo_before = {name: _digest(_resolve(ws, name)) for name in case.survive if name.startswith("repo:")}

    code, text = _run(case, ws, capsys)

    assert code == case.code, f"{case.id}: status {code}, expected {case.code}: {text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    if code == 0:
        assert re.search(case.message, text, re.M), f"{case.id}: {case.message!r} not in {text[-3000:]!r}"
    else:
        lines = [ln for ln in text.splitlines() if ln.startswith(("error:", "interrupted"))] if case.call[0] != "api" \
            else [text]
        assert len(lines) == 1 and "\n" not in lines[0], f"{case.id}: not one line: {text[-3000:]!r}"
        line = re.sub(r"^error: ", "", lines[0])
        assert re.search(case.message, line), f"{case.id}: {case.message!r} does not match {line!r}"
    # nothing lost: every file that was there is there, unchanged, unless the case may change it
    after = _snapshot(ws)
    changed = [p for p, h in before.items() if after.get(p) != h and not p.startswith(case.changes or ("\0",))]
    assert not changed, f"{case.id}: changed or lost {changed}"
    for name in case.survive:
        path = _resolve(ws, name)
        assert path.exists(), f"{case.id}: {name} was lost"
        if name in repo_before:
            assert _digest(path) == repo_before[name]
        elif not name.startswith("repo:"):
            assert _digest(path) == before[name], f"{case.id}: {name} changed"


def test_matrix_is_a_table_of_at_least_60_cases():
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    assert all(c.code in (0, 2, "raise", 128 + signal.SIGTERM) for c in CASES)


def test_stale_tmp_removed_and_lock_released(template: Path, tmp_path: Path, capsys, monkeypatch):
    """After a finished run no lock and no temporary file is left, and the marker says the folder is ddlib's."""
    from ddlib.cli import main

    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    monkeypatch.chdir(ws)
    assert main(shlex.split(f"{TRAIN} --out {ws}/tmprun")) == 0
    names = sorted(p.name for p in (ws / "tmprun").iterdir())
    assert names == [".ddlib-run", "checkpoint.pt", "config.json", "log.jsonl"], names


def test_torn_log_resume_keeps_whole_records(template: Path, tmp_path: Path, capsys, monkeypatch):
    from ddlib.cli import main
    from ddlib.train import read_log

    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    monkeypatch.chdir(ws)
    with pytest.warns(UserWarning, match="torn last line"):
        assert main(shlex.split(f"{TRAIN.replace('--steps 2', '--steps 3')} --out {ws}/torn")) == 0
    assert [r["step"] for r in read_log(ws / "torn" / "log.jsonl")] == [1, 2, 3]
