"""The embedded tiny SD model: tokenizer, construction, save/load, micro pretraining."""

import dataclasses
import json
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from continual_lora.data import synthetic
from continual_lora.data.sources import RARE_TOKENS
from continual_lora.models.tiny import (
    TinyModelSettings,
    build_tiny_pipeline,
    build_tokenizer,
    learn_merges,
    pretrain_tiny_model,
    recoloured_copies,
    sample_grid,
)

CORPUS = ["a photo of a ball", "image of a ball", "a photo of a house", "image of a house"]
EXTRA = [*RARE_TOKENS, "neon", "blueprint", "striped_mug"]
MICRO = TinyModelSettings(resolution=32, pretrain_steps=30, vae_steps=12, batch_size=8, learning_rate=3e-3, seed=0)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(CORPUS * 5, out, extra_words=EXTRA)
    return out


def _load_tokenizer(path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path)


def test_tokenizer_is_saved_in_clip_format_and_round_trips(tokenizer_dir):
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert all(len(m.split(" ")) == 2 for m in merges[1:])
    for c in string.printable.strip():
        assert c in vocab and c + "</w>" in vocab, c
    assert "<|startoftext|>" in vocab and "<|endoftext|>" in vocab

    tok = _load_tokenizer(tokenizer_dir)
    assert tok.model_max_length == 77
    assert tok.pad_token_id == tok.eos_token_id
    ids = tok("A Photo of sks Ball").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "sks</w>", "ball</w>", "<|endoftext|>"]
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of sks ball"
    padded = tok("image of a house", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(padded) == 77 and padded[-1] == tok.pad_token_id


@pytest.mark.parametrize(
    "prompt",
    [
        string.printable,
        "Unseen words: zebra QUIZ 42, 3.14 -- [brackets] {braces} <angle> ~tilde` |pipe| \\back",
        "naïve café 日本語 emoji 🙂 ünïcödé",
        "a photo of sks striped_mug in the style of blueprint",
    ],
)
def test_any_prompt_tokenizes_without_unknowns(tokenizer_dir, prompt):
    tok = _load_tokenizer(tokenizer_dir)
    ids = tok(prompt).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    # unk is <|endoftext|> in CLIP, so any special id inside the prompt would be an unknown.
    inner = ids[1:-1]
    assert inner and tok.unk_token_id not in inner and tok.bos_token_id not in inner


def test_extra_words_are_single_distinct_tokens(tokenizer_dir):
    tok = _load_tokenizer(tokenizer_dir)
    ids = []
    for word in [*RARE_TOKENS, "neon", "blueprint"]:
        pieces = tok.tokenize(word)
        assert pieces == [word + "</w>"], (word, pieces)
        ids.append(tok.convert_tokens_to_ids(pieces[0]))
    assert len(set(ids)) == len(ids)
    # Words joined by punctuation become one token per word.
    assert tok.tokenize("striped_mug") == ["striped</w>", "_</w>", "mug</w>"]


def _unet_inputs(unet, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=g)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor([10, 700]), ctx


def test_bpe_merges_the_most_frequent_pair_first_and_breaks_ties_by_the_smallest_pair():
    # "ab" x3 and "ba" x3 tie at 3 ("a"+"b</w>" vs "b"+"a</w>"), "abab" adds a and b once
    # each inside a word: ("a", "b") 2, ("b", "a") 1, ("a", "b</w>") 1 more.
    counts = Counter({"ab": 3, "ba": 3, "abab": 1})
    assert learn_merges(counts, max_merges=10) == [("a", "b</w>"), ("b", "a</w>")]
    assert learn_merges(counts, max_merges=1) == [("a", "b</w>")]
    assert learn_merges(counts, max_merges=10, min_frequency=5) == []


def test_the_same_corpus_always_gives_the_same_tokenizer(tmp_path):
    """The pipeline's own prompts, which the tokenizers library's trainer turned into
    a different vocabulary from one call to the next (ties between pair counts)."""
    prompts = [f"a photo of a {word}" for word in synthetic.GENERIC_CLASSES] * 3 + [
        f"a {word} in {style} style" for word in synthetic.GENERIC_CLASSES for style in synthetic.STYLE_NAMES
    ]
    files = []
    for attempt in range(3):
        build_tokenizer(prompts, tmp_path / str(attempt), extra_words=EXTRA)
        files.append({name: (tmp_path / str(attempt) / name).read_bytes() for name in ("vocab.json", "merges.txt")})
    assert files[0] == files[1] == files[2]


def test_tiny_pipeline_has_sd_structure_and_round_trips(tmp_path, tokenizer_dir):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    tok = _load_tokenizer(tokenizer_dir)
    pipe = build_tiny_pipeline(TinyModelSettings(resolution=32), tok)
    names = {n for n, _ in pipe.unet.named_modules()}
    for attn in ("attn1", "attn2"):
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            assert any(n.endswith(f"{attn}.{proj}") for n in names), (attn, proj)
    assert pipe.vae_scale_factor * pipe.unet.config.sample_size == 32
    assert pipe.safety_checker is None and pipe.feature_extractor is None

    pipe.save_pretrained(tmp_path / "model")
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "model")
    generic = DiffusionPipeline.from_pretrained(tmp_path / "model")
    assert type(generic) is StableDiffusionPipeline
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert loaded.tokenizer("a photo of zwz").input_ids == tok("a photo of zwz").input_ids

    before, after = pipe.unet.state_dict(), loaded.unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x, t, ctx = _unet_inputs(pipe.unet)
    with torch.no_grad():
        torch.testing.assert_close(loaded.unet(x, t, ctx).sample, pipe.unet(x, t, ctx).sample, rtol=0, atol=1e-5)


