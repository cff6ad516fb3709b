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
import hashlib
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from optlab.models import MODEL_DEFAULTS, MODELS
from optlab.optim import OPTIMIZERS, is_import_path
from optlab.optim.decay import DECAYS


class SpecError(ValueError):
    """A spec that cannot run: its message names the field, the value and what is allowed."""


def _one_of(value: str, names, what: str) -> str:
    if value not in names:
        raise ValueError(f"unknown {what}; valid: {', '.join(names)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    """The Voronoi environment (see ``optlab.tasks.voronoi``)."""

    name: Literal["voronoi"] = "voronoi"
    dim: int = Field(2, ge=1)
    classes: int = Field(2, ge=2)
    rule: Literal["paper", "euclidean"] = "paper"
    seed: int = 42
    n_eval: int = Field(10_000, ge=1)
    n_test: int = Field(10_000, ge=1)
    n_train: int = Field(10_000, ge=1, description="training-set size in dataset mode")


class ModelSpec(_Strict):
    """Which model of the ladder, and the final model's options."""

    name: str = "final"
    hidden_dim: int | None = Field(None, ge=1, description="None: the model's own default")
    nonlinearity: Literal["relu", "swish", "gelu"] = "relu"
    init: Literal["uniform", "normal"] = "uniform"
    layernorm_normalization: bool = False
    activation: Literal["silu", "abs"] = "silu"

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        return _one_of(name, MODELS, "model")

    @model_validator(mode="after")
    def _resolve_hidden_dim(self) -> ModelSpec:
        if self.hidden_dim is None and MODEL_DEFAULTS[self.name] is not None:
            object.__setattr__(self, "hidden_dim", MODEL_DEFAULTS[self.name])
        return self


class OptimizerSpec(_Strict):
    """An update rule and its hyperparameters; ``name`` may be a torch.optim import path."""

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, ge=0)
    weight_decay: float = Field(1e-2, ge=0)
    decay: str = "l2"
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    alpha: float = Field(0.99, ge=0, lt=1)
    centered: bool = False
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
        return _one_of(decay, DECAYS, "decay rule")


class TrainSpec(_Strict):
    """The training loop: length, batch, cadence, data mode, training seed, device."""

    steps: int = Field(10_000, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_every: int = Field(50, ge=1)
    data: Literal["stream", "dataset"] = "stream"
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ProbeSpec(_Strict):
    """What is recorded beside loss and accuracy, at the eval cadence (see ``optlab.probes``).

    ``record`` names probes; the default set is cheap enough for every run. Probes that
    write arrays (snapshots, predictions) run every ``array_every``-th eval step.
    """

    record: tuple[str, ...] = ("params", "outputs", "scalars")
    array_every: int = Field(1, ge=1, description="heavy probes: every n-th eval step")

    @field_validator("record")
    @classmethod
    def _known_probes(cls, record: tuple[str, ...]) -> tuple[str, ...]:
        from optlab.probes import PROBES

        for name in record:
            _one_of(name, PROBES, "probe")
        return tuple(dict.fromkeys(record))


class RunSpec(_Strict):
    """One fully resolved run. Its hash (without the device) is the run id."""

    task: TaskSpec = TaskSpec()
    model: ModelSpec = ModelSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    train: TrainSpec = TrainSpec()
    probes: ProbeSpec = ProbeSpec()

    @property
    def run_id(self) -> str:
        payload = self.model_dump(mode="json")
        del payload["train"]["device"]  # where a run trains does not change what it is
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def n_train(self) -> int:
        """Training points drawn: one fresh batch per step in stream mode, as the paper."""
        t = self.train
        return t.steps * t.batch_size if t.data == "stream" else self.task.n_train


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
        return tree, cases, {**self.tune, **tune}


class PlannedRun(BaseModel):
    """A run of an experiment: its spec, its id, and the labels that place it in the sweep."""

    model_config = ConfigDict(frozen=True)
    experiment: str
    case: str
    spec: RunSpec

    @property
    def run_id(self) -> str:
        return self.spec.run_id


PROFILES = ("paper", "quick")  # paper: the spec as written; quick: the spec's [profiles.quick]


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


def _valid_keys(model: type[BaseModel] = RunSpec, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += _valid_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


RUN_KEYS = tuple(_valid_keys())


def _set_path(tree: dict, key: str, value: Any) -> None:
    if key not in RUN_KEYS:
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


def _format_error(err: ValidationError, context: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or context
    msg = first["msg"].removeprefix("Value error, ")
    return f"{loc}: {first.get('input')!r} is not allowed: {msg}"


def validate_run(tree: dict) -> RunSpec:
    try:
        return RunSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_format_error(err, "run")) from None


# ---- loading and expansion ---------------------------------------------------------------


def _read_tree(source: str | Path | dict) -> dict:
    """The TOML tree of a file, a catalog name, or the dict itself."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise SpecError(f"experiment file {str(path)!r} does not exist")
        return tomllib.loads(path.read_text())
    from optlab.catalog import catalog_path

    return tomllib.loads(catalog_path(str(source)).read_text())


def load_experiment(source: str | Path | dict) -> ExperimentSpec:
    """An experiment from a TOML file, a catalog name, or a dict, validated."""
    tree = _read_tree(source)
    try:
        spec = ExperimentSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_format_error(err, "experiment")) from None
    for name in ("paper", *spec.profiles):
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
    if profile not in PROFILES:
        raise SpecError(f"--profile: {profile!r} is not a profile; valid: {', '.join(PROFILES)}")
    if profile != "paper" and profile not in spec.profiles:
        raise SpecError(f"--profile: experiment {spec.name!r} has no {profile!r} profile")
    profile_overrides, per_case, tune = spec.profile(profile)
    base = _apply(spec.base, profile_overrides)
    axes = {**spec.grid, **tune}
    runs: list[PlannedRun] = []
    for case, case_overrides in (spec.cases or {"base": {}}).items():
        case_tree = _apply(_apply(base, case_overrides), per_case.get(case, {}))
        for cell in itertools.product(*axes.values()):
            tree = _apply(case_tree, dict(zip(axes, cell, strict=True)))
            tree = _apply(tree, overrides or {})
            for seed in seeds or spec.seeds:
                run = validate_run(_apply(tree, {"train.seed": seed}))
                runs.append(PlannedRun(experiment=spec.name, case=case, spec=run))
    return runs
