"""Experiment specs: the one experiment language of the CLI, the Python API and the catalog.

An experiment is a base run plus named ``cases`` (a union of override sets, e.g. the
ladder's models), a ``grid`` (a product of axes), ``tune`` axes (also a product, but
the analysis keeps, per cell, the value with the best final eval loss), ``seeds`` and
``profiles`` (override sets that rescale it, e.g. ``quick``, optionally per case and
with their own tuning values). A suite names several catalog experiments. Expanding
gives fully resolved ``RunSpec``s; each hashes to its run id. Every default lives here
and nowhere else.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from optlab.catalog import catalog_path
from optlab.errors import SpecError
from optlab.models import MODEL_DEFAULTS, MODELS
from optlab.models.module import MODULES, check_factory_arguments, is_factory_path
from optlab.optim import OPTIMIZERS, RuleShell, is_import_path, resolve_import_path
from optlab.optim.decay import DECAY_NAMES
from optlab.optim.schedules import batch_sizes
from optlab.probes import PROBES


def _one_of(value: str, names, what: str) -> str:
    if value not in names:
        raise ValueError(f"unknown {what}; valid: {', '.join(names)}")
    return value


class OptionError(ValueError):
    """A spec's option that its model or optimizer would not take: the error names the
    option (``decay``), so that the one line says the field, the value, what is allowed."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.field, self.value = field, value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VoronoiTaskSpec(_Strict):
    """The Voronoi environment of Yu (2022) (see ``optlab.tasks.voronoi``)."""

    name: Literal["voronoi"] = "voronoi"
    dim: int = Field(2, ge=1)
    classes: int = Field(2, ge=2)
    rule: Literal["paper", "euclidean"] = "paper"
    seed: int = Field(42, ge=0, lt=2**32, description="NumPy's legacy generator takes 32 bits")
    n_eval: int = Field(10_000, ge=1)
    n_test: int = Field(10_000, ge=1)
    n_train: int = Field(10_000, ge=1, description="training-set size in dataset mode")


class MgToyTaskSpec(_Strict):
    """The 2023 essay's memorize-or-generalize toy (see ``optlab.tasks.mg_toy``)."""

    name: Literal["mg_toy"]
    samples: int = Field(100, ge=1, description="n: inputs [e_i, 1], i = 1..n, targets 1")


class DigitsTaskSpec(_Strict):
    """scikit-learn's bundled 8×8 digits (see ``optlab.tasks.digits``)."""

    name: Literal["digits"]
    seed: int = Field(
        0, ge=0, lt=2**32, description="fixes the stratified train / eval / test split"
    )
    eval_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)


class CharLMTaskSpec(_Strict):
    """Character-level language modelling of Python's own source (see ``optlab.tasks.charlm``)."""

    name: Literal["charlm"]
    block_size: int = Field(128, ge=2, description="characters of context per window")
    eval_chars: int = Field(65_536, ge=1)
    test_chars: int = Field(65_536, ge=1)
    sha256: str | None = Field(None, description="the text's expected hash; None: any")
    allow_other_text: bool = Field(False, description="train even when the hash differs")


TASK_SPECS = (VoronoiTaskSpec, MgToyTaskSpec, DigitsTaskSpec, CharLMTaskSpec)


def _tag(spec: type[BaseModel]) -> str:
    return get_args(spec.model_fields["name"].annotation)[0]


TASK_NAMES = tuple(_tag(t) for t in TASK_SPECS)


def _task_name(value: Any) -> str:
    """The task a table names; a table without a name is the voronoi task's, as before tasks."""
    name = value.get("name", "voronoi") if isinstance(value, dict) else value.name
    return name if name in TASK_NAMES else None  # None: pydantic's "does not match" error


TaskSpec = Annotated[
    Annotated[VoronoiTaskSpec, Tag("voronoi")]
    | Annotated[MgToyTaskSpec, Tag("mg_toy")]
    | Annotated[DigitsTaskSpec, Tag("digits")]
    | Annotated[CharLMTaskSpec, Tag("charlm")],
    Discriminator(_task_name),
]


