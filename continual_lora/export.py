"""A run's final model in the forms the diffusers world loads.

The model evaluated after a run's last task is written where ``snakemake export``
puts it, in the most compact form its method allows (``ContinualMethod.export``):

- a LoRA adapter (naive, ortho_init, merge_and_init, whose update is a sum of
  rank-r updates and so one adapter of the summed rank): ``pytorch_lora_weights.safetensors``,
  diffusers' default file name, loaded with ``pipe.load_lora_weights(folder)`` on the
  base model;
- a model folder (magmax, whose element-wise choice has full rank): the base model
  with the update fused into its UNet, written by ``save_pretrained``, loaded with
  ``DiffusionPipeline.from_pretrained(folder)``. It carries the sampler the pipeline
  evaluated it with.

Either way ``export.json`` says what the folder holds: the base model, the tasks
with their prompts, the sampler settings of the evaluation, and how to load it.
Before anything is written, the exported update is compared with the one the
pipeline evaluates (``checkpoint_deltas``), so an export is the evaluated model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from continual_lora import layout
from continual_lora.atomic import atomic_directory
from continual_lora.audit import TOLERANCE
from continual_lora.checkpoint import load_tensors, save_adapter
from continual_lora.lora import Tensors, factor_deltas
from continual_lora.methods import ContinualMethod, FusedExport, LoraExport, ModelExport

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what load_lora_weights looks for


class ExportMismatch(AssertionError):
    pass


def export_run(
    method: ContinualMethod,
    handoff: str | Path,
    task_loras: list[str | Path],
    out_dir: str | Path,
    description: dict[str, Any],
    base_model: Any,
    dtype: str = "float32",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Export the model evaluated after the run's last task into ``out_dir``.

    ``handoff`` is that task's handoff, ``task_loras`` every task's trained adapter in
    order; ``description`` (experiment, method, run, tasks, base model, sampling) goes
    into export.json. A model folder is saved in ``dtype`` with ``scheduler`` (None:
    the base model's own). Returns what export.json holds."""
    # Deferred: diffusers is imported by the model loader only.
    from continual_lora.models.loading import checkpoint_deltas

    stored = load_tensors(handoff)
    adapters = [load_tensors(path).factors() for path in task_loras]
    exported = method.export(stored.tensors, adapters, stored.scale)
    evaluated = checkpoint_deltas(handoff, method=method, task_lora=task_loras[-1])
    check_matches(exported, evaluated)
    summary = dict(description)
    with atomic_directory(out_dir) as folder:
        if isinstance(exported, LoraExport):
            save_adapter(folder / LORA_WEIGHT_NAME, exported.factors, exported.scale)
            rank = next(iter(exported.factors.values()))[0].shape[0]
            summary["export"] = {
                "kind": "lora",
                "weight_name": LORA_WEIGHT_NAME,
                "rank": rank,
                "alpha": exported.scale * rank,
                "load": "DiffusionPipeline.from_pretrained(base_model), then pipe.load_lora_weights(this folder)",
            }
        else:
            save_fused_pipeline(folder, base_model, exported.delta, dtype, scheduler)
            summary["export"] = {
                "kind": "pipeline",
                "dtype": dtype,
                "scheduler": scheduler,
                "load": "DiffusionPipeline.from_pretrained(this folder)",
            }
        (folder / layout.EXPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def exported_update(exported: ModelExport) -> Tensors:
    """W - W0 of an export, per module."""
    if isinstance(exported, LoraExport):
        return factor_deltas(exported.factors, exported.scale)
    return exported.delta


def check_matches(exported: ModelExport, evaluated: Tensors) -> None:
    """The export's update equals the evaluated one, module by module, to the chain
    audit's tolerance; ExportMismatch names the worst module otherwise."""
    update = exported_update(exported)
    if set(update) != set(evaluated):
        raise ExportMismatch("the export and the evaluated model update different modules")
    errors = {m: float((update[m].double() - evaluated[m].double()).abs().max()) for m in update}
    worst = max(errors, key=errors.get)
    if errors[worst] > TOLERANCE:
        raise ExportMismatch(
            f"the export differs from the evaluated model by {errors[worst]:.3g} in {worst} (tolerance {TOLERANCE})"
        )


def save_fused_pipeline(folder: Path, base_model: Any, delta: Tensors, dtype: str, scheduler: str | None) -> None:
    """The base model with ``delta`` added to its UNet, as a diffusers folder."""
    from continual_lora.generation import use_scheduler
    from continual_lora.models.loading import load_pipeline

    pipeline = load_pipeline(base_model, delta, device="cpu", dtype=dtype)
    if scheduler:
        use_scheduler(pipeline, scheduler)
    pipeline.save_pretrained(folder, safe_serialization=True)
