"""optim.name -> torch optimizer over a model's trainable parameters, in parameter groups.

Groups differ by weight decay (normalisation weights, biases and other 1-D parameters get none
unless optim.decay_norm_and_bias) and by optim.lr_mult; each group records its multiplier as
group["lr_mult"] and starts at lr = optim.lr x that multiplier, which schedules take as its base.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from cnnlab.config.schema import OptimConfig
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

try:  # torch >= 2.9; its Newton–Schulz iteration and step-size rule are reused, not copied
    from torch.optim import _muon
except ImportError:
    _muon = None

OPTIMIZERS: Registry[Callable[[nn.Module, OptimConfig], torch.optim.Optimizer]] = Registry(
    "optimizer", "optim.name"
)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)
Tag = Callable[[str, nn.Parameter], dict[str, Any]]


def build(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(model, cfg)


def lr_mults(model: nn.Module, lr_mult: dict[str, float]) -> dict[str, float]:
    """parameter name -> multiplier of the longest optim.lr_mult key matching it (default 1)."""
    names = [name for name, _ in model.named_parameters()]
    out = dict.fromkeys(names, 1.0)
    best = dict.fromkeys(names, -1)
    for key, mult in lr_mult.items():
        hits = [n for n in names if n == key or n.startswith(key + ".") or fnmatchcase(n, key)]
        if not hits:
            top = ", ".join(name for name, _ in model.named_children()) or "(none)"
            raise ConfigError(
                f"optim.lr_mult: {key!r} matches no parameter; top-level modules: {top}"
            )
        for name in hits:
            if len(key) > best[name]:
                out[name], best[name] = mult, len(key)
    return out


def param_groups(model: nn.Module, cfg: OptimConfig, tag: Tag | None = None) -> list[dict]:
    """Trainable parameters grouped by (tag, weight decay, lr multiplier): as few groups as the
    config allows, none empty. tag(name, param) adds optimizer-specific keys to a group."""
    in_norm = {id(p) for m in model.modules() if isinstance(m, NORMS) for p in m.parameters()}
    mults = lr_mults(model, cfg.lr_mult)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim <= 1 or name.endswith("bias") or id(p) in in_norm
        decay = cfg.weight_decay if cfg.decay_norm_and_bias or not plain else 0.0
        extra = tag(name, p) if tag else {}
        key = (*sorted(extra.items()), decay, mults[name])
        group = groups.setdefault(
            key,
            {
                "params": [],
                "lr": cfg.lr * mults[name],
                "lr_mult": mults[name],
                "weight_decay": decay,
                **extra,
            },
        )
        group["params"].append(p)
    if not groups:
        raise ConfigError("optim: the model has no trainable parameters")
    # The loop logs param_groups[0]["lr"], so a group at the plain optim.lr goes first.
    return sorted(groups.values(), key=lambda g: g["lr_mult"] != 1.0)


def _eps(cfg: OptimConfig) -> dict[str, float]:
    return {} if cfg.eps is None else {"eps": cfg.eps}


@OPTIMIZERS.register("sgd")
def sgd(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (torch.optim.SGD): optim.momentum, nesterov, dampening, weight_decay."""
    if cfg.nesterov and (cfg.momentum <= 0 or cfg.dampening != 0):
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0 and optim.dampening = 0")
    return torch.optim.SGD(
        param_groups(model, cfg),
        lr=cfg.lr,
        momentum=cfg.momentum,
        dampening=cfg.dampening,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


@OPTIMIZERS.register("adam")
def adam(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam (torch.optim.Adam): optim.betas, eps; weight_decay added to the gradient."""
    return torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, **_eps(cfg))


@OPTIMIZERS.register("adamw")
def adamw(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (torch.optim.AdamW): optim.betas, eps, decoupled weight_decay."""
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, **_eps(cfg))


@OPTIMIZERS.register("rmsprop")
def rmsprop(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """RMSprop (torch.optim.RMSprop): optim.alpha, momentum, eps, weight_decay."""
    return torch.optim.RMSprop(
        param_groups(model, cfg), lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum, **_eps(cfg)
    )


@OPTIMIZERS.register("adagrad")
def adagrad(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adagrad (torch.optim.Adagrad): optim.eps, weight_decay."""
    return torch.optim.Adagrad(param_groups(model, cfg), lr=cfg.lr, **_eps(cfg))


@OPTIMIZERS.register("adadelta")
def adadelta(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adadelta (torch.optim.Adadelta): optim.rho, eps, weight_decay; optim.lr scales it."""
    return torch.optim.Adadelta(param_groups(model, cfg), lr=cfg.lr, rho=cfg.rho, **_eps(cfg))


def _timm_optim(name: str) -> Any:
    try:
        import timm.optim
    except ImportError:
        raise ConfigError(f"optim.name={name} needs timm: pip install timm") from None
    return timm.optim


@OPTIMIZERS.register("lamb")
def lamb(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """LAMB (timm.optim.Lamb), layer-wise trust ratios: optim.betas, eps, weight_decay."""
    return _timm_optim("lamb").Lamb(
        param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, **_eps(cfg)
    )


@OPTIMIZERS.register("lion")
def lion(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Lion (timm.optim.Lion), the sign of an interpolated momentum: optim.betas, weight_decay."""
    return _timm_optim("lion").Lion(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas)


@OPTIMIZERS.register("muon")
def muon(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Muon on hidden conv and linear weights, AdamW on the rest: optim.momentum, nesterov,
    betas, eps, weight_decay.

    AdamW takes biases, normalisation weights, embeddings and the classifier (the model's last
    nn.Linear), as Keller Jordan's MuonWithAuxAdam does. Both halves start at optim.lr x
    lr_mult: one knob, and lr_mult ("classifier": 0.1, say) tunes the AdamW part where Muon's lr
    (~0.02) is too high for it. A net without an nn.Linear (a 1x1-conv head) has Muon on its
    head too."""
    if _muon is None:
        raise ConfigError(
            f"optim.name=muon needs torch.optim.Muon, which torch {torch.__version__} lacks"
        )
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = {id(p) for p in linears[-1].parameters()} if linears else set()
    hidden = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and id(m.weight) not in head
    }
    groups = param_groups(model, cfg, lambda _, p: {"use_muon": id(p) in hidden})
    return MuonWithAuxAdamW(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        betas=cfg.betas,
        eps=1e-8 if cfg.eps is None else cfg.eps,
    )


class MuonWithAuxAdamW(torch.optim.Optimizer):
    """torch.optim.Muon's update for groups with use_muon (conv filters flattened to
    (out, in x kh x kw), which torch's Muon refuses), AdamW for the rest, in one optimizer so
    that state_dict, zero_grad and schedules see every group. optim.eps is AdamW's; the
    Newton–Schulz iteration keeps torch's own."""

    def __init__(
        self,
        groups: list[dict],
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        betas: tuple[float, float],
        eps: float,
    ):
        defaults = {
            "use_muon": False,
            "lr": lr,
            "weight_decay": 0.0,
            "momentum": momentum,
            "nesterov": nesterov,
            "betas": betas,
            "eps": eps,
            "ns_coefficients": (_muon.DEFAULT_A, _muon.DEFAULT_B, _muon.DEFAULT_C),
            "ns_steps": _muon.DEFAULT_NS_STEPS,
        }
        super().__init__(groups, defaults)
        for group in self.param_groups:
            if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon needs parameters of at least 2 dimensions")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = self._muon if group["use_muon"] else self._adamw
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    update(p, self.state[p], group)
        return loss

    def _muon(self, p: torch.Tensor, state: dict, group: dict) -> None:
        grad, momentum = p.grad, group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - momentum)
        direction = grad.lerp(buf, momentum) if group["nesterov"] else buf
        matrix = direction.reshape(len(p), -1)
        ortho = _muon._zeropower_via_newtonschulz(
            matrix, group["ns_coefficients"], group["ns_steps"], _muon.EPS
        )
        # Step size from the flattened shape, as Keller Jordan's Muon does for conv filters.
        p.add_(ortho.reshape(p.shape), alpha=-_muon._adjust_lr(group["lr"], None, matrix.shape))

    def _adamw(self, p: torch.Tensor, state: dict, group: dict) -> None:
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].lerp_(p.grad.square(), 1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1 ** state["step"]))