def test_same_seed_builds_the_same_model_and_leaves_global_rng_alone(tokenizer_dir):
    tok = _load_tokenizer(tokenizer_dir)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_pipeline(TinyModelSettings(resolution=32, seed=3), tok)
    assert torch.equal(torch.rand(3), expected)
    b = build_tiny_pipeline(TinyModelSettings(resolution=32, seed=3), tok)
    c = build_tiny_pipeline(TinyModelSettings(resolution=32, seed=4), tok)
    sa, sb, sc = a.unet.state_dict(), b.unet.state_dict(), c.unet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_position_embedding_scale_multiplies_only_the_position_table(tokenizer_dir):
    tok = _load_tokenizer(tokenizer_dir)
    plain = build_tiny_pipeline(TinyModelSettings(resolution=32), tok).text_encoder.state_dict()
    scaled = build_tiny_pipeline(TinyModelSettings(resolution=32, position_embedding_scale=25.0), tok)
    scaled = scaled.text_encoder.state_dict()
    position = [k for k in plain if k.endswith("position_embedding.weight")]
    assert len(position) == 1
    for key in plain:
        expected = plain[key] * 25.0 if key in position else plain[key]
        assert torch.equal(scaled[key], expected), key


def test_peft_lora_attaches_to_the_attention_projections(tokenizer_dir):
    from peft import LoraConfig

    pipe = build_tiny_pipeline(TinyModelSettings(resolution=32), _load_tokenizer(tokenizer_dir))
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora = [n for n, _ in pipe.unet.named_parameters() if "lora_" in n]
    assert lora and any("attn2.to_k" in n for n in lora) and any("attn1.to_out.0" in n for n in lora)


