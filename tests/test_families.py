"""The paper-scale model families (SD 1.5, SDXL) through training, loading, generation
and the model-querying metric, on tiny random models of the real pipeline classes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from continual_lora import checkpoint
from continual_lora.data.concepts import read_concept
from continual_lora.generation import GenerationSettings, generate_samples
from continual_lora.lora import LoraSpec
from continual_lora.models.conditioning import conditioner_for
from continual_lora.models.loading import ModelSource, checkpoint_deltas, load_pipeline
from continual_lora.scoring import ModelHandle, ScoringInput, get_metric
from continual_lora.training import TrainingSettings, train_task
import tiny_families

SPEC = LoraSpec(rank=2, alpha=2, target_modules=("to_q", "to_k", "to_v", "to_out.0"))


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {
        "sd15": tiny_families.build_sd15(root / "sd15"),
        "sdxl": tiny_families.build_sdxl(root / "sdxl"),
        "vae": tiny_families.build_vae(root),
    }


def _train(model, concept_dir, out_dir, previous=None, task=1, **settings):
    settings = TrainingSettings(**{"steps": 3, "learning_rate": 1e-2, "batch_size": 2, "resolution": 32} | settings)
    return train_task(
        base_model=model,
        method="merge_and_init",
        task_index=task,
        concept_dir=concept_dir,
        previous_handoff=previous,
        spec=SPEC,
        settings=settings,
        training_seed=0,
        out_dir=out_dir,
        device="cpu",
        log=lambda line: None,
    )


def test_sdxl_conditioning_has_pooled_embeddings_and_time_ids(family_dirs):
    pipeline = load_pipeline(family_dirs["sdxl"])
    condition = conditioner_for(pipeline).encode(["a photo of sks dog"] * 3, 32)
    assert condition["encoder_hidden_states"].shape == (3, 77, 32)  # both encoders' widths, concatenated
    assert condition["added_cond_kwargs"]["text_embeds"].shape == (3, 16)
    time_ids = condition["added_cond_kwargs"]["time_ids"]
    assert time_ids.tolist() == [[32, 32, 0, 0, 32, 32]] * 3
    # The UNet takes exactly these inputs.
    out = pipeline.unet(torch.zeros(3, 4, 16, 16), torch.tensor([10, 10, 10]), **condition).sample
    assert out.shape == (3, 4, 16, 16)


def test_unsupported_pipeline_class_is_named(family_dirs):
    pipeline = load_pipeline(family_dirs["sd15"])
    pipeline.__class__ = type("KandinskyPipeline", (type(pipeline),), {})
    with pytest.raises(ValueError, match="base_model: pipelines of class KandinskyPipeline are not supported"):
        conditioner_for(pipeline)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_family_trains_a_chain_and_generates(family, family_dirs, object_concepts_dir, tmp_path):
    model = family_dirs[family]
    first = _train(model, object_concepts_dir[0], tmp_path / "task1", gradient_checkpointing=True)
    second = _train(
        model, object_concepts_dir[1], tmp_path / "task2", previous=tmp_path / "task1" / checkpoint.HANDOFF, task=2
    )
    assert all(loss == loss for _, loss in first["loss_curve"] + second["loss_curve"])  # finite, not NaN
    deltas = checkpoint_deltas(tmp_path / "task2" / checkpoint.HANDOFF)
    assert deltas and all(torch.isfinite(d).all() and d.abs().sum() > 0 for d in deltas.values())

    pipeline = load_pipeline(model, deltas)
    concept = read_concept(object_concepts_dir[1]).concept
    settings = GenerationSettings(
        templates=("a photo of {}",), samples_per_prompt=2, inference_steps=2, guidance_scale=3.0,
        latent_seed=42, batch_size=2, resolution=32,
    )  # fmt: skip
    rows = generate_samples(pipeline, [(2, concept)], settings, tmp_path / "samples")
    images = [Image.open(tmp_path / "samples" / row["file"]) for row in rows]
    assert [im.size for im in images] == [(32, 32), (32, 32)]

    # The model-querying metric runs on the family's conditioning, and the base scores 0.
    denoise = get_metric("denoise", {"n_timesteps": 2, "n_noises": 1, "batch_size": 2}, "cpu")
    job = lambda handle: ScoringInput.from_concept_dir(object_concepts_dir[1], [], [], model=handle)  # noqa: E731
    assert denoise.score(job(ModelHandle.load(model))) == pytest.approx(0.0, abs=1e-6)
    assert denoise.score(job(ModelHandle.load(model, tmp_path / "task2" / checkpoint.HANDOFF))) != 0.0


def test_bf16_mixed_precision_keeps_the_adapter_in_float32(family_dirs, object_concepts_dir, tmp_path):
    meta = _train(family_dirs["sdxl"], object_concepts_dir[0], tmp_path, mixed_precision="bf16")
    stored = checkpoint.load_tensors(tmp_path / checkpoint.TASK_LORA)
    assert {t.dtype for t in stored.tensors.values()} == {torch.float32}
    assert meta["settings"]["mixed_precision"] == "bf16"
    # The trained factors differ from the run in float32 (a different precision), but
    # only by rounding: the same seed gives the same batches.
    _train(family_dirs["sdxl"], object_concepts_dir[0], tmp_path / "fp32")
    full = checkpoint.load_tensors(tmp_path / "fp32" / checkpoint.TASK_LORA).tensors
    for name, tensor in stored.tensors.items():
        assert torch.allclose(tensor, full[name], atol=5e-2), name


def test_unknown_precision_and_optimizer_are_named(family_dirs, object_concepts_dir, tmp_path):
    with pytest.raises(ValueError, match="training.mixed_precision: 'fp8'"):
        _train(family_dirs["sd15"], object_concepts_dir[0], tmp_path, mixed_precision="fp8")
    with pytest.raises(ValueError, match="training.optimizer: 'sgd'"):
        _train(family_dirs["sd15"], object_concepts_dir[0], tmp_path, optimizer="sgd")


def test_a_separate_vae_replaces_the_models_own(family_dirs):
    own = load_pipeline(family_dirs["sdxl"])
    replaced = load_pipeline(ModelSource(name=str(family_dirs["sdxl"]), vae=str(family_dirs["vae"])))
    separate = load_pipeline(family_dirs["sdxl"]).vae.__class__.from_pretrained(family_dirs["vae"])
    key = "encoder.conv_in.weight"
    assert torch.equal(replaced.vae.state_dict()[key], separate.state_dict()[key])
    assert not torch.equal(replaced.vae.state_dict()[key], own.vae.state_dict()[key])


def test_half_precision_loading(family_dirs):
    pipeline = load_pipeline(family_dirs["sdxl"], dtype="bfloat16")
    assert pipeline.unet.dtype == torch.bfloat16 and pipeline.text_encoder_2.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        load_pipeline(family_dirs["sdxl"], dtype="half")
