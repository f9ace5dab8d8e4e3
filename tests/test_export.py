"""Results the diffusers world loads: adapter files in diffusers' LoRA format, and each
method's export of a run's final model, checked against the model the pipeline
evaluates, in closed form and by sampling with plain diffusers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import MICRO_EXPORTS
from continual_lora import checkpoint
from continual_lora.export import ExportMismatch, check_matches, exported_update
from continual_lora.generation import read_index
from continual_lora.lora import LoraSpec, factor_deltas, stack_factors, state_to_deltas, state_to_factors
from continual_lora.methods import FusedExport, LoraExport, get_method
from snakemake_harness import REPO

SHAPES = {"down.attn1.to_q": (8, 6), "up.attn2.to_k": (5, 6)}  # module: (out, in)
SPEC = LoraSpec(rank=2, alpha=3.0)


def random_factors(generator: torch.Generator, rank: int = SPEC.rank) -> dict:
    return {
        m: (torch.randn(rank, n_in, generator=generator), torch.randn(n_out, rank, generator=generator))
        for m, (n_out, n_in) in SHAPES.items()
    }


def test_stacked_adapters_make_the_sum_of_their_updates():
    generator = torch.Generator().manual_seed(0)
    adapters = [random_factors(generator), random_factors(generator, rank=3), random_factors(generator)]
    stacked = stack_factors(adapters)
    for module in SHAPES:
        a, b = stacked[module]
        assert a.shape[0] == b.shape[1] == 2 + 3 + 2
        expected = sum(b_i.double() @ a_i.double() for a_i, b_i in (adapter[module] for adapter in adapters))
        torch.testing.assert_close((b.double() @ a.double()), expected)


def run_chain(method, n_tasks: int = 3):
    """A run of ``method`` on random trained adapters: its last handoff, every task's
    trained adapter, and the update of the model it evaluates after the last task."""
    generator = torch.Generator().manual_seed(1)
    previous, adapters = None, []
    for task in range(1, n_tasks + 1):
        start = method.start(previous, random_factors(generator), SPEC)
        # Training moves both factors away from where the task started.
        trained = {m: (a + 0.1 * torch.randn_like(a), b + torch.randn(b.shape, generator=generator)) for m, (a, b) in start.init.items()}
        previous = method.hand_on(previous, trained, SPEC, task=task)
        adapters.append(trained)
    if not method.evaluates_handoff:
        evaluated = method.evaluated_update(previous, adapters[-1], SPEC.scale)
    elif method.handoff_format == "adapter":
        evaluated = factor_deltas(state_to_factors(previous), SPEC.scale)
    else:
        evaluated = state_to_deltas(previous)
    return previous, adapters, evaluated


@pytest.mark.parametrize(
    ("name", "settings", "kind", "rank"),
    [
        ("naive", {}, LoraExport, SPEC.rank),
        ("ortho_init", {"evaluate": "handoff"}, LoraExport, SPEC.rank),
        ("ortho_init", {"evaluate": "trained"}, LoraExport, 2 * SPEC.rank),
        ("merge_and_init", {}, LoraExport, 3 * SPEC.rank),
        ("magmax", {}, FusedExport, None),
        ("c_lora", {}, LoraExport, 3 * SPEC.rank),
        ("task_arithmetic", {"scale": 0.4}, LoraExport, 3 * SPEC.rank),
        ("running_average", {}, LoraExport, 3 * SPEC.rank),
        ("o_lora", {}, LoraExport, 3 * SPEC.rank),
        ("ties", {}, FusedExport, None),
        ("dare", {}, FusedExport, None),
    ],
    ids=["naive", "ortho_init handoff", "ortho_init trained", "merge_and_init", "magmax", "c_lora", "task_arithmetic",
         "running_average", "o_lora", "ties", "dare"],  # fmt: skip
)
def test_each_method_exports_the_model_it_evaluates(name, settings, kind, rank):
    method = get_method(name, settings)
    handoff, adapters, evaluated = run_chain(method)
    exported = method.export(handoff, adapters, SPEC.scale)
    assert isinstance(exported, kind)
    if rank is not None:
        assert {a.shape[0] for a, _ in exported.factors.values()} == {rank}
        assert exported.scale == SPEC.scale
    update = exported_update(exported)
    for module in SHAPES:
        torch.testing.assert_close(update[module].double(), evaluated[module].double(), rtol=0, atol=1e-5)
    check_matches(exported, evaluated)


def test_an_export_that_is_not_the_evaluated_model_is_refused():
    method = get_method("merge_and_init")
    handoff, adapters, evaluated = run_chain(method)
    # Leaving out a task's adapter is what stacking only the last one would do.
    with pytest.raises(ExportMismatch, match="differs from the evaluated model by"):
        check_matches(method.export(handoff, adapters[1:], SPEC.scale), evaluated)


def test_an_adapter_file_loads_in_diffusers_as_the_model_the_pipeline_computes(tiny_model_dir, tmp_path):
    from diffusers import DiffusionPipeline

    from continual_lora.lora import fresh_factors, linear_shapes
    from continual_lora.models.loading import load_pipeline

    base = DiffusionPipeline.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    init = fresh_factors(linear_shapes(base.unet, SPEC), SPEC.rank, generator)
    factors = {m: (a, 0.1 * torch.randn(b.shape, generator=generator)) for m, (a, b) in init.items()}
    checkpoint.save_adapter(tmp_path / "task_lora.safetensors", factors, SPEC.scale, task="1")

    theirs = DiffusionPipeline.from_pretrained(tiny_model_dir)
    theirs.load_lora_weights(tmp_path, weight_name="task_lora.safetensors")
    assert list(theirs.get_list_adapters()) == ["unet"]
    ours = load_pipeline(tiny_model_dir, checkpoint.load_tensors(tmp_path / "task_lora.safetensors").model_delta())

    latents = torch.randn(2, base.unet.config.in_channels, 8, 8, generator=generator)
    context = torch.randn(2, 77, base.unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        outputs = [pipe.unet(latents, 500, context).sample for pipe in (theirs, ours, base)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-5)
    assert (outputs[0] - outputs[2]).abs().max() > 1e-2  # the adapter does change the model


def test_a_file_of_an_earlier_version_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "handoff.safetensors"
    save_file({"m.lora_A.weight": torch.zeros(2, 3), "m.lora_B.weight": torch.zeros(3, 2)}, str(old),
              metadata={"format": "adapter", "scale": "2.0"})  # fmt: skip
    with pytest.raises(ValueError, match=r"earlier version of this pipeline.*--forcerun train_task"):
        checkpoint.load_tensors(old)


def readme_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- export-snippet -->\n```python\n(.*?)```\n<!-- /export-snippet -->", readme, re.S)
    assert block, "README.md has no export snippet"
    return block[1]


# The README's script, run as a user would (once per export, in one Python: each run
# imports diffusers for seconds otherwise), then proof that it imported nothing of ours.
RUN_SNIPPET = """
import runpy, sys
script, arguments = sys.argv[1], sys.argv[2:]
for folder, prefix in zip(arguments[::2], arguments[1::2]):
    sys.argv = [script, folder, prefix]
    runpy.run_path(script, run_name="__main__")