def _micro_examples(n=16, size=32):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(120, 255, 3)))
        draw = ImageDraw.Draw(im)
        colour = tuple(int(v) for v in rng.integers(0, 120, 3))
        lo, hi = int(rng.integers(2, 10)), int(rng.integers(20, 30))
        if i % 2:
            draw.ellipse([lo, lo, hi, hi], fill=colour)
            out.append((im, "a photo of a ball"))
        else:
            draw.polygon([(lo, hi), ((lo + hi) // 2, lo), (hi, hi)], fill=colour)
            out.append((im, "image of a house"))
    return out


@pytest.fixture(scope="module")
def micro_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    examples = _micro_examples()
    lines = []
    first = pretrain_tiny_model(examples, root / "a", MICRO, extra_words=RARE_TOKENS, log=lines.append)
    second = pretrain_tiny_model(examples, root / "b", MICRO, extra_words=RARE_TOKENS, log=lambda _: None)
    return examples, first, second, lines


def test_the_noise_schedule_ends_at_pure_noise_and_the_model_predicts_the_velocity(tokenizer_dir):
    from diffusers import DDPMScheduler

    pipe = build_tiny_pipeline(TinyModelSettings(resolution=32), _load_tokenizer(tokenizer_dir))
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    assert schedule.config.prediction_type == "v_prediction"
    # Zero terminal SNR: nothing of the image is left at the last timestep, while the
    # schedule starts where SD's does.
    assert float(schedule.alphas_cumprod[-1]) < 1e-6
    assert float(schedule.alphas_cumprod[0]) == pytest.approx(1 - 0.00085, rel=1e-3)
    pipe.scheduler.set_timesteps(10)
    assert int(pipe.scheduler.timesteps[0]) == 999  # sampling starts at pure noise


def test_recoloured_copies_permute_invert_and_darken_each_image():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 4, 4, generator=g) * 2 - 1
    copies = recoloured_copies(images, torch.Generator().manual_seed(1))
    assert copies.shape == images.shape
    x, y = (images + 1) / 2, (copies + 1) / 2
    inverted = darkened = 0
    for original, copy in zip(x, y):
        # Some channel order of the image or of its negative, times one factor in [0.2, 1].
        fits = []
        for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
            for invert in (False, True):
                base = original[list(order)]
                base = 1 - base if invert else base
                factor = float((base * copy).sum() / (base * base).sum())
                if torch.allclose(copy, factor * base, atol=1e-5) and 0.2 - 1e-6 <= factor <= 1 + 1e-6:
                    fits.append((invert, factor))
        assert fits, "a copy is not a recoloured image"
        inverted += any(invert for invert, _ in fits)
        darkened += all(factor < 1 - 1e-6 for _, factor in fits)
    # About half of each, drawn independently.
    assert 20 <= inverted <= 44 and 20 <= darkened <= 44


def test_micro_pretrain_saves_a_loadable_model_and_logs(micro_runs):
    from diffusers import DiffusionPipeline

    _, out, _, lines = micro_runs
    assert any(line.startswith("vae step") for line in lines)
    assert any(line.startswith("unet step") for line in lines)
    pipe = DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer.tokenize("sks") == ["sks</w>"]
    assert pipe.vae.config.scaling_factor != 1.0
    image = pipe("a photo of a ball", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)
    stats = json.loads((out / "pretrain_stats.json").read_text())
    assert stats["unet_loss_last"] < stats["unet_loss_first"]
    assert stats["vae_loss_last"] < stats["vae_loss_first"]


def test_micro_pretrain_lowers_the_training_loss(micro_runs):
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from continual_lora.images import training_images
    from continual_lora.models.noising import prediction_target

    examples, out, _, _ = micro_runs
    trained = StableDiffusionPipeline.from_pretrained(out)
    untrained = build_tiny_pipeline(MICRO, trained.tokenizer)
    noise_scheduler = DDPMScheduler.from_config(trained.scheduler.config)
    images = training_images([im for im, _ in examples], MICRO.resolution, crop="center").pixels
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z0 = trained.vae.encode(images).latent_dist.mean * trained.vae.config.scaling_factor
        ctx, _ = trained.encode_prompt([p for _, p in examples], "cpu", 1, False)
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, 1000, (z0.shape[0],), generator=g)
        zt = noise_scheduler.add_noise(z0, noise, t)
        # The velocity, for this model predicts it (on a zero-terminal-SNR schedule).
        target = prediction_target(noise_scheduler, z0, noise, t)
        losses = [torch.mean((p.unet(zt, t, ctx).sample - target) ** 2).item() for p in (trained, untrained)]
    assert losses[0] < 0.8 * losses[1], losses


def test_micro_pretrain_is_deterministic(micro_runs):
    _, first, second, _ = micro_runs
    for part in ("unet", "vae", "text_encoder"):
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        a, b = load_file(first / part / name), load_file(second / part / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_sample_grid_writes_one_row_per_prompt(tmp_path, tokenizer_dir):
    pipe = build_tiny_pipeline(TinyModelSettings(resolution=32), _load_tokenizer(tokenizer_dir))
    out = sample_grid(pipe, ["a photo of a ball", "image of a house"], tmp_path / "grid.png",
                      num_inference_steps=2, images_per_prompt=3, upscale=2)
    assert Image.open(out).size == (3 * 32 * 2, 2 * 32 * 2)


def test_the_schema_states_the_same_defaults_as_the_settings():
    # Two places state them: the workflow reads the schema's, the package's callers the
    # dataclass's, and one model must come of both.
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    in_schema = {key: spec["default"] for key, spec in schema["properties"]["tiny_model"]["properties"].items()}
    # The model's folder name, which the workflow keeps out of what it pretrains with.
    assert in_schema.pop("name") == "tiny"
    in_settings = {field.name: field.default for field in dataclasses.fields(TinyModelSettings)}
    assert in_schema == in_settings