class ModelSpec(_Strict):
    """A model: a hand-stacked one (the ladder's rungs, the final model, the toy's linear
    model) with its options here, or an ``nn.Module`` factory (built in, or named by import
    path ``package.module:factory``) with its arguments in ``kwargs``."""

    name: str = "final"
    kwargs: dict[str, Any] = Field(default_factory=dict, description="an nn.Module factory's")
    hidden_dim: int | None = Field(None, ge=1, description="None: the model's own default")
    nonlinearity: Literal["relu", "swish", "gelu"] = "relu"
    init: Literal["uniform", "normal"] = "uniform"
    layernorm_normalization: bool = False
    activation: Literal["silu", "abs"] = "silu"

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name in MODELS or name in MODULES or is_factory_path(name):
            return name
        raise ValueError(
            f"unknown model; valid: {', '.join([*MODELS, *MODULES])}, "
            "or an nn.Module factory as package.module:function"
        )

    @model_validator(mode="after")
    def _options_the_model_reads(self) -> ModelSpec:
        """An option set away from its default that the model would not read is an error,
        not a silent no-op (it would still change the run id)."""
        reads = MODEL_OPTIONS.get(self.name, ("kwargs",))
        default = ModelSpec.model_construct()
        for field in ("kwargs", *HAND_OPTIONS):
            value = getattr(self, field)
            if field in reads or value == getattr(default, field):
                continue
            if self.name not in MODELS:
                raise OptionError(
                    field,
                    value,
                    f"{self.name} is an nn.Module factory: its arguments go in "
                    "model.kwargs (the hand-written models' options are not read)",
                )
            readers = [m for m, options in MODEL_OPTIONS.items() if field in options]
            who = ", ".join(readers) if readers else "the nn.Module factories"
            raise OptionError(
                field,
                value,
                f"{self.name} does not read it (it reads "
                f"{', '.join(reads) or 'no model option'}); model.{field} is read by {who}",
            )
        if self.name in MODELS:
            if self.hidden_dim is None and MODEL_DEFAULTS[self.name] is not None:
                object.__setattr__(self, "hidden_dim", MODEL_DEFAULTS[self.name])
            return self
        check_factory_arguments(self.name, self.kwargs)
        return self


HAND_OPTIONS = ("hidden_dim", "nonlinearity", "init", "layernorm_normalization", "activation")

# The ModelSpec fields each hand-written model reads (``optlab.models.MODELS`` builds them
# from these and no others); an nn.Module factory reads model.kwargs alone.
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "exact": (),
    "center_labels": (),
    "learn_offset": (),
    "offset_scale": (),
    "abs_relu": (),
    "plus_minus": (),
    "centers": ("hidden_dim",),
    "generalized": ("hidden_dim", "activation"),
    "final": ("hidden_dim", "nonlinearity", "init", "layernorm_normalization"),
    "linear": (),
}


KFAC_FIELDS = ("curvature", "damping", "inverse_every", "factor_decay")  # read by kfac alone


class ScheduleSpec(_Strict):
    """A schedule as a factor of its base value (see ``optlab.optim.schedules``)."""

    kind: Literal["constant", "warmup", "cosine", "step", "lr_equivalent", "li_arora"] = "constant"
    warmup: int = Field(0, ge=0, description="linear warmup steps (warmup, cosine, step)")
    milestones: list[PositiveFloat] = Field(
        default_factory=list, description="step: where γ applies; < 1: a fraction of the steps"
    )
    gamma: float = Field(0.1, gt=0, description="step: the factor at each milestone")
    final: float = Field(0.0, ge=0, description="cosine: the factor it ends at")
    steps: int | None = Field(None, ge=1, description="cosine: horizon T; None: train.steps")
    lr_decay: float = Field(
        0.0, ge=0, lt=1, description="li_arora: the product ηλ of the weight decay it replaces"
    )
    momentum: float = Field(0.0, ge=0, lt=1, description="li_arora: the optimizer's momentum γ")

    @model_validator(mode="after")
    def _li_arora_fields(self) -> ScheduleSpec:
        """lr_decay and momentum are li_arora's alone, and it needs a decay to replace."""
        if self.kind == "li_arora" and self.lr_decay == 0:
            raise OptionError(
                "lr_decay", 0, "li_arora needs lr_decay = ηλ > 0, the decay it replaces"
            )
        for field in ("lr_decay", "momentum"):
            if self.kind != "li_arora" and getattr(self, field) != 0:
                raise OptionError(
                    field, getattr(self, field), f"only kind 'li_arora' reads it, not {self.kind!r}"
                )
        return self


