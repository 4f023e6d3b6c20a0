"""CUDA graphs: a step's kernels recorded once and replayed with one launch.

Why: a training step of a CIFAR-sized UNet is ~2000 small kernels, and on a fast GPU the CPU launching them one
by one is slower than the GPU running them, so the GPU spends most of each step waiting
(docs/measurements.md has the numbers). A CUDA graph
records those kernels once and replays them all with a single launch (PyTorch's "whole-network capture",
``torch.cuda.graphs``). A recorded step works on fixed memory: it reads its inputs from *static* tensors that
the caller refills before each replay, and writes the same output tensors every time.

:class:`StepGraph` wraps a function of no arguments that reads and writes such tensors. Its first ``warmup``
calls run the function eagerly on a side stream (real calls, with real results: cuDNN and cuBLAS choose their
kernels and allocate workspaces here, as capture requires); the next call records it and replays it, and every
later call only replays. Random numbers drawn inside (ε, t, dropout) follow the default CUDA generator at each
replay, so ``torch.manual_seed`` before a call still decides them. Where capture is off (a CPU, or without
``DDLIB_CUDA_GRAPHS=1``) every call runs the function eagerly: the same code on the same static tensors, which is
how CI exercises everything here but the recording itself. If recording fails, the error says why and to run
with ``DDLIB_CUDA_GRAPHS=0``.

:class:`GraphedDenoiser` applies this to sampling: ``model(x, t, **kwargs)`` in eval mode, one graph per input shape.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from ddlib.errors import DDLibError

WARMUP_CALLS = 3  # eager calls before recording, as in PyTorch's whole-network example


def graphs_enabled(device: torch.device) -> bool:
    """CUDA graphs on a CUDA device with ``DDLIB_CUDA_GRAPHS=1``; never on a CPU.

    Off by default: ``.ci/gpu-check`` compares recorded and eager steps on a GPU, and ``.ci/gpu-report`` turns
    graphs on where that check found them equal and faster.
    """
    flag = os.environ.get("DDLIB_CUDA_GRAPHS", "0")
    if flag not in ("0", "1"):
        raise DDLibError(f"DDLIB_CUDA_GRAPHS={flag!r}: use 1 (record steps as CUDA graphs) or 0 (run eagerly)")
    return device.type == "cuda" and flag == "1"


class StepGraph:
    """``step()`` runs ``fn`` (no arguments, static tensors in and out): eagerly at first, then as a CUDA graph.

    ``capture``: record at all (see :func:`graphs_enabled`). ``captured`` tells whether replays are running.
    """

    def __init__(self, fn: Callable[[], object], *, capture: bool, warmup: int = WARMUP_CALLS):
        self.fn, self.capture, self.warmup = fn, capture, warmup
        self.calls, self.graph, self.out = 0, None, None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self):
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return self.out
        if not self.capture:
            return self.fn()
        if self.calls <= self.warmup:
            return self._side_stream_call()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = self.fn()
        except Exception as err:
            # No eager fallback: a failed capture can leave the CUDA generator in capture mode (pytorch#171263),
            # so the next random draw would fail anyway. The cause is the error inside, not capture_end's.
            cause = err.__context__ or err
            raise DDLibError(f"CUDA graph capture failed ({type(cause).__name__}: {cause}); "
                             "run with DDLIB_CUDA_GRAPHS=0") from err
        self.graph, self.out = graph, out
        graph.replay()  # recording ran nothing: this replay is the call
        return out

    def _side_stream_call(self):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()  # memory made on the side stream is safe to reuse anywhere after this
        return out


class GraphedDenoiser(nn.Module):
    """``model(x, t, y, **kwargs)`` in eval mode without gradients, replayed from one CUDA graph per input shape
    (and autocast state). All arguments are tensors.

    Each call copies its inputs into the static tensors of its shape's graph and returns a copy of the output
    (a caller may keep it across calls). Training mode, gradients, or capture off: the model runs as it is.
    """

    def __init__(self, model: nn.Module, *, capture: bool):
        super().__init__()
        self.model, self.capture = model, capture
        self.graphs: dict[tuple, tuple[StepGraph, tuple[torch.Tensor, ...]]] = {}
        self.config = getattr(model, "config", None)

    @property
    def captured(self) -> bool:
        """Whether any call has been replayed from a recorded graph."""
        return any(step.captured for step, _ in self.graphs.values())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if y is not None:  # the UNet's own signature: GuidedModel passes labels by position
            kwargs["y"] = y
        if not self.capture or self.model.training or torch.is_grad_enabled():
            return self.model(x, t, **kwargs)
        names = sorted(kwargs)
        inputs = (x, t, *(kwargs[k] for k in names))
        amp = torch.is_autocast_enabled(x.device.type) and torch.get_autocast_dtype(x.device.type)
        key = (tuple(names), amp, *((tuple(a.shape), a.dtype, a.device) for a in inputs))
        if key not in self.graphs:
            static, model = tuple(a.clone() for a in inputs), self.model

            def call():  # refers to the model, not to self: no reference cycle keeps a dead wrapper's graphs alive
                return model(static[0], static[1], **dict(zip(names, static[2:])))

            self.graphs[key] = (StepGraph(call, capture=True), static)
        step, static = self.graphs[key]
        for s, a in zip(static, inputs):
            s.copy_(a)
        return step().clone()


def graphed(model: nn.Module) -> nn.Module:
    """``model`` for sampling, replayed from CUDA graphs where :func:`graphs_enabled` says so (else ``model``).

    The graphs live as long as the wrapper: make one per sampling job (:func:`ddlib.generate.generate` does).
    They read the weights where they are, so in-place updates (``load_state_dict``) are seen.
    """
    device = next(model.parameters()).device
    return GraphedDenoiser(model, capture=True) if graphs_enabled(device) else model
