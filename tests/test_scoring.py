"""Metric backends on tiny, randomly initialised models saved locally (no hub)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from continual_lora import checkpoint
from continual_lora.data import synthetic
from continual_lora.data.concepts import Concept
from continual_lora.lora import LoraSpec, factor_deltas, linear_shapes
from continual_lora.lora import deltas_to_state
from continual_lora.models.loading import load_pipeline
from continual_lora.scoring import METRICS, ModelHandle, ScoringInput, get_metric, pairwise_mean_cosine
from continual_lora.scoring.clip_t import class_prompt
from continual_lora.scoring.csd import csd_preprocess
from continual_lora.scoring.denoise import noise_prediction_error
from continual_lora.images import IMAGENET_MEAN, IMAGENET_STD, resize_crop_normalize

import tiny_metric_models

OBJECT = Concept("striped_ball", "objects", "a photo of sks ball", "sks ball", "ball", "sks")
STYLE = Concept("neon", "styles", "neon image of house", "neon", "house")


def _image(seed: int, size=(40, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _job(samples, references, concept=OBJECT, prompts=None, **kwargs) -> ScoringInput:
    prompts = prompts if prompts is not None else [concept.prompt] * len(samples)
    return ScoringInput(samples=samples, prompts=prompts, references=references, concept=concept, **kwargs)


def _direct_pairwise(a: torch.Tensor, b: torch.Tensor) -> float:
    pairs = itertools.product(a.double(), b.double())
    return float(np.mean([F.cosine_similarity(x, y, dim=0).item() for x, y in pairs]))


def _check_embedding_metric(metric, direct_embed):
    """Scores match a direct all-pairs computation on independently computed
    features, lie in [-1, 1], and identical images give exactly the maximum."""
    samples, references = [_image(s) for s in range(3)], [_image(s, (32, 48)) for s in range(10, 12)]
    score = metric.score(_job(samples, references))
    assert -1.0 <= score <= 1.0
    assert score == pytest.approx(_direct_pairwise(direct_embed(samples), direct_embed(references)), abs=1e-5)
    same = _image(7)
    assert metric.score(_job([same] * 3, [same] * 2)) == pytest.approx(1.0, abs=1e-5)
    assert score < 1.0 - 1e-4


# --------------------------------------------------------------------------- interface


def test_registry_names_every_backend_and_refuses_unknown_names():
    assert {"dino", "clip_i", "clip_t", "csd", "denoise", "colour_structure"} <= set(METRICS)
    with pytest.raises(ValueError, match=r"unknown metric 'clipp'.*clip_i.*dino"):
        get_metric("clipp", {}, "cpu")


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"unknown settings \['sise'\]"):
        get_metric("colour_structure", {"sise": 32}, "cpu")
    with pytest.raises(ValueError, match=r"\['checkpoint'\] are required"):
        get_metric("csd", {}, "cpu")


def test_scoring_input_checks_its_lists():
    with pytest.raises(ValueError, match="2 samples but 1 prompts"):
        ScoringInput([_image(0), _image(1)], ["p"], [_image(2)], OBJECT)
    with pytest.raises(ValueError, match="no reference images"):
        ScoringInput([_image(0)], ["p"], [], OBJECT)


def test_pairwise_mean_cosine_matches_all_pairs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(3, 7, generator=g) * 4
    assert pairwise_mean_cosine(a, b) == pytest.approx(_direct_pairwise(a, b), abs=1e-12)
    assert pairwise_mean_cosine(a[:1], a[:1] * 3) == pytest.approx(1.0, abs=1e-12)
    assert pairwise_mean_cosine(a[:1], -a[:1]) == pytest.approx(-1.0, abs=1e-12)


# --------------------------------------------------------------------------- DINO, CLIP
# (the tiny networks: dino_dir, clip_dir and csd_checkpoint in conftest.py)


def test_dino_is_the_mean_cosine_of_cls_tokens(dino_dir):
    from transformers import ViTModel

    model = ViTModel.from_pretrained(dino_dir, add_pooling_layer=False).eval()

    @torch.no_grad()
    def cls_tokens(images):
        # The paper's transform at its default sizes (tests/test_metric_parity.py checks
        # the transform itself against torchvision's semantics).
        pixels = torch.stack([resize_crop_normalize(im, 256, 224, IMAGENET_MEAN, IMAGENET_STD) for im in images])
        return model(pixel_values=pixels).last_hidden_state[:, 0]

    _check_embedding_metric(get_metric("dino", {"model": str(dino_dir)}, "cpu"), cls_tokens)


def test_dino_refuses_a_crop_that_is_not_its_models_input_size(dino_dir):
    with pytest.raises(ValueError, match=r"crop 32 does not match the model's image_size 224"):
        get_metric("dino", {"model": str(dino_dir), "resize": 36, "crop": 32}, "cpu")


def test_clip_i_uses_clips_projected_image_features(clip_dir):
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = AutoProcessor.from_pretrained(clip_dir)

    @torch.no_grad()
    def features(images):
        # CLS token after the vision tower's final norm, through CLIP's image projection.
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        return model.vision_model(pixel_values=pixels).pooler_output @ model.visual_projection.weight.T

    _check_embedding_metric(get_metric("clip_i", {"model": str(clip_dir), "batch_size": 2}, "cpu"), features)


def test_clip_t_prompt_takes_the_rare_token_out_of_object_prompts():
    assert class_prompt("a sks ball wearing a santa hat", OBJECT) == "a ball wearing a santa hat"
    assert class_prompt("a photo of sks ball", OBJECT) == "a photo of ball"
    # Only the whole word goes: "sksball" is not the token.
    assert class_prompt("a sksball", OBJECT) == "a sksball"
    assert class_prompt("neon image of a wizard", STYLE) == "neon image of a wizard"


def test_clip_t_scores_each_sample_against_its_class_prompt(clip_dir):
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = AutoProcessor.from_pretrained(clip_dir)
    samples = [_image(s) for s in range(3)]
    prompts = ["a sks ball in a jail", "a photo of sks ball", "a sks ball in a jail"]
    written_out = ["a ball in a jail", "a photo of ball", "a ball in a jail"]
    with torch.no_grad():
        inputs = processor(text=written_out, images=samples, return_tensors="pt", padding=True)
        out = model(**inputs)
    expected = F.cosine_similarity(out.image_embeds.double(), out.text_embeds.double()).mean().item()

    metric = get_metric("clip_t", {"model": str(clip_dir), "batch_size": 2}, "cpu")
    score = metric.score(_job(samples, [_image(9)], prompts=prompts))
    assert -1.0 <= score <= 1.0
    assert score == pytest.approx(expected, abs=1e-5)
    # The token really is removed: scoring with it left in gives another number.
    with torch.no_grad():
        raw = model(**processor(text=prompts, images=samples, return_tensors="pt", padding=True))
    assert F.cosine_similarity(raw.image_embeds, raw.text_embeds).mean().item() != pytest.approx(score, abs=1e-6)


# --------------------------------------------------------------------------- CSD


def test_csd_loads_the_published_layout_and_matches_its_forward(csd_checkpoint, tmp_path):
    path, state = csd_checkpoint
    metric = get_metric("csd", {"checkpoint": str(path)}, "cpu")
    assert metric.model.backbone.config.num_attention_heads == 2  # OpenAI's width // 64
    assert metric.model.image_size == 32
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = metric.model(pixels)
        theirs = tiny_metric_models.csd_style_reference(state, pixels, heads=2)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours.norm(dim=1), torch.ones(3), atol=1e-6)
    # ...and different images do not collapse to one descriptor.
    assert F.cosine_similarity(ours[0], ours[1], dim=0) < 0.999

    # The Hugging Face copy: the same state dict, bare, no `module.` prefix.
    bare = tmp_path / "pytorch_model.bin"
    torch.save(state, bare)
    with torch.no_grad():
        again = get_metric("csd", {"checkpoint": str(bare)}, "cpu").model(pixels)
    assert torch.equal(ours, again)

    with torch.no_grad():
        reference_direct = tiny_metric_models.csd_style_reference(
            state, torch.stack([csd_preprocess(im, 32) for im in [_image(0), _image(1), _image(2)]]), heads=2
        )
    samples, references = [_image(0), _image(1)], [_image(2)]
    assert metric.score(_job(samples, references)) == pytest.approx(
        _direct_pairwise(reference_direct[:2], reference_direct[2:]), abs=1e-5
    )
    assert metric.score(_job([_image(4)] * 2, [_image(4)])) == pytest.approx(1.0, abs=1e-5)


def test_csd_refuses_a_file_that_is_not_csd(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"module.encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="not a CSD checkpoint"):
        get_metric("csd", {"checkpoint": str(path)}, "cpu")


def test_csd_preprocessing_resizes_the_short_side_and_crops_the_centre():
    # Three vertical bands, 2:1 wide: after the resize the centre crop is the middle band.
    bands = np.zeros((30, 60, 3), np.uint8)
    bands[:, :20, 0], bands[:, 20:40, 1], bands[:, 40:, 2] = 255, 255, 255
    pixels = csd_preprocess(Image.fromarray(bands), 16)
    assert pixels.shape == (3, 16, 16)
    centre = pixels[:, 8, 8] * torch.tensor([0.26862954, 0.26130258, 0.27577711]) + torch.tensor(
        [0.48145466, 0.4578275, 0.40821073]
    )
    assert torch.allclose(centre, torch.tensor([0.0, 1.0, 0.0]), atol=0.02)


# --------------------------------------------------------------------------- denoise


DENOISE = {"n_timesteps": 3, "n_noises": 2, "seed": 0, "batch_size": 4}


def _random_deltas(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = linear_shapes(unet, LoraSpec(rank=2, alpha=2))
    factors = {
        name: (torch.randn(2, n_in, generator=g) * 0.3, torch.randn(n_out, 2, generator=g) * 0.3)
        for name, (n_out, n_in) in shapes.items()
    }
    return factor_deltas(factors, 1.0)


def test_denoise_is_zero_for_the_base_model(tiny_model_dir, object_concepts_dir):
    pipeline = load_pipeline(tiny_model_dir)
    metric = get_metric("denoise", DENOISE, "cpu")
    assert not metric.uses_samples
    job = ScoringInput.from_concept_dir(object_concepts_dir[0], [], [], model=ModelHandle(pipeline))
    assert metric.score(job) == 0.0
    with pytest.raises(ValueError, match="ScoringInput.model must be set"):
        metric.score(ScoringInput.from_concept_dir(object_concepts_dir[0], [], []))


def test_denoise_measures_the_checkpoint_against_the_base_and_restores_it(
    tiny_model_dir, object_concepts_dir, tmp_path
):
    metric = get_metric("denoise", DENOISE, "cpu")
    base = load_pipeline(tiny_model_dir)
    deltas = _random_deltas(base.unet)
    tuned = load_pipeline(tiny_model_dir, deltas)
    before = {k: v.clone() for k, v in tuned.unet.state_dict().items()}

    job = ScoringInput.from_concept_dir(object_concepts_dir[0], [], [], model=ModelHandle(tuned, deltas))
    score = metric.score(job)
    assert score != 0.0
    assert metric.score(job) == score  # fixed timesteps and noises
    after = tuned.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    # A handle loaded from a handoff file holds the same model and deltas.
    handoff = tmp_path / "handoff.safetensors"
    checkpoint.save_tensors(handoff, deltas_to_state(deltas), "delta", 1.0)
    loaded = ModelHandle.load(tiny_model_dir, handoff)
    assert loaded.deltas.keys() == deltas.keys()
    assert metric.score(ScoringInput.from_concept_dir(object_concepts_dir[0], [], [], model=loaded)) == score

    # The in-place base equals a separately loaded base model.
    settings = dict(DENOISE, resolution=32)
    err_base = noise_prediction_error(base, job.references, job.concept.prompt, **settings)
    err_tuned = noise_prediction_error(tuned, job.references, job.concept.prompt, **settings)
    assert score == pytest.approx((err_base - err_tuned) / err_base, abs=1e-5)
    # Another seed draws other noises.
    assert noise_prediction_error(base, job.references, job.concept.prompt, **dict(settings, seed=1)) != err_base


# --------------------------------------------------------------------------- colour_structure


def _renders(domain: str, seed: int = 0):
    """(concepts, 6 references each, 6 held-out renders each), from the synthetic world."""
    if domain == "objects":
        concepts = synthetic.object_concepts(10, seed)
        draw = [lambda rng, c=c: synthetic.render_object(c, rng) for c in concepts]
        classes = [[c.class_word] * 12 for c in concepts]
    else:
        concepts = synthetic.style_concepts(synthetic.MAX_STYLE_CONCEPTS, seed)
        draw = [lambda rng, cls, c=c: synthetic.render_styled(c, cls, rng) for c in concepts]
        # References on classes the style did not train on, as the dataset prepares them;
        # the held-out renders on a different mix of classes.
        scenes = list(reversed(synthetic.GENERIC_CLASSES))[:6]
        classes = [synthetic.style_subjects(c, seed)[1][:6] + scenes for c in concepts]
    refs, held_out = [], []
    for i, (concept, fn) in enumerate(zip(concepts, draw)):
        images = []
        for k, cls in enumerate(classes[i]):
            rng = np.random.default_rng([seed, i, k])
            images.append(fn(rng) if domain == "objects" else fn(rng, cls))
        refs.append(images[:6])
        held_out.append(images[6:])
    return concepts, refs, held_out


@pytest.mark.parametrize("size", [64, 24])  # the metric's default, and the embedded default config's
@pytest.mark.parametrize("domain", ["objects", "styles"])
def test_colour_structure_prefers_a_concepts_own_renders(domain, size):
    metric = get_metric("colour_structure", {"size": size}, "cpu")
    concepts, refs, held_out = _renders(domain)
    ref_features = [metric.embed(r) for r in refs]
    sample_features = [metric.embed(s) for s in held_out]
    # M[i, j]: held-out renders of concept j scored against the references of concept i.
    m = np.array([[pairwise_mean_cosine(s, r) for s in sample_features] for r in ref_features])
    assert ((m >= 0) & (m <= 1 + 1e-9)).all()
    own = np.diag(m)
    others = np.where(np.eye(len(m), dtype=bool), -np.inf, m).max(axis=1)
    losers = [concepts[i].name for i in np.flatnonzero(own <= others)]
    assert not losers, f"{domain}: another concept's renders score at least as high for {losers}"
    print(f"{domain}: own {own.mean():.3f}, best other {others.mean():.3f}, min margin {(own - others).min():.3f}")
    # The metric's score is this same number.
    i = 0
    assert metric.score(_job(held_out[i], refs[i])) == pytest.approx(m[i, i], abs=1e-9)
    assert metric.score(_job(refs[i][:1] * 2, refs[i][:1])) == pytest.approx(1.0, abs=1e-9)