class OptimizerSpec(_Strict):
    """An update rule and its hyperparameters; ``name`` may be a torch.optim import path.

    Each rule reads the fields it needs (``optlab.optim.OPTIMIZERS``); the decay options
    apply to every rule with decoupled decay; a graft's children inherit every field but
    their own (``child``).
    """

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, ge=0)
    weight_decay: float = Field(1e-2, ge=0)
    decay: str = "l2"
    decay_beta: float = Field(0.99, ge=0, lt=1, description="EMA rate of grad_scaled, sign_ema")
    decay_strength: float = Field(1.0, ge=0, description="grad_scaled's γ")
    decay_p: float = Field(0.5, ge=0, le=1, description="dropout: fraction decayed per step")
    decay_groups: dict[str, float] = Field(
        default_factory=dict, description="name pattern -> λ; first match wins"
    )
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    alpha: float = Field(0.99, ge=0, lt=1)
    centered: bool = False
    bias_correction: Literal["none", "standard", "exact"] = "standard"
    blocks: Literal["tensor", "row", "column", "block"] = "tensor"
    block_size: int = Field(64, ge=1, description="blocks = block: entries per block")
    magnitude: str | dict[str, Any] | None = Field(None, description="graft: the step size's rule")
    direction: str | dict[str, Any] | None = Field(None, description="graft: the direction's rule")
    graft: Literal["tensor", "global"] = "tensor"
    curvature: Literal["fisher", "gauss_newton", "empirical"] = Field(
        "fisher", description="kfac: what its factor G is of (optlab.optim.kfac)"
    )
    damping: float = Field(1e-3, gt=0, description="kfac: Tikhonov γ, split by π")
    inverse_every: int = Field(10, ge=1, description="kfac: steps between inverse refreshes")
    factor_decay: float = Field(0.95, ge=0, lt=1, description="kfac: the factors' running average")
    lr_schedule: ScheduleSpec = ScheduleSpec()
    eps_schedule: ScheduleSpec = ScheduleSpec()
    kwargs: dict[str, Any] = Field(default_factory=dict, description="for import-path optimizers")

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name not in OPTIMIZERS and not is_import_path(name):
            raise ValueError(
                f"unknown optimizer; valid: {', '.join(OPTIMIZERS)}, "
                "or the import path of a torch.optim.Optimizer (e.g. torch.optim.Adagrad)"
            )
        return name

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas

    @field_validator("decay")
    @classmethod
    def _known_decay(cls, decay: str) -> str:
        return _one_of(decay, (*DECAY_NAMES, "coupled"), "decay rule")

    @field_validator("decay_groups")
    @classmethod
    def _nonnegative_group_decay(cls, groups: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in groups.values()):
            raise ValueError("each group's weight decay must be >= 0")
        return groups

    @field_validator("magnitude", "direction")
    @classmethod
    def _graft_child(cls, value: str | dict | None) -> str | dict | None:
        if value is None:
            return value
        fields = value if isinstance(value, dict) else {"name": value}
        children = [n for n in OPTIMIZERS if n != "graft"]
        if fields.get("name") not in children:
            raise ValueError(f"a graft's child is one of {', '.join(children)}")
        try:
            OptimizerSpec.model_validate(fields)
        except ValidationError as err:
            raise ValueError(_format_error(err, "child", OptimizerSpec)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OptimizerSpec:
        if self.name == "graft" and (self.magnitude is None or self.direction is None):
            raise ValueError("graft needs magnitude and direction (rule names or tables)")
        if self.lr_schedule.kind == "lr_equivalent":
            raise ValueError("lr_schedule.kind lr_equivalent is an eps_schedule kind")
        if self.eps_schedule.kind == "lr_equivalent":
            if self.name not in ("adam", "adamw"):
                raise ValueError("eps_schedule lr_equivalent is for adam and adamw")
            s = self.lr_schedule
            if (s.kind == "cosine" and s.final == 0) or (s.kind == "step" and s.gamma == 0):
                raise ValueError("eps_schedule lr_equivalent needs a learning rate that stays > 0")
        if self.decay == "coupled" and self.name != "kfac":
            raise OptionError(
                "decay",
                "coupled",
                "λθ in the gradient is kfac's option; sgd, adam "
                "and rmsprop always couple it, the others decouple it",
            )
        if self.name != "kfac":
            default = OptimizerSpec.model_construct()
            for field in KFAC_FIELDS:
                if getattr(self, field) != getattr(default, field):
                    raise OptionError(
                        field, getattr(self, field), f"only kfac reads it, not {self.name}"
                    )
        self._read_by_the_rule()
        return self

    def _read_by_the_rule(self) -> None:
        """A decay variant or an ε schedule that the rule would not read is an error, not a
        silent no-op (a graft's children are checked with what they inherit)."""
        if self.name not in OPTIMIZERS:
            if self.eps_schedule.kind != "constant":
                raise ValueError("eps_schedule is for optlab's rules; use optim.LambdaEps")
            self.torch_arguments()
            return
        specs = [self]
        if self.name == "graft":
            specs = []
            for role in ("magnitude", "direction"):
                try:
                    specs.append(self.child(role))
                except ValidationError as err:
                    msg = err.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"{role}, with what it inherits: {msg}") from None
        reads = [OPTIMIZERS[s.name].hyper(s) for s in specs]
        if self.eps_schedule.kind != "constant" and not any("eps" in r for r in reads):
            raise ValueError(f"{self.name} has no eps to schedule")
        for spec, read in zip(specs, reads, strict=True):
            if spec.decay != "l2" and "decay" not in read:
                default = OptimizerSpec.model_construct()  # defaults, without validation
                decoupled = [
                    n
                    for n in OPTIMIZERS
                    if n != "graft" and "decay" in OPTIMIZERS[n].hyper(default)
                ]
                raise ValueError(
                    f"{spec.name} adds λθ to its gradient; decay {spec.decay!r} is for the "
                    f"rules with decoupled decay: {', '.join(decoupled)}"
                )

    def torch_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the torch.optim class ``name`` imports: ``lr``, each field
        set away from its default (so each one the run id counts) that the class's
        constructor takes by that name (betas, eps, weight_decay, momentum, alpha, nesterov,
        centered, …), and ``kwargs``. A field at its default leaves the class's own default
        (weight_decay 1e-2 here, 0 in most of torch.optim: set kwargs.weight_decay for it). A
        field set that the class does not take (decay, decay_groups, bias_correction, …),
        an argument given twice, or arguments the class refuses raise ``OptionError``."""
        cls = resolve_import_path(self.name)
        parameters = inspect.signature(cls).parameters
        named = [
            n
            for n, p in parameters.items()
            if n != "params" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        default = OptimizerSpec.model_construct()
        arguments: dict[str, Any] = {"lr": self.lr}
        for field in OptimizerSpec.model_fields:
            value = getattr(self, field)
            if field in ENGINE_FIELDS or value == getattr(default, field):
                continue
            if field not in named:
                raise OptionError(
                    field,
                    value,
                    f"{self.name} does not take {field}; it takes {', '.join(named)}",
                )
            arguments[field] = value
        for key, value in self.kwargs.items():
            if key in arguments:
                where = "the learning rate is optimizer.lr" if key == "lr" else "set one of them"
                raise OptionError(f"kwargs.{key}", value, f"optimizer.{key} is set too: {where}")
            if key not in named and not any_keyword:
                raise OptionError(f"kwargs.{key}", value, f"{self.name} takes {', '.join(named)}")
            arguments[key] = value
        if refusal := _torch_refuses(self.name, arguments):
            raise OptionError("name", self.name, f"with {arguments}: {refusal}")
        return arguments

    def child(self, role: str) -> OptimizerSpec:
        """A graft's ``magnitude`` or ``direction`` rule: this spec's fields, its own over them."""
        value = getattr(self, role)
        own = value if isinstance(value, dict) else {"name": value}
        inherited = self.model_dump(
            exclude={
                "magnitude",
                "direction",
                "graft",
                "decay_groups",
                "kwargs",
                "lr_schedule",
                "eps_schedule",
            }
        )
        return OptimizerSpec.model_validate({**inherited, **own})


# an import-path optimizer's fields that the engine reads, not the class: lr is always passed,
# lr_schedule scales it at each step, kwargs are passed as they are
ENGINE_FIELDS = ("name", "lr", "lr_schedule", "kwargs")


def _torch_refuses(name: str, arguments: dict[str, Any]) -> str | None:
    """Why the torch.optim class ``name`` refuses ``arguments``, or None: it is constructed
    over one tensor, as it will be over the run's parameters (once per distinct call)."""
    key = json.dumps([name, arguments], sort_keys=True, default=repr)
    if key not in _REFUSALS:
        try:
            resolve_import_path(name)([torch.zeros(1, requires_grad=True)], **arguments)
            _REFUSALS[key] = None
        except Exception as err:  # a user's optimizer may raise anything: one line
            _REFUSALS[key] = f"{type(err).__name__}: {err}"
    return _REFUSALS[key]


