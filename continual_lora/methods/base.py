"""The interface every continual-learning method implements, and its registry.

A method answers two questions for task t, given only what task t-1 handed on
(the paper's regime: the model, or the model plus one adapter):

- ``start``: which update to fuse into the frozen base W0 before training, and the
  adapter to train from;
- ``hand_on``: what to pass to task t+1 once this task's adapter is trained.

A method may also add a ``Penalty`` to the training loss of a task (``TaskStart.penalty``),
a function of the trainable factors built from the previous handoff alone.

A handoff is a flat tensor dict in one of two on-disk forms (``handoff_format``):
``adapter`` (``{module}.lora_A.weight`` / ``{module}.lora_B.weight``, the model is
W0 + scale * B @ A) or ``delta`` (``{module}.weight`` = W_t - W0).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from continual_lora.lora import Factors, LoraSpec, Tensors

HANDOFF_FORMATS = ("adapter", "delta")


@dataclass(frozen=True)
class LoraExport:
    """The evaluated model as one LoRA adapter over W0 (update ``scale * B @ A``)."""

    factors: Factors
    scale: float


@dataclass(frozen=True)
class FusedExport:
    """The evaluated model as W0 + ``delta``, an update no low-rank adapter holds."""

    delta: Tensors


ModelExport = LoraExport | FusedExport


class Penalty(ABC):
    """A term added to a task's training loss: a function of the trainable factors
    ``{module: (A, B)}`` (live parameters, so that it has a gradient), built by a
    method's ``start`` from what the previous task handed on."""

    @abstractmethod
    def __call__(self, factors: Factors) -> torch.Tensor:
        """The penalty, a scalar, already multiplied by its weight."""

    @abstractmethod
    def to(self, device: str | torch.device) -> Penalty:
        """The same penalty with its tensors on ``device``."""


@dataclass
class TaskStart:
    """How task t begins: ``frozen_delta`` (W_{t-1}-side update fused into the frozen
    base, per module; empty for none), ``init`` (the trainable adapter's factors) and
    ``penalty`` (a term added to the training loss; none for the paper's methods)."""

    init: Factors
    frozen_delta: Tensors = field(default_factory=dict)
    penalty: Penalty | None = None


class ContinualMethod(ABC):
    """One method. Subclasses set ``name``, ``handoff_format`` and ``defaults``: every
    setting the method reads (``method_settings.{name}`` in the config) with its
    default. Unknown settings are refused, so that a typo fails loudly."""

    name: ClassVar[str]
    handoff_format: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # The settings that choose only which model is evaluated after a task: training
    # and the audit never see them, so changing one retrains nothing.
    evaluation_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: dict[str, Any] | None = None):
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"method_settings.{self.name}: unknown settings {unknown}; "
                f"{self.name} reads {sorted(self.defaults) if self.defaults else 'none'}"
            )
        self.settings = {**self.defaults, **settings}

    def _number(self, key: str, *, low: float, high: float | None = None, low_open: bool = False) -> float:
        """Setting ``key`` as a float within [low, high] ((low, high] with ``low_open``),
        or a ValueError that names it."""
        value = self.settings[key]
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _parses_as_float(value):
                # PyYAML follows YAML 1.1, where an exponent needs its sign.
                hint = f" (YAML reads {value} as text: write the exponent with its sign, e.g. 1.0e+6)"
            raise ValueError(f"method_settings.{self.name}.{key}: {value!r} is not a number in {bounds}{hint}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            raise ValueError(f"method_settings.{self.name}.{key}: {value!r} is outside {bounds}")
        return float(value)

    @property
    def evaluates_handoff(self) -> bool:
        """Whether the model evaluated after a task is the one its handoff describes
        (what the next task starts from); if not, ``evaluated_update`` gives it."""
        return True

    def evaluated_update(self, handoff: Tensors, trained: Factors, scale: float, device=None) -> Tensors:
        """W - W0 of the model evaluated after a task, from its handoff and its trained
        adapter, computed on ``device``, for a method whose evaluated model is not its
        handoff's."""
        raise NotImplementedError(f"{self.name} evaluates the model its handoff describes")

    @abstractmethod
    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> ModelExport:
        """The model evaluated after a run's last task, in the most compact form that
        other tools load: from its handoff and the trained adapter of every task of the
        run, in order (an export reads the finished run; no task does)."""

    @abstractmethod
    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        """Begin a task from the previous handoff (``None`` for task 1); ``fresh`` is a
        new adapter drawn as the paper's code draws it, for methods that want one."""

    @abstractmethod
    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        """The handoff after task ``task`` (1 for the first), from the previous one and
        the trained adapter."""

    @abstractmethod
    def residuals(
        self, previous: Tensors | None, init: Factors, trained: Factors, handoff: Tensors, spec: LoraSpec, *, task: int
    ) -> dict[str, float]:
        """How far a saved task is from this method's formula, written out in closed
        form independently of ``start``/``hand_on``: each value is a maximum absolute
        error (or |cosine|) that is zero up to rounding when the files are right."""


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


METHODS: dict[str, type[ContinualMethod]] = {}


def register(cls: type[ContinualMethod]) -> type[ContinualMethod]:
    if cls.handoff_format not in HANDOFF_FORMATS:
        raise ValueError(f"{cls.__name__}.handoff_format must be one of {HANDOFF_FORMATS}")
    if cls.name in METHODS:
        raise ValueError(f"two methods are registered as {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def max_abs(tensors_a: Tensors, tensors_b: Tensors) -> float:
    """Largest elementwise difference between two tensor dicts with the same keys."""
    if set(tensors_a) != set(tensors_b):
        raise ValueError("the two tensor sets name different modules")
    return max(float((tensors_a[k].double() - tensors_b[k].double()).abs().max()) for k in tensors_a)
