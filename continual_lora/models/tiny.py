"""A tiny Stable-Diffusion-format model that is built and pretrained offline on CPU.

The point of this module is that everything downstream (LoRA training, generation,
evaluation) only ever sees a normal diffusers folder, loaded with
``StableDiffusionPipeline.from_pretrained(path)``.  A real SD/SDXL hub id can then be
swapped in without touching that code.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from continual_lora.images import training_images
from continual_lora.models.noising import SD_NOISE_SCHEDULE, noisy_batch

__all__ = [
    "TinyModelSettings",
    "build_tokenizer",
    "build_tiny_pipeline",
    "clip_text_config",
    "pretrain_tiny_model",
    "sample_grid",
]


BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77  # what SD's CLIP uses; kept so prompt handling matches real models
_VOCAB_SIZE = 4096  # an upper bound: the synthetic prompts need a few hundred tokens


@dataclass(frozen=True)
class TinyModelSettings:
    """What the workflow can tune.  The defaults (``config/tiny-quick.yaml``'s model)
    pretrain in 9 to 20 minutes on 2 CPU cores (562 s and 798 s on 2026-12-03, the VAE
    31 s and 49 s of them), once per machine where the cache of pretrained models
    (``continual_lora.models.model_cache``) is on: at 1300 UNet steps the model drew
    most classes as blobs of their colours, at 4000 it draws their shapes.
    ``config.yaml``'s patterned, named corpus and three times the UNet steps take about
    40 minutes (2 319 s on 2026-12-05)."""

    resolution: int = 32  # image side in px; a multiple of 16
    pretrain_steps: int = 4000  # UNet steps
    vae_steps: int = 700  # VAE steps (batches of 16 half-size crops, then whole images)
    batch_size: int = 32  # UNet batch
    learning_rate: float = 4e-3  # UNet peak AdamW learning rate; the VAE keeps its own
    num_examples: int = 1024  # generic images the caller renders for the corpus
    seed: int = 0
    # torch threads, whatever the job was given: the weights depend on the thread count
    # (how sums are split), so it is part of what the model is, like its seed.
    threads: int = 2
    # The corpus's share of patterned instances under prompts that name their colours
    # and pattern, and those patterns' period scale (the caller renders the corpus).
    patterned_fraction: float = 0.0
    pattern_scale: float = 1.0
    # The plain images' share on a ground of a named colour, under "{colour} image of a
    # {class}": the style slot of "<style> image of a ball" then moves the ground.
    named_ground_fraction: float = 0.0
    # The text encoder's position table is multiplied by this, like the token table by
    # _TOKEN_EMBEDDING_SCALE: at 1 a word's output barely depends on where it stands,
    # so "teal and pink" and "pink and teal" reach the UNet as the same bag of words.
    position_embedding_scale: float = 1.0


# --------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table.

    Byte-level BPE works on these characters rather than raw bytes so that every
    byte (hence every prompt) has a vocabulary entry and nothing maps to <unk>.
    """
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def _clip_pre_tokenizer():
    from tokenizers import Regex, normalizers, pre_tokenizers

    # Same normalisation / word splitting as transformers' CLIPTokenizer, so that the
    # merges learned here are the ones that fire when the saved tokenizer is used.
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return normalizer, pre_tokenizer


def _apply_merges(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE on one pre-tokenized word (last symbol carries the </w> suffix)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _merged(parts: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            out.append(parts[i] + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


def learn_merges(word_counts: Counter[str], max_merges: int, min_frequency: int = 2) -> list[tuple[str, str]]:
    """BPE training on pre-tokenized words (the last symbol of a word carries </w>):
    merge the most frequent adjacent pair until none occurs ``min_frequency`` times.

    Ties go to the smallest pair, so the same corpus always gives the same merges; the
    tokenizers library's trainer breaks ties differently from one call to the next,
    which made the embedded model (its token ids) differ between identical runs.
    """
    words = {word: list(word[:-1]) + [word[-1] + "</w>"] for word in word_counts}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, parts in words.items():
            for pair in zip(parts, parts[1:]):
                pairs[pair] += word_counts[word]
        if not pairs:
            break
        pair, count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < min_frequency:
            break
        merges.append(pair)
        words = {word: _merged(parts, pair) for word, parts in words.items()}
    return merges


def build_tokenizer(corpus: Iterable[str], out_dir: str | Path, extra_words: Iterable[str] = ()):
    """Train a small byte-level BPE on ``corpus`` and save it in CLIP's on-disk format."""
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = [str(t) for t in corpus]
    extra_words = [str(w) for w in extra_words]
    normalizer, pre_tokenizer = _clip_pre_tokenizer()

    def words(text: str) -> list[str]:
        return [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]

    # Repeating the extra words makes BPE learn them as whole tokens like any frequent word.
    word_counts = Counter(word for text in corpus + extra_words * 4 for word in words(text))
    n_fixed = 2 * len(_bytes_to_unicode()) + 2  # every byte, alone and ending a word; BOS and EOS
    merges = learn_merges(word_counts, max_merges=_VOCAB_SIZE - n_fixed)

    # Extra words that BPE did not fully merge (e.g. rare tokens unseen in the corpus)
    # get a merge chain appended.  Appended merges have the highest rank, so they run
    # after every existing merge and cannot change how earlier words tokenize.
    ranks = {m: i for i, m in enumerate(merges)}
    for word in extra_words:
        for piece in words(word):
            parts = _apply_merges(piece, ranks)
            while len(parts) > 1:
                pair = (parts[0], parts[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                parts = [parts[0] + parts[1]] + parts[2:]

    # CLIP's vocab layout: byte chars, byte chars + </w>, merge results, specials.
    base = list(_bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}

    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out_dir / stale).unlink(missing_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(out_dir, model_max_length=MODEL_MAX_LENGTH)
    # Adds tokenizer_config.json (model_max_length, specials) next to vocab/merges.
    tokenizer.save_pretrained(out_dir)
    return CLIPTokenizer.from_pretrained(out_dir)


# --------------------------------------------------------------------------- model

# Architecture.  Chosen by measuring sample quality against CPU time, see
# pretrain_tiny_model: a 2-level VAE (32 px -> 16x16x4 latents keeps the patterns'
# two-pixel dots and stripes that a stronger compression blurs away) and a 3-level
# UNet with attention only at its 8x8 level (self-attention at 16x16 costs more than
# all the convolutions together on CPU).
_TEXT_WIDTH = 64
_TEXT_LAYERS = 2
_TEXT_HEADS = 4
_LATENT_CHANNELS = 4
_VAE_CHANNELS = (32, 64)
# GroupNorm with one channel per group is instance norm, which erases each image's
# mean colour; small VAE/UNet widths therefore need few groups.
_VAE_GROUPS = 4
_UNET_CHANNELS = (32, 64, 64)
_UNET_ATTENTION = (False, True, False)  # per level, from the highest resolution
_UNET_GROUPS = 8
_UNET_HEADS = 4
# A randomly initialised CLIP embeds tokens with std 0.02 while its attention output
# is O(1), so every output position is mostly the prompt's template ("a photo of")
# and the class word is nearly invisible to the UNet.  Scaling the token table up
# makes each token's identity dominate its own position.
_TOKEN_EMBEDDING_SCALE = 25.0

# Pretraining recipe (beyond TinyModelSettings).
_VAE_LR = 1e-3  # higher rates lose hue entirely
_VAE_BATCH = 16
_VAE_WHOLE_IMAGE_FRACTION = 0.1
_VAE_KL_WEIGHT = 1e-4
_VAE_COLOUR_WEIGHT = 0.3
_UNET_WEIGHT_DECAY = 0.01
_UNET_EMA = 0.999
_PROMPT_DROPOUT = 0.1
_STATS_FILE = "pretrain_stats.json"


def clip_text_config(tokenizer, *, width: int, layers: int, heads: int, intermediate_size: int, projection_dim: int):
    """A CLIP text encoder of the given size around ``tokenizer``: its vocabulary,
    context length and special tokens."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_dim,
    )


def _text_encoder_config(tokenizer):
    return clip_text_config(
        tokenizer,
        width=_TEXT_WIDTH,
        layers=_TEXT_LAYERS,
        heads=_TEXT_HEADS,
        intermediate_size=4 * _TEXT_WIDTH,
        projection_dim=_TEXT_WIDTH,
    )


def _unet_config(settings: TinyModelSettings) -> dict:
    return dict(
        sample_size=settings.resolution // 2 ** (len(_VAE_CHANNELS) - 1),
        in_channels=_LATENT_CHANNELS,
        out_channels=_LATENT_CHANNELS,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in _UNET_ATTENTION),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(_UNET_ATTENTION)),
        block_out_channels=_UNET_CHANNELS,
        layers_per_block=1,
        # diffusers' historical naming: this is the number of heads.
        attention_head_dim=_UNET_HEADS,
        cross_attention_dim=_TEXT_WIDTH,
        norm_num_groups=_UNET_GROUPS,
    )


def _vae_config(settings: TinyModelSettings) -> dict:
    n = len(_VAE_CHANNELS)
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=_VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=_LATENT_CHANNELS,
        norm_num_groups=_VAE_GROUPS,
        sample_size=settings.resolution,
        scaling_factor=1.0,  # set to the measured latent scale by pretraining
        mid_block_add_attention=False,
    )


def _scheduler_config() -> dict:
    # SD 1.x's noise schedule rescaled to a zero terminal SNR, with v-prediction and
    # sampling from the last timestep (Lin et al. 2024, as SD 2.x's v models can be
    # set up in diffusers). On SD's own schedule the noisiest latent still carries the
    # image's mean colour, so a model never learns to choose it: its samples keep the
    # pretraining corpus's average ground, and no fine-tuning can teach it a task's
    # black or grey one (the epsilon loss at those timesteps is already ~0.005).
    return SD_NOISE_SCHEDULE | dict(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        algorithm_type="dpmsolver++",
        solver_order=2,
        steps_offset=1,  # unused with trailing timesteps; diffusers warns about any other value
    )


def _position_embedding(text_encoder) -> torch.nn.Embedding:
    # transformers 4 nests the embeddings under text_model, 5 does not.
    return getattr(text_encoder, "text_model", text_encoder).embeddings.position_embedding


def build_tiny_pipeline(settings: TinyModelSettings, tokenizer):
    """Randomly initialised (seeded) tiny SD pipeline around ``tokenizer``."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    if settings.resolution % 16:
        raise ValueError(f"resolution must be a multiple of 16, got {settings.resolution}")
    # Fork so that seeding the initialisation leaves the caller's global RNG alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        text_encoder = CLIPTextModel(_text_encoder_config(tokenizer)).eval()
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight.mul_(_TOKEN_EMBEDDING_SCALE)
            if settings.position_embedding_scale != 1.0:
                _position_embedding(text_encoder).weight.mul_(settings.position_embedding_scale)
        torch.manual_seed(settings.seed + 1)
        vae = AutoencoderKL(**_vae_config(settings)).eval()
        torch.manual_seed(settings.seed + 2)
        unet = UNet2DConditionModel(**_unet_config(settings)).eval()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler(**_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# --------------------------------------------------------------------------- pretraining


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10%."""
    warmup = max(1, total // 20)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _should_log(step: int, total: int) -> bool:
    return step % max(1, total // 10) == 0 or step == total - 1


def recoloured_copies(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The corpus's images (in [-1, 1]) recoloured: channels permuted, half of them
    inverted, half of them darkened.

    The VAE is the model's codec: it has to represent every colour and tone a task may
    bring (neon on black, green scanlines, sepia paper), not only the pretraining
    corpus's plain objects on light grounds.  Trained on those alone it decodes a black
    ground as grey-green and a task's look is lost before the UNet ever sees it.  Only
    the VAE sees these copies; the UNet's prior is pretrained on the plain corpus.
    """
    n = images.shape[0]
    x = (images + 1) / 2
    order = torch.stack([torch.randperm(3, generator=gen) for _ in range(n)])
    x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
    invert = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    x = torch.where(invert, 1 - x, x)
    darken = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    x = torch.where(darken, x * (0.2 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)), x)
    return x * 2 - 1


def _train_vae(vae, images: torch.Tensor, settings: TinyModelSettings, gen: torch.Generator, log) -> tuple[float, float]:
    latent_channels = vae.config.latent_channels
    images = torch.cat([images, recoloured_copies(images, gen)]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        # Start with a tiny posterior std: at the default std of 1 the sampling noise
        # swamps the still-small encoder means and the decoder learns nothing early on.
        vae.quant_conv.bias[latent_channels:].fill_(-8.0)
    # The VAE learns colour axes in order of their variance in the data, so rarer hues
    # (greens, purples) come out wrong after a short schedule.  A low-pass colour loss
    # in a whitened colour space weights every axis equally.
    evals, evecs = torch.linalg.eigh(torch.cov(images.transpose(0, 1).reshape(3, -1)))
    whiten = evecs @ torch.diag(evals.clamp(min=1e-4).rsqrt()) @ evecs.T

    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=_VAE_LR, weight_decay=0.0, fused=True)
    steps = settings.vae_steps
    whole_from = int(steps * (1 - _VAE_WHOLE_IMAGE_FRACTION))
    n, res = images.shape[0], images.shape[-1]
    crop = res // 2
    first = smoothed = float("nan")
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _VAE_LR * _lr_factor(step, steps)
        x = images[torch.randint(0, n, (_VAE_BATCH,), generator=gen)]
        if step < whole_from:
            # Half-size crops make a step 4x cheaper; the final whole-image steps let
            # GroupNorm statistics settle on what actually gets encoded.
            i, j = torch.randint(0, res - crop + 1, (2,), generator=gen).tolist()
            x = x[:, :, i : i + crop, j : j + crop]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        # L1 keeps flat colour regions and thin outlines sharper than MSE alone.
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = posterior.kl().mean() / z[0].numel()
        colour = torch.einsum("ij,bjhw->bihw", whiten, F.avg_pool2d(recon - x, 4)).pow(2).mean()
        loss = rec + _VAE_KL_WEIGHT * kl + _VAE_COLOUR_WEIGHT * colour
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0:
            first = smoothed = rec.item()
        smoothed = 0.95 * smoothed + 0.05 * rec.item()
        if _should_log(step, steps):
            log(f"vae step {step + 1}/{steps}: reconstruction loss {smoothed:.4f}, kl {kl.item():.3f}")
    vae.eval()
    return first, smoothed


@torch.no_grad()
def _encode_latents(vae, images: torch.Tensor, chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, images.shape[0], chunk):
        posterior = vae.encode(images[i : i + chunk]).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def _train_unet(pipe, latent_mean, latent_std, cond, cond_index, uncond, settings, gen, log) -> tuple[float, float]:
    from diffusers import DDPMScheduler

    unet = pipe.unet
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet.train()
    opt = torch.optim.AdamW(
        unet.parameters(), lr=settings.learning_rate, weight_decay=_UNET_WEIGHT_DECAY, fused=True
    )
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]
    steps = settings.pretrain_steps
    n = latent_mean.shape[0]
    scale = pipe.vae.config.scaling_factor
    first = smoothed = float("nan")
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = settings.learning_rate * _lr_factor(step, steps)
        idx = torch.randint(0, n, (settings.batch_size,), generator=gen)
        batch = noisy_batch(noise_scheduler, latent_mean[idx], latent_std[idx], gen, scaling=scale)
        ctx = cond[cond_index[idx]]
        # Dropping the prompt teaches the unconditional branch used by classifier-free guidance.
        drop = torch.rand(len(idx), generator=gen) < _PROMPT_DROPOUT
        ctx = torch.where(drop[:, None, None], uncond.expand_as(ctx), ctx)
        pred = unet(batch.noisy, batch.timesteps, encoder_hidden_states=ctx).sample
        # The plain velocity loss weighs an image's error (x0) by SNR + 1, so the
        # noisiest timesteps, where the shapes and colours are decided, count fully.
        loss = F.mse_loss(pred, batch.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # EMA with a warm-up so that the average is not anchored at the random init.
        decay = min(_UNET_EMA, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        plain = loss.item()
        if step == 0:
            first = smoothed = plain
        smoothed = 0.98 * smoothed + 0.02 * plain
        if _should_log(step, steps):
            log(f"unet step {step + 1}/{steps}: velocity loss {smoothed:.4f}")
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    unet.eval()
    return first, smoothed


def pretrain_tiny_model(
    examples: Sequence[tuple[Image.Image, str]],
    out_dir: str | Path,
    settings: TinyModelSettings,
    extra_words: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> Path:
    """Build and pretrain the tiny model on ``examples``; save it as a diffusers folder.

    The text encoder stays frozen at its (seeded, rescaled) random initialisation:
    its per-token embeddings are distinct, which is all the UNet needs, and tokens
    that never occur in the corpus (rare identifiers) are then no different from
    the others.  Runs on CPU and is deterministic for a given seed and thread count.
    Images of another size than ``settings.resolution`` are brought to it as training
    images are (``continual_lora.images.training_images``, centre-cropped).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra_words = [str(w) for w in extra_words]
    if not examples:
        raise ValueError("pretrain_tiny_model needs at least one example")
    start = time.time()
    torch.set_num_threads(settings.threads)
    gen = torch.Generator().manual_seed(settings.seed)

    prompts = [str(p) for _, p in examples]
    tokenizer = build_tokenizer(prompts + extra_words, out_dir / "tokenizer", extra_words)
    pipe = build_tiny_pipeline(settings, tokenizer)
    pipe.set_progress_bar_config(disable=True)
    pixels = training_images([im.convert("RGB") for im, _ in examples], settings.resolution, crop="center").pixels
    # Channels-last, the memory layout the model has always been pretrained in: the
    # convolutions' arithmetic, hence its weights to the last bit, depend on it.
    images = pixels.contiguous(memory_format=torch.channels_last)
    log(
        f"pretraining the tiny model on {len(examples)} examples at {settings.resolution} px "
        f"(vocabulary {len(tokenizer)}, {torch.get_num_threads()} threads)"
    )

    vae_first, vae_last = _train_vae(pipe.vae, images, settings, gen, log)
    latent_mean, latent_std = _encode_latents(pipe.vae, images)
    # SD convention: scaling_factor brings the latents to unit variance for the UNet.
    scale = 1.0 / float(torch.sqrt(latent_mean.var() + latent_std.pow(2).mean()))
    pipe.vae.register_to_config(scaling_factor=scale)
    vae_seconds = time.time() - start
    log(f"vae done after {vae_seconds:.0f}s: reconstruction loss {vae_last:.4f}, scaling_factor {scale:.4f}")

    unique = sorted(set(prompts))
    with torch.no_grad():
        cond, _ = pipe.encode_prompt(unique, "cpu", 1, False)
        uncond, _ = pipe.encode_prompt([""], "cpu", 1, False)
    lookup = {p: i for i, p in enumerate(unique)}
    cond_index = torch.tensor([lookup[p] for p in prompts])
    unet_first, unet_last = _train_unet(pipe, latent_mean, latent_std, cond, cond_index, uncond, settings, gen, log)
    seconds = time.time() - start
    log(f"unet done after {seconds:.0f}s: velocity loss {unet_first:.4f} -> {unet_last:.4f}")

    pipe.save_pretrained(out_dir)
    stats = {
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "vae_loss_first": vae_first,
        "vae_loss_last": vae_last,
        "unet_loss_first": unet_first,
        "unet_loss_last": unet_last,
        "vae_scaling_factor": scale,
        "seconds_vae": vae_seconds,
        "seconds_total": seconds,
        "threads": torch.get_num_threads(),
        "parameters": {
            name: sum(p.numel() for p in getattr(pipe, name).parameters())
            for name in ("unet", "vae", "text_encoder")
        },
    }
    (out_dir / _STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    return out_dir


def sample_grid(
    pipeline_or_path,
    prompts: Sequence[str],
    out_png: str | Path,
    num_inference_steps: int = 25,
    seed: int = 0,
    images_per_prompt: int = 4,
    guidance_scale: float = 7.5,
    upscale: int = 2,
) -> Path:
    """Save a grid of samples, one row per prompt, NEAREST-upscaled for viewing."""
    from diffusers import DiffusionPipeline

    pipe = pipeline_or_path
    if isinstance(pipe, (str, Path)):
        pipe = DiffusionPipeline.from_pretrained(pipe)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for i, prompt in enumerate(prompts):
        rows.append(
            pipe(
                prompt,
                num_images_per_prompt=images_per_prompt,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(seed + i),
            ).images
        )
    w, h = rows[0][0].size
    grid = Image.new("RGB", (w * images_per_prompt, h * len(rows)))
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im, (c * w, r * h))
    if upscale > 1:
        grid = grid.resize((grid.width * upscale, grid.height * upscale), Image.NEAREST)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return out_png