_REFUSALS: dict[str, str | None] = {}


class TrainSpec(_Strict):
    """The training loop: length, batch, cadence, data mode, training seed, device, precision."""

    steps: int = Field(10_000, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_every: int = Field(50, ge=1)
    batch_milestones: list[PositiveFloat] = Field(
        default_factory=list,
        description="steps after which the batch grows (η/B kept fixed); < 1: a fraction of steps",
    )
    batch_factor: int = Field(
        2,
        ge=1,
        description="the batch's growth at each milestone, or when the controller's test fails",
    )
    batch_controller: Literal["none", "norm_test", "inner_product"] = Field(
        "none",
        description="grow each run's batch when a variance test on its own batch fails "
        "(optlab.engine.batch_control): norm_test (Byrd et al. 2012, θ) or inner_product "
        "(Bollapragada et al. 2018, ν); needs a fixed training set (data 'dataset')",
    )
    batch_theta: float | None = Field(
        None, gt=0, description="norm_test: θ; the batch grows when tr Σ/B > θ²‖ḡ‖²"
    )
    batch_nu: float | None = Field(
        None, gt=0, description="inner_product: ν; the batch grows when Var(g_iᵀḡ)/B > ν²‖ḡ‖⁴"
    )
    batch_max: int | None = Field(
        None, ge=1, description="the controller's largest batch; None: the training set's size"
    )
    batch_every: int | None = Field(
        None, ge=1, description="steps between the controller's tests; None: eval_every"
    )
    batch_lr: Literal["scale", "hold"] = Field(
        "scale",
        description="when the batch grows: scale η by B_t/B_0 (AdaBatch keeps η/B fixed) or hold it",
    )
    data: Literal["stream", "dataset"] | None = Field(
        None, description="None: stream where the task draws fresh points (voronoi), else dataset"
    )
    seed: int = Field(42, ge=0, lt=2**63, description="initialisation and sampling")
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = Field(
        False,
        description="compile the step's forward and loss with torch.compile (Inductor): "
        "faster ladder-rung steps after seconds of compiling per shape (the final model runs "
        "slower); equal to eager up to rounding",
    )
    project: Literal["none", "unit_norm"] = Field(
        "none",
        description="unit_norm: each scale-invariant weight projected to the unit sphere at "
        "init and after every step (optlab.engine.norms)",
    )
    graft_norms: dict[str, Any] = Field(
        default_factory=dict,
        description="optimizer fields of a partner run (this run otherwise, e.g. its weight "
        "decay) whose scale-invariant weights' norms this run takes after every step",
    )
    flush_subnormals: bool = Field(
        True,
        description="flush subnormal floats to zero on CPU (torch.set_flush_denormal): x86 "
        "computes them many times slower, and Adam's second moments of tiny gradients or "
        "decayed activations fall there after a while (a run then halves its speed); the "
        "paper suite's numbers are the same either way (README, 'Speed')",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: the forward's matmuls autocast to bfloat16 (torch.autocast), in "
        "training and eval; parameters, optimizer state and the loss stay float32",
    )
    force_precision: bool = Field(
        False,
        description="train bf16 on a device without native bfloat16 (emulated there: "
        "slower than fp32)",
    )

    @model_validator(mode="after")
    def _precision(self) -> TrainSpec:
        """bf16 autocasts float32 matmuls; forcing is read only for bf16."""
        if self.precision == "bf16" and self.dtype != "float32":
            raise OptionError(
                "precision",
                "bf16",
                f"it autocasts float32 matmuls, and train.dtype is {self.dtype!r}: use 'fp32', "
                "or train.dtype = 'float32'",
            )
        if self.force_precision and self.precision != "bf16":
            raise OptionError(
                "force_precision",
                True,
                "it forces bf16 on a device without native bfloat16, and train.precision is "
                f"{self.precision!r}: set it beside train.precision = 'bf16' only",
            )
        return self

    @model_validator(mode="after")
    def _one_batch_policy(self) -> TrainSpec:
        """A fixed batch, a schedule (milestones) or a controller; each controller reads its
        own threshold, and no setting is left that nothing reads."""
        control = self.batch_controller
        own = {"norm_test": "batch_theta", "inner_product": "batch_nu"}
        for kind, field in own.items():
            value = getattr(self, field)
            if control == kind and value is None:
                raise OptionError(field, None, f"batch_controller {kind!r} needs its threshold")
            if control != kind and value is not None:
                raise OptionError(
                    field, value, f"only batch_controller {kind!r} reads it, not {control!r}"
                )
        for field in ("batch_max", "batch_every"):
            if control == "none" and getattr(self, field) is not None:
                raise OptionError(
                    field, getattr(self, field), "only a batch_controller reads it (none is set)"
                )
        if control != "none" and self.batch_milestones:
            raise OptionError(
                "batch_milestones",
                self.batch_milestones,
                f"batch_controller {control!r} sets the batch; milestones are a fixed schedule",
            )
        if control != "none" and self.batch_size < 2:
            raise OptionError(
                "batch_size", self.batch_size, "a controller's tests need a variance: 2 or more"
            )
        if control != "none" and self.batch_factor < 2:
            raise OptionError("batch_factor", self.batch_factor, "a controller grows by 2 or more")
        if self.batch_max is not None and self.batch_max < self.batch_size:
            raise OptionError("batch_max", self.batch_max, f"below batch_size {self.batch_size}")
        if self.batch_lr != "scale" and control == "none" and not self.batch_milestones:
            raise OptionError(
                "batch_lr", self.batch_lr, "the batch never grows (no milestones, no controller)"
            )
        return self

    @property
    def batch_sizes(self) -> list[int]:
        """B_t for t = 1..steps (``optlab.optim.schedules.batch_sizes``)."""
        return batch_sizes(self.batch_size, self.batch_milestones, self.batch_factor, self.steps)


class ProbeSpec(_Strict):
    """What is recorded beside loss and accuracy, at the eval cadence (see ``optlab.probes``).

    ``record`` names probes; the default set is cheap enough for every run. Probes that
    write arrays (snapshots, predictions) run every ``array_every``-th eval step; the
    ``grad_stats`` probe at step 0, every ``grad_every`` steps and at the last.
    """

    record: tuple[str, ...] = ("params", "outputs", "scalars")
    array_every: int = Field(1, ge=1, description="heavy probes: every n-th eval step")
    grad_every: int | None = Field(
        None, ge=1, description="grad_stats: every n steps; None: the eval cadence"
    )

    @field_validator("record")
    @classmethod
    def _known_probes(cls, record: tuple[str, ...]) -> tuple[str, ...]:
        for name in record:
            _one_of(name, PROBES, "probe")
        return tuple(dict.fromkeys(record))

    @model_validator(mode="after")
    def _grad_every_read(self) -> ProbeSpec:
        if self.grad_every is not None and "grad_stats" not in self.record:
            raise OptionError(
                "grad_every", self.grad_every, "only the grad_stats probe reads it; record it"
            )
        return self


class RunSpec(_Strict):
    """One fully resolved run. Its hash (without the device) is the run id."""

    task: TaskSpec = VoronoiTaskSpec()
    model: ModelSpec = ModelSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    train: TrainSpec = TrainSpec()
    probes: ProbeSpec = ProbeSpec()

    def with_train(self, **fields: Any) -> RunSpec:
        """This run with some training settings replaced (seed, steps, compile, …)."""
        return self.model_copy(update={"train": self.train.model_copy(update=fields)})

    @model_validator(mode="after")
    def _data_mode(self) -> RunSpec:
        streams = self.task.name == "voronoi"
        if self.train.data is None:
            train = self.train.model_copy(update={"data": "stream" if streams else "dataset"})
            object.__setattr__(self, "train", train)
        elif self.train.data == "stream" and not streams:
            raise ValueError(
                f"train.data: 'stream' draws fresh points every step, which only the voronoi "
                f"task can; {self.task.name} has a fixed training set: use 'dataset'"
            )
        return self

    @model_validator(mode="after")
    def _controller_needs(self) -> RunSpec:
        """A batch controller draws each run's batch from its own pass over a fixed training
        set, and steps an optimizer that takes one batch per run (not K-FAC's curvature)."""
        control = self.train.batch_controller
        if control != "none" and self.train.data != "dataset":
            raise OptionError(
                "train.batch_controller",
                control,
                "needs train.data 'dataset' (stream mode draws Σ B_t points before training, "
                "and a controller's B_t are not known then)",
            )
        if control != "none" and self.optimizer.name == "kfac":
            raise OptionError(
                "train.batch_controller", control, "kfac's curvature step takes one batch per stack"
            )
        return self

    @model_validator(mode="after")
    def _graft_partner(self) -> RunSpec:
        """``train.graft_norms`` must name optimizer fields that make a valid partner."""
        if self.train.graft_norms:
            try:
                OptimizerSpec.model_validate(
                    {**self.optimizer.model_dump(), **self.train.graft_norms}
                )
            except ValidationError as err:
                problem = err.errors()[0]
                field = ".".join(str(x) for x in problem["loc"])
                raise ValueError(
                    f"train.graft_norms: the partner's optimizer.{field}: {problem['msg']}"
                ) from None
        return self

    @property
    def run_id(self) -> str:
        payload = self.model_dump(mode="json")
        # where and how a run trains does not change what it is, only its rounding: the
        # numeric path says how (bf16 rounds the matmuls' inputs to 8 bits of mantissa)
        for how in ("device", "compile", "flush_subnormals", "precision", "force_precision"):
            del payload["train"][how]
        # fields added after stores existed count only when set, so old run ids still hold
        for *tables, key in ADDED_FIELDS:
            parent, default = payload, default_run()
            for table in tables:
                parent, default = parent[table], getattr(default, table)
            if parent[key] == getattr(default, key):
                del parent[key]
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def n_train(self) -> int:
        """Training points drawn (voronoi): one fresh batch per step in stream mode, as the
        paper, else the dataset's size."""
        t = self.train
        return sum(t.batch_sizes) if t.data == "stream" else self.task.n_train


@functools.cache
def default_run() -> RunSpec:
    """A run of every default, built once: run ids read it for each field added later, and
    building a spec costs a sweep's planning seconds over hundreds of runs."""
    return RunSpec()


ADDED_FIELDS = (
    ("model", "kwargs"),
    *(("optimizer", field) for field in KFAC_FIELDS),
    ("train", "dtype"),
    ("train", "project"),
    ("train", "graft_norms"),
    ("probes", "grad_every"),
    *(
        ("train", field)
        for field in (
            "batch_controller",
            "batch_theta",
            "batch_nu",
            "batch_max",
            "batch_every",
            "batch_lr",
        )
    ),
    *(
        ("optimizer", schedule, key)
        for schedule in ("lr_schedule", "eps_schedule")
        for key in ("lr_decay", "momentum")
    ),
)


class ExperimentSpec(_Strict):
    """A base run, its cases, grid, seeds and profiles."""

    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="RunSpec fields, as written")
    cases: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    tune: dict[str, list[Any]] = Field(
        default_factory=dict, description="axes over which each cell keeps its best value"
    )
    baseline: str | None = Field(None, description="the case every other case is compared to")
    seeds: list[int] = Field(default_factory=lambda: [TrainSpec().seed], min_length=1)
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='overrides; a "cases" table holds per-case ones, a "tune" table new values',
    )

    def profile(self, name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict]:
        """A profile's (overrides, per-case overrides, tuning axes); ``paper`` is the spec."""
        if name == "paper":
            return {}, {}, self.tune
        tree = dict(self.profiles[name])
        cases, tune = tree.pop("cases", {}), tree.pop("tune", {})
        tree.pop("seeds", None)
        return tree, cases, {**self.tune, **tune}

    def seeds_for(self, profile: str) -> list[int]:
        """The training seeds a profile runs by default: its own ``seeds`` (as many as its
        claims need to be decided, where that is affordable at its scale), else the spec's."""
        return list(self.profiles.get(profile, {}).get("seeds", self.seeds))