assert not [m for m in sys.modules if m.startswith("continual_lora")], "the snippet imported continual_lora"
"""


def method_of(export: str) -> str:
    """The method of a path in MICRO_EXPORTS (results/{experiment}/{method}/...)."""
    return export.split("/")[2]


@pytest.fixture(scope="module")
def readme_samples(micro_run, tmp_path_factory) -> dict[str, Path]:
    """export -> the prefix of the README snippet's samples of it."""
    root = tmp_path_factory.mktemp("readme_samples")
    script = root / "sample_export.py"
    script.write_text(readme_snippet())
    prefixes = {export: root / method_of(export) / "sample" for export in MICRO_EXPORTS}
    arguments = []
    for export, prefix in prefixes.items():
        prefix.parent.mkdir()
        arguments += [str(micro_run / export), str(prefix)]
    subprocess.run([sys.executable, "-c", RUN_SNIPPET, str(script), *arguments], cwd=micro_run, check=True, capture_output=True, text=True)
    return prefixes


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


@pytest.mark.parametrize("export", MICRO_EXPORTS, ids=method_of)
def test_the_readme_samples_each_export_as_the_pipeline_did_with_plain_diffusers(micro_run, readme_samples, export):
    folder = micro_run / export
    about = json.loads((folder / "export.json").read_text())
    expected_kind = {"naive": "lora", "ortho_init": "lora", "merge_and_init": "lora", "magmax": "pipeline"}
    assert about["export"]["kind"] == expected_kind[about["method"]]
    # micro.yaml: rank 2, two tasks, ortho_init evaluated as trained (two adapters).
    expected_rank = {"naive": 2, "ortho_init": 4, "merge_and_init": 4}.get(about["method"])
    assert about["export"].get("rank") == expected_rank

    prefix = readme_samples[export]
    last = folder.parent / f"task{about['after_task']}" / "samples"
    base = micro_run / "results" / about["experiment"] / "base" / "samples"
    rows = [row for row in read_index(last) if row["template"] == "0" and row["sample"] == "0"]
    assert [int(row["task"]) for row in rows] == [task["task"] for task in about["tasks"]]
    base_differs = []
    for row in rows:
        ours = pixels(f"{prefix}_task{row['task']}.png")
        assert np.abs(ours - pixels(last / row["file"])).max() <= 1, row
        base_differs.append(np.abs(ours - pixels(base / row["concept"] / "t0_s0.png")).max() > 1)
    assert any(base_differs)  # the comparison can tell a trained model from the base
