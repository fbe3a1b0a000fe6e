"""The validated, frozen config. Every default in cnnlab is declared here, once.

Names of sections and keys are part of the user interface (`optim.lr=0.01` on the command line).
Which *names* are valid for `data.name`, `model.name`, `optim.name`, `schedule.name` and augment
ops is decided by the registries when the config is built into objects, because config/ sits
below them and cannot import them.

Types are strict where pydantic's lax mode would guess: a number is never true/false (YAML's
`true` is not lr 1.0) but may be a numeric string (YAML 1.1 reads 1e-3 as one); a flag is only
true or false, never 0/1; every float is finite; every string is text (no NUL, at most
MAX_TEXT characters). Values that decide memory or loop counts have upper bounds, far above
any sensible setting, so a typo ends as one line here instead of an allocator's traceback.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from cnnlab.config.defaults import RUN_DIR
from cnnlab.errors import ConfigError

MAX_TEXT = 4096  # characters of any string value (PATH_MAX on Linux)
MAX_NAME_BYTES = 255  # bytes of one path component (NAME_MAX on Linux and macOS)
# Sizes that decide memory. image_size: pixels per side (1024² RGB is 3 MiB per image);
# width: channels of a first stage that later stages multiply; batch: images per step.
# Below 2 px an image has no spatial structure: a 1×1 set is a layout mistake (channels read
# as pixels) far more often than data. What a model needs beyond that, the model layer says.
MIN_IMAGE_SIZE = 2
MAX_IMAGE_SIZE = 1024
MAX_WIDTH = 1024
MAX_BATCH = 65_536
MAX_EPOCHS = 1_000_000  # also bounds every count in epochs (milestones, patience, warm-up)
DEVICES = "auto, cpu, cuda, cuda:N or mps"  # train.device and every --device flag
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _path_text(value: str | None) -> str | None:
    """A path the OS can take: no component longer than NAME_MAX bytes (ENAMETOOLONG)."""
    if value is not None:
        longest = max(len(part.encode("utf-8", "surrogateescape")) for part in value.split("/"))
        if longest > MAX_NAME_BYTES:
            raise ValueError(f"a path component of {longest} bytes; the limit is {MAX_NAME_BYTES}")
    return value


# Annotated types: constraints given by Field(...) apply after these checks.
Float = Annotated[float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(_number)]
Bool = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, StringConstraints(max_length=200)]  # registry names, metric names
PathText = Annotated[str, AfterValidator(_path_text)]
Epochs = Annotated[int, BeforeValidator(_number), Field(ge=1, le=MAX_EPOCHS)]


def _plain(value: Any) -> str | None:
    """What is wrong with a value anywhere inside a field (also Any-typed ones), or None."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return f"a string of {len(value):,} characters; expected at most {MAX_TEXT:,}"
        if "\0" in value:
            return "holds a NUL character"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
                return "holds bytes that are not UTF-8 text"
    elif isinstance(value, float) and not math.isfinite(value):
        return "expected finite numbers"
    elif isinstance(value, (list, tuple)):
        return next((p for p in map(_plain, value) if p), None)
    elif isinstance(value, dict):
        return next((p for p in map(_plain, [*value, *value.values()]) if p), None)
    return None


class Section(BaseModel):
    # defer_build: a section's validator is built when first used, not at import; commands that
    # never validate a config (runs list) start ~40 ms sooner.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

    @field_validator("*", mode="after")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        problem = None if isinstance(value, BaseModel) else _plain(value)
        if problem:
            raise ValueError(problem)
        return value