class PlannedRun(BaseModel):
    """A run of an experiment: its spec, its id, and the labels that place it in the sweep."""

    model_config = ConfigDict(frozen=True)
    experiment: str
    case: str
    spec: RunSpec

    @property
    def run_id(self) -> str:
        return self.spec.run_id


# ---- overrides ---------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as TOML (numbers, booleans, arrays), else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set: {text!r} is not key=value (e.g. optimizer.lr=3e-3)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The spec models a field holds: itself, or each member of a union of them (tasks)."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return (
        [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []
    )


def _valid_keys(model: type[BaseModel] = RunSpec, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        members = _members(field.annotation)
        if not members:
            keys.append(f"{prefix}{name}")
            continue
        if prefix:  # a nested table may also be set whole, e.g. optimizer.lr_schedule
            keys.append(f"{prefix}{name}")
        for sub in members:
            keys += [k for k in _valid_keys(sub, f"{prefix}{name}.") if k not in keys]
    return keys


RUN_KEYS = tuple(_valid_keys())


# dict fields whose entries may be set one by one: --set model.kwargs.width=64
OPEN_TABLES = ("model.kwargs", "optimizer.kwargs")


def _set_path(tree: dict, key: str, value: Any) -> None:
    open_table = any(key.startswith(f"{t}.") and len(key) > len(t) + 1 for t in OPEN_TABLES)
    if key not in RUN_KEYS and not open_table:
        raise SpecError(f"unknown key {key!r}; valid keys: {', '.join(RUN_KEYS)}")
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _apply(run: dict, overrides: dict[str, Any]) -> dict:
    run = copy.deepcopy(run)
    for key, value in overrides.items():
        _set_path(run, key, value)
    return run


def _format_error(err: ValidationError, context: str, model: type[BaseModel] | None = None) -> str:
    """One line: the field, the value, what is allowed (for an unknown field: the valid ones)."""
    first = err.errors()[0]
    path = tuple(p for i, p in enumerate(first["loc"]) if not _is_tag(first["loc"], i))
    loc = ".".join(str(p) for p in path) or context
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        given = first.get("input")
        tag = given.get("name") if isinstance(given, dict) else given
        return f"{loc}.name: {tag!r} is not a task; valid: {', '.join(TASK_NAMES)}"
    if first["type"] == "extra_forbidden" and model is not None:
        owner = _model_at(model, first["loc"][:-1])
        if owner is not None:
            return f"{loc}: unknown option; valid: {', '.join(owner.model_fields)}"
    msg = first["msg"].removeprefix("Value error, ")
    error = first.get("ctx", {}).get("error")
    if isinstance(error, OptionError):  # a run's own check names its field in full
        field = f"{loc}.{error.field}" if path else error.field
        return f"{field}: {error.value!r} is not allowed: {msg}"
    return f"{loc}: {first.get('input')!r} is not allowed: {msg}"


def _is_tag(loc: tuple, i: int) -> bool:
    """Whether part i of an error path is the tag pydantic inserts after a union (task)."""
    return i > 0 and loc[i - 1] == "task" and loc[i] in TASK_NAMES


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The spec model that the field path ``path`` leads to from ``model``, if any."""
    for i, part in enumerate(path):
        if _is_tag(path, i):
            continue
        field = model.model_fields.get(str(part))
        members = _members(field.annotation) if field else []
        if _is_tag(path, i + 1):
            members = [m for m in members if _tag(m) == path[i + 1]]
        if len(members) != 1:
            return None
        model = members[0]
    return model


def validate_run(tree: dict) -> RunSpec:
    try:
        return RunSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_format_error(err, "run", RunSpec)) from None


# ---- loading and expansion ---------------------------------------------------------------


def _read_tree(source: str | Path | dict) -> dict:
    """The TOML tree of a file, a catalog name, or the dict itself (a folder named like a
    catalog experiment, e.g. ``ladder/`` of results, leaves the name the catalog's)."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.suffix == ".toml" or path.is_file():
        if not path.exists():
            raise SpecError(f"experiment file {str(path)!r} does not exist")
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise SpecError(f"experiment file {str(path)!r} is not text (TOML is UTF-8)") from None
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"experiment file {str(path)!r} is not valid TOML: {err}") from None
    return tomllib.loads(catalog_path(str(source)).read_text())


def load_experiment(source: str | Path | dict) -> ExperimentSpec:
    """An experiment from a TOML file, a catalog name, or a dict, validated."""
    tree = _read_tree(source)
    try:
        spec = ExperimentSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_format_error(err, "experiment")) from None
    if spec.baseline is not None and spec.baseline not in spec.cases:
        raise SpecError(
            f"baseline: {spec.baseline!r} is not a case; valid: {', '.join(spec.cases)}"
        )
    for name in ("paper", *spec.profiles):
        seeds = spec.profiles.get(name, {}).get("seeds", spec.seeds)
        if not (isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds)):
            raise SpecError(f"profiles.{name}.seeds: {seeds!r} is not allowed: a list of ints")
        for seed in seeds:
            validate_run({"train": {"seed": seed}})
        overrides, per_case, tune = spec.profile(name)
        if unknown := sorted(set(per_case) - set(spec.cases)):
            raise SpecError(
                f"profiles.{name}.cases: {unknown[0]!r} is not a case; "
                f"valid: {', '.join(spec.cases)}"
            )
        for key in [*spec.grid, *tune]:
            _set_path({}, key, None)
        base = _apply(spec.base, overrides)
        for case, case_overrides in (spec.cases or {"base": {}}).items():
            validate_run(_apply(_apply(base, case_overrides), per_case.get(case, {})))
    return spec


