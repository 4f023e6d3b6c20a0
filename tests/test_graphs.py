"""CUDA-graph plumbing on CPU: everything but the recording itself (.ci/gpu-check checks that on a GPU)."""

import pytest
import torch

import ddlib.accel.graphs as graphs
from ddlib.errors import DDLibError
from ddlib.accel.graphs import GraphedDenoiser, StepGraph, graphed, graphs_enabled
from ddlib.train import load_optimizer_state, optimizer_state, scheduler_state, warmup_factor
from ddlib.unet import unet_from_preset


def test_graphs_enabled_only_on_cuda_and_by_the_environment(monkeypatch):
    monkeypatch.delenv("DDLIB_CUDA_GRAPHS", raising=False)
    assert not graphs_enabled(torch.device("cuda"))  # off until a GPU run has measured them
    monkeypatch.setenv("DDLIB_CUDA_GRAPHS", "1")
    assert graphs_enabled(torch.device("cuda")) and not graphs_enabled(torch.device("cpu"))
    monkeypatch.setenv("DDLIB_CUDA_GRAPHS", "0")
    assert not graphs_enabled(torch.device("cuda"))
    monkeypatch.setenv("DDLIB_CUDA_GRAPHS", "yes")
    with pytest.raises(DDLibError, match="DDLIB_CUDA_GRAPHS"):
        graphs_enabled(torch.device("cuda"))


def test_step_graph_without_capture_runs_the_function_every_call():
    calls = []
    step = StepGraph(lambda: calls.append(1) or len(calls), capture=False)
    assert [step() for _ in range(5)] == [1, 2, 3, 4, 5]
    assert not step.captured


def test_graphed_is_the_model_itself_on_cpu(monkeypatch):
    monkeypatch.setenv("DDLIB_CUDA_GRAPHS", "1")
    net = unet_from_preset("test")
    assert graphed(net) is net


def test_graphed_denoiser_static_copies_per_shape(monkeypatch):
    """With recording replaced by a plain call of the recorded function, the wrapper's own work (one set of
    static inputs per shape and keyword set, refilled each call, output copied out) must give the model's output."""
    monkeypatch.setattr(graphs, "StepGraph", lambda fn, capture: fn)
    torch.manual_seed(0)
    net = unet_from_preset("test", num_classes=3, image_size=16).eval()
    wrapped = GraphedDenoiser(net, capture=True)
    x1, x2 = torch.randn(2, 3, 16, 16), torch.randn(4, 3, 16, 16)
    t1, t2 = torch.tensor([5, 900]), torch.tensor([1, 2, 3, 4])
    y1, y2 = torch.tensor([0, 2]), torch.tensor([1, 1, 0, 3])
    with torch.no_grad():
        out1 = wrapped(x1, t1, y=y1)
        out2 = wrapped(x2, t2, y=y2)
        out1_again = wrapped(x1 * 2, t1, y=y1)
        assert torch.equal(out1, net(x1, t1, y=y1))  # not overwritten by later calls
        assert torch.equal(out2, net(x2, t2, y=y2))
        assert torch.equal(out1_again, net(x1 * 2, t1, y=y1))
    assert len(wrapped.graphs) == 2  # one per shape
    out_grad = wrapped(x1, t1, y=y1)  # gradients on: the model itself, no graph
    assert out_grad.requires_grad


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.0])
def test_guidance_through_the_graphed_denoiser(monkeypatch, scale):
    """GuidedModel passes labels by position and doubles the batch for s ∉ {0, 1}: same ε̂ as the bare model."""
    from ddlib.guidance import GuidedModel

    monkeypatch.setattr(graphs, "StepGraph", lambda fn, capture: fn)
    torch.manual_seed(0)
    net = unet_from_preset("test", num_classes=3, image_size=16).eval()
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([7, 300]), torch.tensor([2, 0])
    with torch.no_grad():
        got = GuidedModel(GraphedDenoiser(net, capture=True), scale)(x, t, y)
        assert torch.equal(got, GuidedModel(net, scale)(x, t, y))


def test_optimizer_state_moves_between_float_and_tensor_learning_rates():
    """A CUDA-graph run keeps lr as a tensor (fused AdamW); its checkpoint must load into a plain run and back."""
    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    grads = [torch.randn(5, 3) for _ in range(3)]

    def run(opt_kw, w, grads_, sd=None):
        p = torch.nn.Parameter(w.clone())
        opt = torch.optim.AdamW([p], weight_decay=1e-2, **opt_kw)
        if sd is not None:
            load_optimizer_state(opt, sd)
        for g in grads_:
            p.grad = g.clone()
            opt.step()
        return p.detach(), opt

    ref, _ = run({"lr": 1e-2}, w0, grads)  # three plain steps
    w1, tensor_opt = run({"lr": torch.tensor(1e-2), "fused": True}, w0, grads[:1])
    sd = optimizer_state(tensor_opt)
    assert isinstance(sd["param_groups"][0]["lr"], float)
    w3, _ = run({"lr": 1e-2}, w1, grads[1:], sd)  # tensor-lr checkpoint into a float-lr optimizer
    torch.testing.assert_close(w3, ref, rtol=0, atol=1e-6)
    w1b, plain_first = run({"lr": 1e-2}, w0, grads[:1])
    w3b, back = run({"lr": torch.tensor(1e-2), "fused": True}, w1b, grads[1:], optimizer_state(plain_first))  # and back
    assert torch.is_tensor(back.param_groups[0]["lr"]) and back.param_groups[0]["fused"]
    torch.testing.assert_close(w3b, ref, rtol=0, atol=1e-6)


def test_scheduler_rewrites_a_tensor_learning_rate_in_place():
    """A recorded step reads the lr tensor it saw when recorded: warmup must change that tensor, not replace it.
    Its saved state holds floats, so a CPU run with a float lr resumes from it."""
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=torch.tensor(3e-4), fused=True)
    lr = opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: warmup_factor(k, 4))
    seen = [float(lr)]
    for _ in range(2):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
        seen.append(float(lr))
        assert opt.param_groups[0]["lr"] is lr
    q = torch.nn.Parameter(torch.zeros(2))
    plain = torch.optim.AdamW([q], lr=3e-4)  # foreach: refuses a tensor lr
    plain_sched = torch.optim.lr_scheduler.LambdaLR(plain, lambda k: warmup_factor(k, 4))
    load_optimizer_state(plain, optimizer_state(opt))
    plain_sched.load_state_dict(scheduler_state(sched))
    for _ in range(3):
        q.grad = torch.ones(2)
        plain.step()
        plain_sched.step()
        assert isinstance(plain.param_groups[0]["lr"], float)
        seen.append(plain.param_groups[0]["lr"])
    assert seen == pytest.approx([3e-4 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)])