class DataConfig(Section):
    name: Name = "digits"
    # Where the source's files are. Set: only there (an error when they are not); None: the
    # source's own default places (a system package, earlier downloads, a download).
    root: PathText | None = None
    # A fraction in (0, 1) or a count of images, drawn stratified per class with split_seed.
    val_split: Float | Int = 0.2
    # Separate from train.seed so seed sweeps see the same split; scikit-learn takes 0..2^32-1.
    split_seed: Int = Field(default=0, ge=0, le=2**32 - 1)
    # Square resize, in px per side; None keeps the source's. Decides memory: N x C x size².
    image_size: Int | None = Field(default=None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)
    # gray<->RGB conversion; None keeps the source's
    channels: Annotated[Literal[1, 3], BeforeValidator(_number)] | None = None
    # "train": per-channel mean/std of the training split (cached); "imagenet": the ImageNet
    # preset (for pretrained nets); "none": only scale to [0, 1].
    normalize: Literal["train", "imagenet", "none"] = "train"
    label_set: Literal["fine", "coarse"] = "fine"  # cifar100's 100 fine or 20 coarse classes
    # Keep only these classes (names or label indices), relabelled 0..k-1 in the order given,
    # in every split: [0, 1, 2, 3, 4] or [T-shirt/top, Trouser]. None: every class.
    classes: list[str | Int] | None = Field(default=None, max_length=100_000)
    on_bad_file: Literal["skip", "error"] = "skip"  # corrupt images: skip and list, or stop
    # Sets larger than this (uint8 bytes, in MiB) stream through DataLoader workers instead of
    # living on the training device.
    max_resident_mb: Float = Field(default=4096.0, gt=0.0)
    # Image-decoding processes and StreamLoader workers; each is a process with its own memory.
    num_workers: Int = Field(default=4, ge=0, le=256)
    cache_dir: PathText | None = (
        None  # decoded-folder cache; None: $XDG_CACHE_HOME/cnnlab or ~/.cache
    )

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
    train: list[dict[str, Any]] = Field(default=[], max_length=256)
    # Test-time views averaged by evaluation: [flip, {view: shift, pixels: 1}]; each view is
    # one more pass over the evaluated set.
    tta: list[str | dict[str, Any]] = Field(default=[], max_length=64)


class ModelConfig(Section):
    """Common options first; the rest belong to some models only. A model receives the options
    its builder names; setting one that the chosen model does not take is an error."""

    name: Name = "cnn"
    # Channels of the first stage; later stages multiply it (cnn and vgg double it per stage).
    width: Int = Field(default=32, gt=0, le=MAX_WIDTH)
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)  # before the classifier
    activation: Literal["relu", "leaky_relu", "gelu", "silu"] = "relu"
    init: Literal["default", "kaiming_normal", "kaiming_uniform", "xavier"] = "default"
    separable: Bool = False  # depthwise + pointwise instead of full 3x3 convolutions
    se: Bool = False  # squeeze-and-excitation after each block
    # vgg: 3x3 convs per stage; width doubles per stage, so 8 stages reach width x 128.
    stages: list[Annotated[Int, Field(le=64)]] = Field(default=[2, 2, 2], max_length=8)
    bn: Bool = True  # vgg: BatchNorm after each conv
    stem: Literal["small", "imagenet"] = "small"  # resnet: 3x3 stride 1, or 7x7 stride 2
    maxpool: Bool = False  # resnet: the 3x3 stride-2 max-pool after an imagenet stem
    # resnet: 2x2 max-pools after these stages (1-based)
    extra_pool_after: list[Int] = Field(default=[], max_length=8)
    depth: Int = Field(default=16, ge=10, le=1000)  # wrn: total depth, 6n + 4
    widen: Int = Field(default=4, ge=1, le=32)  # wrn: width multiplier k (wrn-28-10: 10)
    # layers: the declarative net, e.g. [conv(32, 3), bn, relu, maxpool(2), flatten, linear]
    layers: list[str] = Field(default=[], max_length=1000)
    # Start from a trained net, cut and given a new head as the transfer section says: a cnnlab
    # run directory, a cnnlab checkpoint file (best.safetensors, last.ckpt), or torchvision:NAME /
    # timm:NAME with its pretrained weights. The backbone decides the architecture, so the other
    # model.* keys stay unset. None: train model.name from scratch.
    backbone: PathText | None = None

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
    name: Name = "adam"
    lr: Float = Field(default=3e-3, gt=0.0)  # peak learning rate, reached after warm-up
    weight_decay: Float = Field(default=0.0, ge=0.0)
    # Weight decay on normalisation weights and biases too; off is the usual practice (timm's
    # filter_bias_and_bn), since decaying a BatchNorm scale only fights the normalisation.
    decay_norm_and_bias: Bool = False
    # Per-group learning-rate multipliers by parameter name: a module name ("classifier"), a
    # full parameter name or a glob ("features.0.*"); the longest matching key wins.
    lr_mult: dict[str, Float] = Field(default={}, max_length=1000)
    momentum: Float = Field(default=0.9, ge=0.0, lt=1.0)  # sgd, rmsprop, muon
    nesterov: Bool = False  # sgd, muon
    dampening: Float = Field(default=0.0, ge=0.0, lt=1.0)  # sgd
    betas: tuple[Float, Float] = (0.9, 0.999)  # adam, adamw, lamb, lion
    alpha: Float = Field(default=0.99, gt=0.0, lt=1.0)  # rmsprop: squared-gradient average
    rho: Float = Field(default=0.9, gt=0.0, lt=1.0)  # adadelta: squared-gradient average
    eps: Float | None = Field(default=None, gt=0.0)  # None: each optimizer's torch default

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
                raise ValueError(
                    f"multiplier of {key[:100]!r} is {mult}; expected >= 0 (0 freezes)"
                )
        return v