def load_suite(source: str | Path | dict) -> list[ExperimentSpec]:
    """The experiments a catalog suite names (``suite = [...]``), or the one experiment."""
    tree = _read_tree(source)
    if "suite" not in tree:
        return [load_experiment(tree)]
    return [load_experiment(name) for name in tree["suite"]]


def expand(
    spec: ExperimentSpec,
    overrides: dict[str, Any] | None = None,
    profile: str = "paper",
    seeds: list[int] | None = None,
) -> list[PlannedRun]:
    """Every run: base ← profile ← case ← profile's case ← grid ← tune ← overrides, per seed."""
    if profile != "paper" and profile not in spec.profiles:
        valid = ", ".join(["paper", *spec.profiles])
        raise SpecError(
            f"--profile: experiment {spec.name!r} has no {profile!r} profile; valid: {valid}"
        )
    profile_overrides, per_case, tune = spec.profile(profile)
    base = _apply(spec.base, profile_overrides)
    axes = {**spec.grid, **tune}
    runs: list[PlannedRun] = []
    for case, case_overrides in (spec.cases or {"base": {}}).items():
        case_tree = _apply(_apply(base, case_overrides), per_case.get(case, {}))
        for cell in itertools.product(*axes.values()):
            tree = _apply(case_tree, dict(zip(axes, cell, strict=True)))
            tree = _apply(tree, overrides or {})
            for seed in seeds or spec.seeds_for(profile):
                run = validate_run(_apply(tree, {"train.seed": seed}))
                runs.append(PlannedRun(experiment=spec.name, case=case, spec=run))
    return runs


