"""BatchNorm over the whole global batch under torchrun on any device (clip-tiny's ResNet image tower).

torch.nn.SyncBatchNorm does this on CUDA only (its forward refuses CPU tensors), and gloo ranks on CPU are how the
1-vs-2-rank equality is tested, so the statistics are all-reduced here: per-channel sums, sums of squares and counts,
through torch.distributed.nn's differentiable all_reduce (its backward sums the ranks' gradients, so each rank's
rows receive the whole batch's gradient through the shared mean and variance). Running statistics are updated from
the global batch as one process's BatchNorm updates them (unbiased variance), so the trained model is the same.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossRankBatchNorm(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics are the global batch's (every rank's rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:                    # (B_rank, C, H, W)
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        # float64 sums: E[x^2] - E[x]^2 loses digits in float32, and the result should be one process's to rounding
        wide = x.double()
        n = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        total = all_reduce(torch.cat([wide.sum((0, 2, 3)), wide.pow(2).sum((0, 2, 3)), n]))   # (2C + 1,)
        c, count = x.shape[1], total[-1]
        mean = total[:c] / count                                                  # (C,)
        var = (total[c:2 * c] / count - mean.pow(2)).clamp_min(0)                 # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():   # as nn.BatchNorm2d: momentum None is the cumulative average
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(x.dtype), factor)
                self.running_var.lerp_((var * count / (count - 1)).to(x.dtype), factor)
        mean, var = mean.to(x.dtype), var.to(x.dtype)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert(module: nn.Module) -> nn.Module:
    """Every nn.BatchNorm2d of `module` replaced in place by a CrossRankBatchNorm holding the same parameters and
    buffers (the state dict, and the optimiser's references, are unchanged)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, CrossRankBatchNorm):
            synced = CrossRankBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                        child.track_running_stats)
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            convert(child)
    return module