class ScheduleConfig(Section):
    # Stepped per optimizer step (constant, cosine, linear, onecycle) or per epoch (step,
    # multistep, exponential, plateau); warm-up is always per step.
    name: Name = "cosine"
    # Linear ramp from 0 to optim.lr, in epochs (fractions allowed).
    warmup_epochs: Float = Field(default=0.0, ge=0.0, le=MAX_EPOCHS)
    min_lr: Float = Field(default=0.0, ge=0.0)  # floor of decaying schedules
    # Multiplicative decay: step and multistep per drop, exponential per epoch, plateau per
    # reduction. None: 0.1, except exponential 0.95.
    gamma: Float | None = Field(default=None, gt=0.0, lt=1.0)
    step_size: Epochs = 10  # step: epochs between drops
    # multistep: epochs after which the lr drops
    milestones: list[Epochs] = Field(default=[10, 15], max_length=1000)
    pct_start: Float = Field(default=0.3, gt=0.0, lt=1.0)  # onecycle: share of steps rising
    # onecycle: momentum (SGD's, RMSprop's) or beta1 (Adam's family) runs against the lr, from
    # the high end down while the lr rises and back up, as torch's OneCycleLR and fastai do.
    cycle_momentum: Bool = True
    # onecycle: (momentum at the lr's peak, at its ends)
    momentum_range: tuple[Float, Float] = (0.85, 0.95)
    monitor: Name = "val_loss"  # plateau: the per-epoch metric it watches
    mode: Literal["min", "max"] = "min"  # plateau: whether the metric should fall or rise
    # plateau: epochs without improvement per reduction
    patience: Int = Field(default=3, ge=0, le=MAX_EPOCHS)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("expected increasing epoch numbers >= 1, e.g. [10, 15]")
        return v


class EarlyStoppingConfig(Section):
    monitor: Name = "val_acc"  # any per-epoch metric; also picks the best checkpoint
    mode: Literal["max", "min"] = "max"
    patience: Epochs | None = None  # epochs without improvement; None: off
    min_delta: Float = Field(default=0.0, ge=0.0)