def overridden_note(
    spec: ExperimentSpec, overrides: dict[str, Any], profile: str, runs: list[PlannedRun]
) -> str | None:
    """One line when ``overrides`` (``--set``) replace what the experiment's cases (or its
    grid's axes) set, so that its rows no longer differ as their names say, and how many
    distinct runs remain when some became the same run; None when none is replaced."""
    _, per_case, tune = spec.profile(profile)
    notes = []
    for key, value in overrides.items():
        cases = [
            case
            for case, own in spec.cases.items()
            if any(k == key or k.startswith(f"{key}.") for k in [*own, *per_case.get(case, {})])
        ]
        if cases:
            now = "train the same model" if key == "model.name" else f"share {key}={value}"
            notes.append(
                f"--set {key}={value} overrides what cases {', '.join(cases)} set: they now {now}"
            )
        if key in {**spec.grid, **tune}:
            notes.append(f"--set {key}={value} replaces the values of the grid axis {key}")
    if not notes:
        return None
    seeds = len({r.spec.train.seed for r in runs}) or 1
    distinct = len({r.run_id for r in runs}) // seeds
    if distinct < len(runs) // seeds:
        rows = (
            f"{len(spec.cases)} cases"
            if len(runs) // seeds == len(spec.cases)
            else f"{len(runs) // seeds} runs"
        )
        notes[-1] += f" ({rows} → {distinct} distinct run{'s' * (distinct != 1)} per seed)"
    return "; ".join(notes)


def make_optimizer(
    params: Iterable, name: str, steps: int | None = None, seed: int = 0, **fields
) -> RuleShell:
    """Any optlab rule as a torch.optim.Optimizer, from the fields of an ``OptimizerSpec``
    (validated there: an unknown rule or option raises ``SpecError`` naming the valid ones):

    ``make_optimizer(model.parameters(), "graft", magnitude="adamw", direction="sgd", lr=1e-2)``
    """
    try:
        spec = OptimizerSpec.model_validate({"name": name, **fields})
    except ValidationError as err:
        raise SpecError(_format_error(err, "optimizer", OptimizerSpec)) from None
    if spec.name not in OPTIMIZERS:
        raise SpecError(f"name: {name!r} is a torch.optim import path; construct it directly")
    if spec.name == "kfac":
        raise SpecError(
            "name: kfac needs each layer's inputs and output gradients, which only "
            "optlab's engine records; train it with optlab run"
        )
    return RuleShell(params, spec, OPTIMIZERS[spec.name], steps, seed)
