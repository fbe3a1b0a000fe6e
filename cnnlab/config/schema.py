"""The validated, frozen config. Every default in cnnlab is declared here, once.

Names of sections and keys are part of the user interface (`optim.lr=0.01` on the command line).
Which *names* are valid for `data.name`, `model.name`, `optim.name`, `schedule.name` and augment
ops is decided by the registries when the config is built into objects, because config/ sits
below them and cannot import them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnnlab.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    name: str = "digits"
    root: str | None = None  # where the source looks for files; None: its own default places
    # A fraction in (0, 1) or a count of images, drawn stratified per class with split_seed.
    val_split: float | int = 0.2
    split_seed: int = 0  # separate from train.seed so seed sweeps see the same split
    image_size: int | None = Field(default=None, gt=0)  # square resize; None keeps the source's
    channels: Literal[1, 3] | None = None  # gray<->RGB conversion; None keeps the source's
    # "train": per-channel mean/std of the training split (cached); "imagenet": the ImageNet
    # preset (for pretrained nets); "none": only scale to [0, 1].
    normalize: Literal["train", "imagenet", "none"] = "train"
    label_set: Literal["fine", "coarse"] = "fine"  # cifar100's 100 fine or 20 coarse classes
    # Keep only these classes (names or label indices), relabelled 0..k-1 in the order given,
    # in every split: [0, 1, 2, 3, 4] or [T-shirt/top, Trouser]. None: every class.
    classes: list[str | int] | None = None
    on_bad_file: Literal["skip", "error"] = "skip"  # corrupt images: skip and list, or stop
    # Sets larger than this (uint8 bytes, in MiB) stream through DataLoader workers instead of
    # living on the training device.
    max_resident_mb: float = Field(default=4096.0, gt=0.0)
    num_workers: int = Field(default=4, ge=0)  # image-decoding threads and StreamLoader workers
    cache_dir: str | None = None  # decoded-folder cache; None: $XDG_CACHE_HOME/cnnlab or ~/.cache

    @field_validator("val_split")
    @classmethod
    def _val_split_range(cls, v: float | int) -> float | int:
        if isinstance(v, bool):
            raise ValueError("expected a fraction in (0, 1) or a count >= 1")
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError("a fraction must lie in (0, 1); give an integer for a count")
        if isinstance(v, int) and v < 1:
            raise ValueError("a count must be >= 1")
        return v


class AugmentConfig(Section):
    # Ops applied to each training batch, in order: [{op: crop, padding: 1}, {op: flip, p: 0.5}].
    train: list[dict[str, Any]] = []
    # Test-time views averaged by evaluation: [flip, {view: shift, pixels: 1}].
    tta: list[str | dict[str, Any]] = []


class ModelConfig(Section):
    """Common options first; the rest belong to some models only. A model receives the options
    its builder names; setting one that the chosen model does not take is an error."""

    name: str = "cnn"
    width: int = Field(default=32, gt=0)  # channels of the first stage; later stages multiply it
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # before the classifier
    activation: Literal["relu", "leaky_relu", "gelu", "silu"] = "relu"
    init: Literal["default", "kaiming_normal", "kaiming_uniform", "xavier"] = "default"
    separable: bool = False  # depthwise + pointwise instead of full 3x3 convolutions
    se: bool = False  # squeeze-and-excitation after each block
    stages: list[int] = [2, 2, 2]  # vgg: 3x3 convs per stage; width doubles per stage
    bn: bool = True  # vgg: BatchNorm after each conv
    stem: Literal["small", "imagenet"] = "small"  # resnet: 3x3 stride 1, or 7x7 stride 2
    maxpool: bool = False  # resnet: the 3x3 stride-2 max-pool after an imagenet stem
    extra_pool_after: list[int] = []  # resnet: 2x2 max-pools after these stages (1-based)
    depth: int = Field(default=16, ge=10)  # wrn: total depth, 6n + 4
    widen: int = Field(default=4, ge=1)  # wrn: width multiplier k
    # layers: the declarative net, e.g. [conv(32, 3), bn, relu, maxpool(2), flatten, linear]
    layers: list[str] = []
    # Start from a trained net, cut and given a new head as the transfer section says: a cnnlab
    # run directory, a cnnlab checkpoint file (best.safetensors, last.ckpt), or torchvision:NAME /
    # timm:NAME with its pretrained weights. The backbone decides the architecture, so the other
    # model.* keys stay unset. None: train model.name from scratch.
    backbone: str | None = None

    @field_validator("layers", mode="before")
    @classmethod
    def _rejoin_layers(cls, v: Any) -> Any:
        """A YAML flow list splits at every comma, those inside a layer's parentheses too:
        [conv(32, 3), bn] reads as ['conv(32', 3, 'bn']. Join the pieces back while a
        parenthesis is open, so the documented inline form works on the command line and in
        files alike."""
        if not isinstance(v, list):
            return v
        joined: list[Any] = []
        for item in v:
            last = joined[-1] if joined and isinstance(joined[-1], str) else ""
            if last.count("(") > last.count(")") and not isinstance(item, list | dict):
                joined[-1] = f"{last}, {item}"  # a number YAML read from "3" is "3" again
            else:
                joined.append(item)
        return joined


class OptimConfig(Section):
    name: str = "adam"
    lr: float = Field(default=3e-3, gt=0.0)  # peak learning rate, reached after warm-up
    weight_decay: float = Field(default=0.0, ge=0.0)
    # Weight decay on normalisation weights and biases too; off is the usual practice (timm's
    # filter_bias_and_bn), since decaying a BatchNorm scale only fights the normalisation.
    decay_norm_and_bias: bool = False
    # Per-group learning-rate multipliers by parameter name: a module name ("classifier"), a
    # full parameter name or a glob ("features.0.*"); the longest matching key wins.
    lr_mult: dict[str, float] = {}
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # sgd, rmsprop, muon
    nesterov: bool = False  # sgd, muon
    dampening: float = Field(default=0.0, ge=0.0, lt=1.0)  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw, lamb, lion
    alpha: float = Field(default=0.99, gt=0.0, lt=1.0)  # rmsprop: squared-gradient average
    rho: float = Field(default=0.9, gt=0.0, lt=1.0)  # adadelta: squared-gradient average
    eps: float | None = Field(default=None, gt=0.0)  # None: each optimizer's torch default

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("both betas must lie in [0, 1)")
        return v

    @field_validator("lr_mult")
    @classmethod
    def _positive_mults(cls, v: dict[str, float]) -> dict[str, float]:
        for key, mult in v.items():
            if mult < 0:
                raise ValueError(f"multiplier of {key!r} is {mult}; expected >= 0 (0 freezes)")
        return v


class ScheduleConfig(Section):
    # Stepped per optimizer step (constant, cosine, linear, onecycle) or per epoch (step,
    # multistep, exponential, plateau); warm-up is always per step.
    name: str = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0.0)  # linear ramp from 0 to optim.lr
    min_lr: float = Field(default=0.0, ge=0.0)  # floor of decaying schedules
    # Multiplicative decay: step and multistep per drop, exponential per epoch, plateau per
    # reduction. None: 0.1, except exponential 0.95.
    gamma: float | None = Field(default=None, gt=0.0, lt=1.0)
    step_size: int = Field(default=10, ge=1)  # step: epochs between drops
    milestones: list[int] = [10, 15]  # multistep: epochs after which the lr drops
    pct_start: float = Field(default=0.3, gt=0.0, lt=1.0)  # onecycle: share of steps rising
    monitor: str = "val_loss"  # plateau: the per-epoch metric it watches
    mode: Literal["min", "max"] = "min"  # plateau: whether the metric should fall or rise
    patience: int = Field(default=3, ge=0)  # plateau: epochs without improvement per reduction

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("expected increasing epoch numbers >= 1, e.g. [10, 15]")
        return v


class EarlyStoppingConfig(Section):
    monitor: str = "val_acc"  # any per-epoch metric; also picks the best checkpoint
    mode: Literal["max", "min"] = "max"
    patience: int | None = Field(default=None, ge=1)  # epochs without improvement; None: off
    min_delta: float = Field(default=0.0, ge=0.0)


class TrainConfig(Section):
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16: autocast (+ scaler: fp16)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    deterministic: bool = False  # bit-reproducible kernels (slower on GPU)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(default=None, gt=0.0)  # max global grad norm
    # Decay of an exponential moving average of the weights, updated every optimizer step;
    # evaluation and best.safetensors use the average. None: off.
    ema: float | None = Field(default=None, gt=0.0, lt=1.0)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    accumulate: int = Field(default=1, ge=1)  # batches whose gradients add up to one step
    # Wall-clock budget of one `cnnlab train` invocation; the run stops at the next step, saves
    # a resumable checkpoint and ends with status time_limit. None: no limit.
    max_minutes: float | None = Field(default=None, gt=0.0)
    # Divergence guard: a logged loss above spike_factor x the running median of the recent
    # logged losses counts as divergence, like NaN/inf. None: only NaN/inf.
    spike_factor: float | None = Field(default=10.0, gt=1.0)
    # stop: end the run (status diverged, exit 3); rollback: restore the last good checkpoint,
    # halve the learning rate and go on (at most max_rollbacks times, then stop).
    on_divergence: Literal["stop", "rollback"] = "stop"
    max_rollbacks: int = Field(default=3, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    # With several processes (torchrun, --nproc): BatchNorm statistics over the whole global
    # batch (SyncBatchNorm) instead of each process's share of it. One process: no effect.
    sync_bn: bool = False

    def rank_batch(self, world_size: int) -> int:
        """batch_size is the global batch: the images each of `world_size` processes takes."""
        if self.batch_size % world_size:
            below = self.batch_size // world_size * world_size
            raise ConfigError(
                f"train.batch_size = {self.batch_size}: the global batch does not split evenly"
                f" over {world_size} processes; expected a multiple of {world_size}"
                f" (e.g. {below or world_size} or {below + world_size})"
            )
        return self.batch_size // world_size


class TransferConfig(Section):
    """How model.backbone becomes this run's model: input adapter -> backbone cut at `layer` ->
    pool -> head. The adapter resizes, repeats or mixes channels and re-normalises the data's
    images into what the backbone was trained on."""

    # false: the backbone's architecture with fresh random weights (the control that shows
    # what its training bought).
    pretrained: bool = True
    # Where to cut: a module name of the backbone ("layer3", "features.7") or a row number of
    # its table in `cnnlab summary` (negative counts from the end). None: the input of its last
    # linear layer (the classifier), i.e. the features the backbone classified from.
    layer: str | int | None = None
    pool: Literal["avg", "max", "avgmax", "flatten"] = "avg"  # a (C, H, W) cut -> a vector
    pool_size: int = Field(default=1, ge=1)  # avg/max/avgmax: output height = width
    head: Literal["linear", "mlp"] = "linear"
    hidden: list[int] = [512]  # mlp: widths of its hidden layers
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # before each linear layer of the head
    # Frozen: backbone weights and BatchNorm statistics fixed. Frozen for the whole run with no
    # augment.train and no TTA, its features are computed once and only the head trains.
    freeze: bool = True
    unfreeze_after: int | None = Field(default=None, ge=1)  # epochs frozen, then fine-tune all
    # Backbone lr = optim.lr x this while it trains: a pretrained net wants smaller steps than a
    # fresh head (fastai's discriminative learning rates).
    backbone_lr_mult: float = Field(default=0.1, ge=0.0)
    # Images resized (on the device) to this square size for the backbone. None: the size a
    # cnnlab backbone was trained at; the data's own size for torchvision/timm backbones.
    input_size: int | None = Field(default=None, gt=0)


class EvalConfig(Section):
    # Validation, test and analysis batches. 256: on the CPU, batches whose activations stay in
    # cache evaluate the default cnn 1.5x faster than 1024 (2-core EPYC); a GPU hardly cares.
    batch_size: int = Field(default=256, ge=1)


class RunConfig(Section):
    dir: str = "runs"
    name: str | None = None  # None: "<data.name>-<model.name>"


class Config(Section):
    recipe: str = "default"
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    transfer: TransferConfig = TransferConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able data; loading it back gives an equal Config."""
        return self.model_dump(mode="json")


class LrFindOptions(Section):
    """`cnnlab lr-find`'s sweep (options of that command, not of a run's config)."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 200  # optimizer steps (at least 10: fewer give no usable slope)


class EvalOptions(Section):
    """`cnnlab eval`'s report (options of that command, not of a run's config)."""

    top_k: int = 5  # top-k accuracy besides top-1
    worst: int = 16  # highest-loss images shown


LR_FIND, EVAL = LrFindOptions(), EvalOptions()  # the defaults of those commands' flags


def default(key: str) -> Any:
    """The schema's default of a dotted key ("eval.batch_size" -> 256), for CLI flags that
    stand for a config key, so that no default is declared twice."""
    model: type[BaseModel] = Config
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[name].get_default(call_default_factory=True)


DEFAULT_RUN_DIR: str = default("run.dir")


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key a user may set: ['recipe', 'data', 'data.name', ...]."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(valid_keys(sub, f"{key}."))
    return keys