class TrainConfig(Section):
    epochs: Epochs = 20
    batch_size: Int = Field(default=64, ge=1, le=MAX_BATCH)  # images per step; decides memory
    # bf16/fp16: autocast (+ a loss scaler: fp16); auto: bf16 where the device multiplies it
    # natively (CUDA with bf16, a CPU with AMX), else fp32. summary.json says which ran.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # auto | cpu | cuda | cuda:N | mps; whether the device exists is checked when a run starts.
    device: str = "auto"
    # torch.manual_seed takes [-2^63, 2^64 - 1]
    seed: Int = Field(default=0, ge=-(2**63), le=2**64 - 1)
    deterministic: Bool = False  # bit-reproducible kernels (slower on GPU)
    label_smoothing: Float = Field(default=0.0, ge=0.0, lt=1.0)
    grad_clip: Float | None = Field(default=None, gt=0.0)  # max global grad norm
    # Decay of an exponential moving average of the weights, updated every optimizer step;
    # evaluation and best.safetensors use the average. None: off.
    ema: Float | None = Field(default=None, gt=0.0, lt=1.0)
    channels_last: Bool = False
    compile: Bool = False  # torch.compile the model (first steps are slow while it compiles)
    accumulate: Int = Field(default=1, ge=1, le=MAX_BATCH)  # batches whose gradients add up
    # Wall-clock budget of one `cnnlab train` invocation; the run stops at the next step, saves
    # a resumable checkpoint and ends with status time_limit. None: no limit.
    max_minutes: Float | None = Field(default=None, gt=0.0, le=1e7)  # 1e7 min: 19 years
    # Divergence guard: a logged loss above spike_factor x the running median of the recent
    # logged losses counts as divergence, like NaN/inf. None: only NaN/inf.
    spike_factor: Float | None = Field(default=10.0, gt=1.0)
    # stop: end the run (status diverged, exit 3); rollback: restore the last good checkpoint,
    # halve the learning rate and go on (at most max_rollbacks times, then stop).
    on_divergence: Literal["stop", "rollback"] = "stop"
    max_rollbacks: Int = Field(default=3, ge=1, le=1000)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    # With several processes (torchrun, --nproc): BatchNorm statistics over the whole global
    # batch (SyncBatchNorm) instead of each process's share of it. One process: no effect.
    sync_bn: Bool = False

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

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, v: str) -> str:
        if not DEVICE_PATTERN.fullmatch(v):
            raise ValueError(f"expected {DEVICES}")
        return v


class TransferConfig(Section):
    """How model.backbone becomes this run's model: input adapter -> backbone cut at `layer` ->
    pool -> head. The adapter resizes, repeats or mixes channels and re-normalises the data's
    images into what the backbone was trained on."""

    # false: the backbone's architecture with fresh random weights (the control that shows
    # what its training bought).
    pretrained: Bool = True
    # Where to cut: a module name of the backbone ("layer3", "features.7") or a row number of
    # its table in `cnnlab summary` (negative counts from the end). None: the input of its last
    # linear layer (the classifier), i.e. the features the backbone classified from.
    layer: Name | Annotated[Int, Field(ge=-10_000, le=10_000)] | None = None
    pool: Literal["avg", "max", "avgmax", "flatten"] = "avg"  # a (C, H, W) cut -> a vector
    # avg/max/avgmax: output height = width; the head's input is C x pool_size²
    pool_size: Int = Field(default=1, ge=1, le=64)
    head: Literal["linear", "mlp"] = "linear"
    # mlp: widths of its hidden layers
    hidden: list[Annotated[Int, Field(ge=1, le=MAX_BATCH)]] = Field(default=[512], max_length=16)
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)  # before each linear layer of the head
    # Frozen: backbone weights and BatchNorm statistics fixed. Frozen for the whole run with no
    # augment.train and no TTA, its features are computed once and only the head trains.
    freeze: Bool = True
    unfreeze_after: Epochs | None = None  # epochs frozen, then fine-tune all
    # Backbone lr = optim.lr x this while it trains: a pretrained net wants smaller steps than a
    # fresh head (fastai's discriminative learning rates).
    backbone_lr_mult: Float = Field(default=0.1, ge=0.0)
    # Images resized (on the device) to this square size for the backbone. None: the size a
    # cnnlab backbone was trained at; the data's own size for torchvision/timm backbones.
    input_size: Int | None = Field(default=None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)


class EvalConfig(Section):
    # Validation, test and analysis batches. 256: on the CPU, batches whose activations stay in
    # cache evaluate the default cnn 1.5x faster than 1024 (2-core EPYC); a GPU hardly cares.
    batch_size: Int = Field(default=256, ge=1, le=MAX_BATCH)


class RunConfig(Section):
    dir: PathText = RUN_DIR
    # None: "<data.name>-<model.name>"; the directory is "<stamp>-<name>", within NAME_MAX.
    name: Name | None = None


class TrackConfig(Section):
    # Also log the run to MLflow (pip install cnnlab[mlflow]): a folder ("mlruns"), a file: or
    # sqlite:/// URI, or a tracking server's URL. None: the run directory only.
    mlflow: str | None = None


class Config(Section):
    recipe: Name = "default"
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    transfer: TransferConfig = TransferConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()
    track: TrackConfig = TrackConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able data; loading it back gives an equal Config."""
        return self.model_dump(mode="json")


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
