"""Data parallelism (ddlib.distributed): N ranks on CPU with gloo give what one process gives.

The multi-process checks spawn real gloo process groups (torch.multiprocessing) and compare with single-process
runs made in this process, with no process group: 2 ranks × 16 images against 1 process × 32, a 2-rank run
resumed by 1 process (and the other way round), and sampling with 2 ranks.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from ddlib import distributed
from ddlib.checkpoint import load_checkpoint
from ddlib.data import synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.generate import generate
from ddlib.train import TrainConfig, load_trained, read_log, rank_rows, train
from ddlib.train_vae import VAETrainConfig, train_vae

REPO = Path(__file__).resolve().parents[1]
# the `test` preset (dropout 0), class-conditional with label drops; batch 32 is the global batch; 64 images of
# 16 × 16 pixels (2 batches an epoch, so the 20 steps cross epochs) keep it affordable on 2 shared cores
RUN = dict(dataset="synthetic:train", preset="test", batch_size=32, lr=1e-3, warmup_steps=5, num_train_timesteps=100,
           log_every=5, checkpoint_every=10, class_conditional=True, p_uncond=0.2)
SAMPLE = dict(sampler="ddpm", seed=3, batch_size=2, progress=False)  # DDPM: per-step noise from per-batch generators


# the VAE path through fit: its reparameterisation noise is a global draw too (w_KL large enough to matter)
VAE_RUN = dict(dataset="synthetic:train", preset="test", batch_size=8, steps=6, lr=1e-3, warmup_steps=2, kl_weight=1e-2,
               checkpoint_every=100, log_every=3)


def _data():
    return synthetic_dataset(64, image_size=16, num_classes=4)


def _train(steps: int, out: Path):
    return train(TrainConfig(**RUN, steps=steps), out, data=_data(), device="cpu", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, root: str) -> None:
    """One rank of the 2-process job (run by torch.multiprocessing.spawn)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), DDLIB_DIST_TIMEOUT="300")
    torch.set_num_threads(1)
    root = Path(root)
    with distributed.session("cpu"):
        assert distributed.world() == world and distributed.rank() == rank
        _train(20, root / "ddp")
        _train(10, root / "two_then_one")
        _train(20, root / "one_then_two")  # resumes at step 10
        train_vae(VAETrainConfig(**VAE_RUN), root / "vae_ddp", data=_data(), device="cpu", progress=False)
        trained = load_trained(root / "single")
        images, labels = generate(trained.model, trained.schedule, 5, **SAMPLE)
        if distributed.is_main():
            torch.save({"images": images, "labels": labels}, root / "generate2.pt")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread here, as in each rank: on 2 cores shared with other jobs, 2 threads ran 20× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """Single-process runs here, one 2-rank gloo job, then a 1-process resumption of a 2-rank run."""
    root = tmp_path_factory.mktemp("ddp")
    _train(20, root / "single")
    _train(10, root / "one_then_two")
    mp.spawn(_rank_main, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    _train(20, root / "two_then_one")  # resumes at step 10
    train_vae(VAETrainConfig(**VAE_RUN), root / "vae_single", data=_data(), device="cpu", progress=False)
    return root


def assert_close_states(a: dict, b: dict, atol: float = 1e-5, key_bias_atol: float = 1e-4) -> None:
    """Every weight within ``atol``, but the key third of each attention's qkv bias, within ``key_bias_atol``.

    Softmax ignores a shift shared by all logits of a query, so ∂L/∂b_k = 0 exactly
    (test_key_bias_gradient_is_zero): its float gradient is rounding noise, which differs with the order of
    the sums, and Adam divides it by its own size, so b_k takes steps of up to lr either way. Measured after 20
    steps (lr 1e-3): b_k 1.3e-5 apart, every other weight at most 1.8e-7.
    """
    assert a.keys() == b.keys()
    worst, worst_key_bias = 0.0, 0.0
    for k in a:
        d = (a[k].double() - b[k].double()).abs()
        if k.endswith("qkv.bias"):
            q, key, v = d.view(3, -1)  # the conv's outputs are (3, heads, C/heads): q, k, v
            worst_key_bias, d = max(worst_key_bias, float(key.max())), torch.cat([q, v])
        worst = max(worst, float(d.max())) if d.numel() else worst
    assert worst <= atol, f"largest difference {worst:.3g}"
    assert worst_key_bias <= key_bias_atol, f"largest key-bias difference {worst_key_bias:.3g}"


@pytest.mark.slow
def test_two_ranks_of_16_train_what_one_process_of_32_trains(runs):
    a, b = load_checkpoint(runs / "single/checkpoint.pt"), load_checkpoint(runs / "ddp/checkpoint.pt")
    assert a["step"] == b["step"] == 20 and b["world_size"] == 2
    assert_close_states(a["model"], b["model"])
    assert_close_states(a["ema"], b["ema"])
    # the logged loss is the global batch's mean (all-reduced), within float rounding of the single run's
    single, ddp = read_log(runs / "single/log.jsonl"), read_log(runs / "ddp/log.jsonl")
    assert [r["step"] for r in ddp] == [5, 10, 15, 20] and {r["world_size"] for r in ddp} == {2}
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-5)
    assert json.loads((runs / "ddp/config.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_resume_across_world_sizes_ends_where_the_straight_run_ends(runs):
    single = load_checkpoint(runs / "single/checkpoint.pt")
    for name in ("two_then_one", "one_then_two"):
        other = load_checkpoint(runs / name / "checkpoint.pt")
        assert other["step"] == 20
        assert_close_states(single["model"], other["model"])
        assert_close_states(single["ema"], other["ema"])
        assert [r["step"] for r in read_log(runs / name / "log.jsonl")] == [5, 10, 15, 20]


@pytest.mark.slow
def test_two_ranks_train_the_vae_one_process_trains(runs):
    a, b = load_checkpoint(runs / "vae_single/checkpoint.pt"), load_checkpoint(runs / "vae_ddp/checkpoint.pt")
    assert a["step"] == b["step"] == 6
    assert_close_states(a["model"], b["model"])
    assert_close_states(a["ema"], b["ema"])
    assert b["scale_factor"] == pytest.approx(a["scale_factor"], rel=1e-5)


@pytest.mark.slow
def test_generate_with_two_ranks_gives_the_single_process_images(runs):
    trained = load_trained(runs / "single")
    images, labels = generate(trained.model, trained.schedule, 5, **SAMPLE)
    two = torch.load(runs / "generate2.pt")
    assert images.dtype == two["images"].dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    assert torch.equal(images, two["images"]) and torch.equal(labels, two["labels"])


# --------------------------------------------------------------------------------------------------
# single-process pieces


def test_without_a_launcher_there_is_no_process_group(monkeypatch):
    for k in distributed.ENV:
        monkeypatch.delenv(k, raising=False)
    assert distributed.init("cpu") == torch.device("cpu")
    assert not distributed.is_initialized()
    assert (distributed.world(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    x = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_rows(x) is x and distributed.all_reduce_mean(x) is x
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()
    distributed.shutdown()


def test_key_bias_gradient_is_zero():
    """Why assert_close_states treats b_k apart: softmax(q·(k + b)) = softmax(q·k + q·b) is shift-invariant per query."""
    from ddlib.unet import AttnBlock

    torch.manual_seed(0)
    block = AttnBlock(8, 2, 4).double()
    block(torch.randn(3, 8, 4, 4, dtype=torch.double)).square().sum().backward()
    q, key, v = block.qkv.bias.grad.view(3, -1)
    assert float(key.abs().max()) < 1e-12 * float(v.abs().max()) and float(q.abs().max()) > 1e-3


def test_shard_range_splits_in_rank_order():
    assert [distributed.shard_range(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [distributed.shard_range(2, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    for n, w in [(32, 2), (7, 7), (128, 8)]:
        assert sum((list(range(*distributed.shard_range(n, r, w))) for r in range(w)), []) == list(range(n))


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    with pytest.raises(DDLibError, match="batch_size 32 does not split over 3 processes"):
        rank_rows(32)
    assert rank_rows(33) == distributed.BatchShard(11, 22, 33)


def test_draws_inside_a_shard_are_rows_of_the_global_draw():
    """Rank r's ε, t and uniforms equal rows [start, stop) of what one process draws for the whole batch."""
    x = torch.zeros(8, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(5)
    full_eps, full_t = torch.randn_like(x), torch.randint(0, 10, (8,))
    for start, stop in [(0, 4), (4, 8), (2, 5)]:
        torch.manual_seed(5)
        with distributed.batch_shard(start, stop, 8):
            eps = distributed.randn_like(x[start:stop])
            t = distributed.rows(lambda n: torch.randint(0, 10, (n,)), stop - start)
        assert torch.equal(eps, full_eps[start:stop]) and torch.equal(t, full_t[start:stop])
    assert distributed.current_shard() is None
    with distributed.batch_shard(0, 4, 8), pytest.raises(DDLibError, match="draw per local batch row"):
        distributed.rows(torch.rand, 3)


def test_shard_dropout_is_dropout_outside_a_shard_and_a_row_slice_inside():
    drop = distributed.ShardDropout(0.3).train()
    x = torch.randn(6, 4, 5, 5)
    torch.manual_seed(1)
    expected = F.dropout(x, 0.3, True)
    torch.manual_seed(1)
    assert torch.equal(drop(x), expected)  # single process: nn.Dropout's own numbers
    torch.manual_seed(2)
    keep = torch.empty_like(x).bernoulli_(0.7).div_(0.7)  # the global batch's mask
    torch.manual_seed(2)
    with distributed.batch_shard(2, 5, 6):
        assert torch.equal(drop(x[2:5]), x[2:5] * keep[2:5])
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.slow
def test_torchrun_cli_trains_and_an_indivisible_batch_is_one_error(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), "-m", "ddlib", "train", "--data", "synthetic:train", "--data-limit", "32",
                "--preset", "test", "--steps", "4", "--log-every", "2", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DDLIB_DIST_TIMEOUT": "120"}
    ok = subprocess.run(torchrun + ["--batch-size", "8", "--out", str(tmp_path / "run")], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.count("step 4: loss") == 1  # rank 0 prints, rank 1 does not
    assert [r["world_size"] for r in read_log(tmp_path / "run/log.jsonl")] == [2, 2]
    bad = subprocess.run(torchrun + ["--batch-size", "7", "--out", str(tmp_path / "bad")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "error: the global batch_size 7 does not split over 2 processes" in bad.stderr


@pytest.mark.slow
def test_a_failing_rank_stops_the_job_instead_of_hanging(tmp_path):
    """Rank 1 raises while rank 0 waits for it in a collective: torchrun ends the job with rank 1's error."""
    script = tmp_path / "fail.py"
    script.write_text("from ddlib import distributed\n"
                      "with distributed.session('cpu'):\n"
                      "    if distributed.rank() == 1:\n"
                      "        raise RuntimeError('rank 1 fails on purpose')\n"
                      "    distributed.barrier()\n"
                      "    print('rank 0 passed the barrier')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DDLIB_DIST_TIMEOUT": "120"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr and "passed the barrier" not in done.stdout
