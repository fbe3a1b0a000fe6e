"""train.sync_bn: BatchNorm statistics over the whole global batch, not each process's share.

On GPUs, torch.nn.SyncBatchNorm (fused kernels). It refuses CPU tensors, and
DistributedDataParallel refuses it on a CPU model, so CPU runs (gloo) get CpuSyncBatchNorm: the
same statistics from one all-reduce of per-channel sums, whose backward sums the gradients over
the ranks as the fused kernels do. Either keeps BatchNorm's
state dict, so the weights load into an ordinary model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over (B, C, ...) inputs whose training statistics span every rank's batch."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _several()):
            return super().forward(x)  # evaluation: the running statistics, as BatchNorm
        return self._cpu_forward(x)

    def _cpu_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, ...) -> normalised with the mean and variance over every rank's batch."""
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = (1, channels) + (1,) * (x.dim() - 2)
        xf = x.float()
        # Sums of x - shift, where shift (the running mean, the same on every rank) keeps
        # E[d^2] - E[d]^2 from cancelling catastrophically in float32.
        if self.running_mean is None:
            shift = torch.zeros(channels)
        else:
            shift = self.running_mean.detach().float()
        d = xf - shift.view(shape)
        local = torch.cat([d.sum(dims), (d * d).sum(dims), d.new_full((1,), d.numel() / channels)])
        total = _AllReduce.apply(local)
        count = total[-1]
        mean_d = total[:channels] / count
        var = total[channels : 2 * channels] / count - mean_d * mean_d  # biased, as BatchNorm
        mean = mean_d + shift
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._track(mean.detach(), var.detach(), count.detach())
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """BatchNorm's update of the running statistics (the unbiased variance)."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # a cumulative average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(var * count / (count - 1).clamp(min=1), factor)


class _AllReduce(torch.autograd.Function):
    """A sum over the ranks; its gradient is the sum over the ranks of theirs, since every
    rank's loss depends on the sum (torch.distributed.nn's all_reduce, which torch deprecates)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _several() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def convert(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of `module` synchronised over the ranks, sharing its weights and
    buffers: torch's SyncBatchNorm on GPUs, CpuSyncBatchNorm on the CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    """torch's convert_sync_batchnorm, building CpuSyncBatchNorm."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = CpuSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
