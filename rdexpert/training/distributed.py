"""Several processes, one job: torchrun's environment, the process group, and BatchNorm over every rank's batch.

``torchrun`` starts one process per worker and tells each who it is through environment
variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE); :class:`Worker` reads them, so the
same ``rdexpert train`` command runs alone or under torchrun. The process group (gloo on CPU,
NCCL on GPUs) carries the few messages the workers exchange: a barrier, the summary rows, and
in DDP training the gradients and BatchNorm statistics.
"""

from __future__ import annotations

import datetime
import os
import socket
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

# the differentiable all-reduce we need; its suggested successor lives in a private module
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                        category=FutureWarning)

# a category can train for hours while other ranks wait at the final barrier: gloo's and NCCL's
# default 30-minute timeout would kill a healthy job
GROUP_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Worker:
    """Who this process is in a torchrun job (rank 0 of 1 when started without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> "Worker":
        env = os.environ
        world = int(env.get("WORLD_SIZE", 1))
        return cls(rank=int(env.get("RANK", 0)), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
                   local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def host(self) -> str:
        return socket.gethostname()

    def device(self, requested: str = "auto") -> str:
        """``auto`` under torchrun: this worker's own GPU (``cuda:LOCAL_RANK``) when there are GPUs, else the CPU."""
        if requested != "auto" or self.world_size == 1:
            return requested
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def share(self, items: list) -> list:
        """This rank's share of ``items``: every world_size-th one from position ``rank`` (round robin)."""
        return list(items)[self.rank::self.world_size]

    def limit_cpu_threads(self) -> int:
        """Split the machine's cores between the workers on it: N workers each taking every core slow all down."""
        if self.local_world_size > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_world_size))
        return torch.get_num_threads()

    def describe(self) -> dict:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank, "host": self.host}


def start_group(worker: Worker, device: torch.device) -> bool:
    """Join the process group (once); False when there is nothing to join (a single process)."""
    if worker.world_size == 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    return True


def in_group() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(value) -> list:
    """Every rank's ``value`` (JSON-like data), in rank order; ``[value]`` outside a group."""
    if not in_group():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if in_group():
        dist.barrier()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each float over the ranks: every rank's loss is that of its share of the batch."""
    if not in_group() or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / dist.get_world_size()).tolist()))


def finish_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _global_batch_norm(layer: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm of ``x`` with the mean and variance of every rank's batch, in training mode.

    Two differentiable all-reduces (``torch.distributed.nn``) make the statistics, so the gradient
    flows back to every rank's inputs as with one big batch; the running statistics get the global
    values, so every rank's buffers stay equal.
    """
    channels = x.shape[1]
    reduce = [0] + list(range(2, x.dim()))
    shape = [1, channels] + [1] * (x.dim() - 2)
    # sums in float64, as PyTorch's own CPU BatchNorm accumulates: in float32 the rounding of the
    # statistics grows through the student's deep BatchNorm stack to ~1e-3 of its outputs
    wide = x.double()
    local = torch.cat([wide.sum(reduce), wide.new_full((1,), x.numel() // channels)])  # a last batch may split unevenly
    total = dist_nn.all_reduce(local)
    count = float(total[-1].detach())
    mean = total[:-1] / count
    centred = wide - mean.reshape(shape)
    var = dist_nn.all_reduce((centred * centred).sum(reduce)) / count
    if layer.track_running_stats:
        with torch.no_grad():
            layer.num_batches_tracked.add_(1)
            momentum = 1.0 / float(layer.num_batches_tracked) if layer.momentum is None else layer.momentum
            layer.running_mean.lerp_(mean.detach().to(layer.running_mean.dtype), momentum)
            layer.running_var.lerp_((var.detach() * count / max(count - 1, 1)).to(layer.running_var.dtype), momentum)
    out = (centred * torch.rsqrt(var + layer.eps).reshape(shape)).to(x.dtype)
    if layer.affine:
        out = out * layer.weight.reshape(shape) + layer.bias.reshape(shape)
    return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the global batch while training in a process group (plain BatchNorm otherwise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _global_batch_norm(self, x) if self.training and in_group() else super().forward(x)


def _global_batch_norm_act_class():
    from timm.layers import BatchNormAct2d

    class GlobalBatchNormAct2d(BatchNormAct2d):
        """timm's BatchNorm + activation layer, its BatchNorm over the global batch (see GlobalBatchNorm2d)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not (self.training and in_group()):
                return super().forward(x)
            return self.act(self.drop(_global_batch_norm(self, x)))

    return BatchNormAct2d, GlobalBatchNormAct2d


def synchronise_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` normalises over the batches of all ranks (the global batch).

    On GPUs: PyTorch's SyncBatchNorm (timm's converter keeps timm's BatchNorm+activation layers
    whole). On CPU, where PyTorch has no SyncBatchNorm kernels and DDP refuses the layer, each
    BatchNorm gets the forward of :class:`GlobalBatchNorm2d`: same parameters and buffers, so
    state dicts are unchanged.
    """
    if next(module.parameters()).device.type != "cpu":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    act_base, act_global = _global_batch_norm_act_class()
    for layer in module.modules():
        if type(layer) is nn.BatchNorm2d:
            layer.__class__ = GlobalBatchNorm2d
        elif type(layer) is act_base:
            layer.__class__ = act_global
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"cannot synchronise {type(layer).__name__} on CPU; train with --distributed ddp on GPUs")
    return module
