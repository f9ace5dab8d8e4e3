"""Our SDXL recipe against the reference recipe, side by side on one GPU.

Both recipes train a rank-64 LoRA (config/sdxl.yaml's lora section) on the exact SDXL
base UNet at 1024 px, with random weights (benchmarks/sdxl_arch.py; nothing comes from
the hub), and generate 50-step images from it:

- ours: the settings config/sdxl.yaml trains with (the paper's: float32, 8-bit AdamW,
  gradient checkpointing; PyTorch SDPA attention, the task's images encoded by the VAE
  once per job and the prompt once), through the package's own training code
  (attach_adapter, CachedTask.of_pixels, and TrainingStep, the step a train_task job
  repeats); generation at the preset's batch size and precision from a model whose
  update is added to it (apply_update). ``--ours-mixed-precision bf16`` times the
  faster opt-in recipe.
- reference: the paper's code (its modified diffusers train_dreambooth_lora_sdxl.py,
  no mixed precision: float32 throughout), the VAE encoding every step's images before
  the same TrainingStep, 8-bit AdamW (bitsandbytes), gradient checkpointing;
  generation in batches of 5 in float32 with the adapter loaded unfused, as
  ``load_lora_weights`` leaves it.

Text encoders are built so their memory counts, but the UNet is fed random embeddings
of the right shapes. One JSON is written; the ratios are printed.

    python benchmarks/gpu_recipes.py --out gpu.json                # on a GPU
    python benchmarks/gpu_recipes.py --out gpu.json --extras all   # and the variants: 8 min on an H200
    python benchmarks/gpu_recipes.py --smoke --out smoke.json  # CPU, tiny, seconds
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdxl_arch as arch
import torch
import yaml
from benchlib import REPO, Clock, machine, max_rss_bytes, write_json
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from continual_lora.generation import fixed_latents
from continual_lora.lora import (
    LoraSpec,
    attach_adapter,
    factor_deltas,
    fresh_factors,
    linear_shapes,
)
from continual_lora.matmul_precision import tf32_matmuls
from continual_lora.model_update import apply_update
from continual_lora.training import (
    CachedTask,
    EpochOrder,
    MixedPrecision,
    TrainingSettings,
    TrainingStep,
    make_optimizer,
)

PRESET = REPO / "config" / "sdxl.yaml"
# The reference recipe (docs/reproduction.md): float32, checkpointing, 8-bit AdamW.
REFERENCE_TRAINING = dict(mixed_precision="no", gradient_checkpointing=True, optimizer="adamw_8bit")
REFERENCE_GENERATION_BATCH = 5
N_TASK_IMAGES = 5  # DreamBooth subjects have 4-6 photos


class Sizes:
    """The architecture and sizes of one mode (the real SDXL, or the CPU smoke model)."""

    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.unet = arch.SMOKE_UNET if smoke else arch.SDXL_UNET
        self.vae = arch.SMOKE_VAE if smoke else arch.SDXL_VAE
        self.text = arch.SMOKE_TEXT if smoke else arch.SDXL_TEXT
        self.text_encoders = (
            (arch.SMOKE_TEXT_ENCODER, arch.SMOKE_TEXT_ENCODER_2) if smoke else (arch.SDXL_TEXT_ENCODER, arch.SDXL_TEXT_ENCODER_2)
        )
        self.resolution = arch.SMOKE_RESOLUTION if smoke else arch.SDXL_RESOLUTION


def preset() -> dict:
    return yaml.safe_load(PRESET.read_text())


def build_unet(sizes: Sizes, device, dtype, seed: int = 0, attention: str = "sdpa") -> UNet2DConditionModel:
    # Initialised on the device itself: 2.6 B parameters initialise in seconds on a GPU
    # and in minutes on a CPU. Every recipe gets the same weights from the same seed.
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**sizes.unet)
    if attention == "classic":
        # softmax(QK^T)V written out, the attention diffusers used before SDPA.
        unet.set_attn_processor(AttnProcessor())
    # .to(device) too: a buffer created on an explicit device would escape the context.
    return unet.to(device=device, dtype=dtype).requires_grad_(False)



def build_vae(sizes: Sizes, device, dtype, seed: int = 1) -> AutoencoderKL:
    torch.manual_seed(seed)
    with torch.device(device):
        vae = AutoencoderKL(**sizes.vae)
    return vae.to(device=device, dtype=dtype).requires_grad_(False).eval()


def build_text_encoders(sizes: Sizes, device, dtype) -> list[torch.nn.Module]:
    first, second = sizes.text_encoders
    with torch.device(device):
        encoders = [CLIPTextModel(CLIPTextConfig(**first)), CLIPTextModelWithProjection(CLIPTextConfig(**second))]
    return [e.to(device=device, dtype=dtype).requires_grad_(False).eval() for e in encoders]


def random_condition(sizes: Sizes, batch: int, device, dtype, seed: int = 2) -> dict:
    """UNet conditioning of SDXL's shapes: hidden states, pooled embedding, time ids."""
    g = torch.Generator().manual_seed(seed)
    res = sizes.resolution
    return {
        "encoder_hidden_states": torch.randn(batch, sizes.text["tokens"], sizes.text["hidden"], generator=g).to(device, dtype),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(batch, sizes.text["pooled"], generator=g).to(device, dtype),
            "time_ids": torch.tensor([[res, res, 0, 0, res, res]], dtype=dtype).repeat(batch, 1).to(device),
        },
    }


def noise_scheduler() -> DDPMScheduler:
    # As train_task does: DDPM noising from the model's own scheduler config.
    return DDPMScheduler.from_config(EulerDiscreteScheduler(**arch.SDXL_SCHEDULER).config)


def optimizer_for(params, settings: TrainingSettings) -> tuple[torch.optim.Optimizer, str]:
    """The recipe's optimizer; 8-bit AdamW falls back to AdamW (recorded) without bitsandbytes."""
    try:
        optimizer = make_optimizer(params, settings)
        return optimizer, type(optimizer).__module__ + "." + type(optimizer).__name__
    except (ImportError, RuntimeError) as error:
        fallback = make_optimizer(params, TrainingSettings(**{**settings.__dict__, "optimizer": "adamw"}))
        return fallback, f"torch.optim.AdamW (fallback: {settings.optimizer} unavailable: {error})"


class Memory:
    """Peak accelerator memory since ``reset``; on a CPU the process's peak RSS."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.device = device

    def reset(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def current(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.cuda else max_rss_bytes()

    def peak(self) -> dict:
        if self.cuda:
            return {
                "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            }
        return {"peak_process_rss_bytes": max_rss_bytes()}


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def attention_processor(unet) -> str:
    return ", ".join(sorted({type(p).__name__ for p in unet.attn_processors.values()}))


def train_recipe(
    name: str, settings: TrainingSettings, sizes: Sizes, spec: LoraSpec, args, device,
    attention: str = "sdpa", steps: int | None = None, warmup: int | None = None,
) -> dict:  # fmt: skip
    """Time ``steps`` steps (after ``warmup``; default ``args.train_steps`` and
    ``args.warmup``) of one recipe's training loop."""
    clock, memory, times = Clock(device), Memory(device), {}
    reference = name == "reference"
    steps = steps or args.train_steps
    warmup = args.warmup if warmup is None else warmup
    release(device)
    with clock(times, "setup_s"):
        unet = build_unet(sizes, device, settings.weight_dtype, attention=attention)
        encoders = build_text_encoders(sizes, device, settings.weight_dtype)
        # Both keep the VAE in float32 whatever the precision ("to avoid NaN losses"),
        # as TaskTrainer.load does.
        vae = build_vae(sizes, device, torch.float32)
        generator = torch.Generator().manual_seed(0)
        optimizer_used = {}

        def recorded_optimizer(params, settings):
            optimizer, optimizer_used["name"] = optimizer_for(params, settings)
            return optimizer

        train_step = TrainingStep.on_new_adapter(
            unet,
            spec,
            fresh_factors(linear_shapes(unet, spec), spec.rank, generator),
            settings,
            precision=MixedPrecision(settings.weight_dtype, device),
            noise_scheduler=noise_scheduler(),
            generator=generator,
            optimizer_for=recorded_optimizer,
        )
        params = train_step.params
        # One row per task image, as CachedTask holds it (the reference path encodes a
        # batch of fresh images each step and uses the first rows).
        condition = random_condition(sizes, max(N_TASK_IMAGES, settings.batch_size), device, settings.weight_dtype)
    pixel_generator = torch.Generator().manual_seed(3)

    def task_images(n: int) -> torch.Tensor:
        res = sizes.resolution
        return torch.rand(n, 3, res, res, generator=pixel_generator).mul(2).sub(1)

    def encode_batch(pixels: torch.Tensor) -> CachedTask:
        # The reference's encoding: the whole batch through the VAE at once, every step.
        posterior = vae.encode(pixels.to(device, vae.dtype)).latent_dist
        return CachedTask(
            latent_mean=posterior.mean.float(),
            latent_std=posterior.std.float(),
            condition=condition,
            scaling=vae.config.scaling_factor,
            shift=0.0,
        )

    cached = None
    order = EpochOrder(N_TASK_IMAGES, generator)
    if not reference:
        with clock(times, "cache_s"):
            cached = CachedTask.of_pixels(vae, task_images(N_TASK_IMAGES), condition, device)
    weights_bytes = memory.current()
    # The peak of the steps, resident weights included; building a UNet in float32
    # before casting it is a transient no recipe has.
    memory.reset()

    losses = []

    def step():
        # Ours samples from the cached posteriors; the reference encodes this step's
        # image first, as its training loop does.
        if reference:
            with torch.no_grad():
                task = encode_batch(task_images(settings.batch_size))
            index = torch.arange(settings.batch_size)
        else:
            task, index = cached, order.next_batch(settings.batch_size)
        losses.append(train_step(task, index))

    with clock(times, "warmup_s"):
        for _ in range(warmup):
            step()
    with clock(times, "steps_s"):
        for _ in range(steps):
            step()
    step_s = times["steps_s"] / steps
    result = {
        "settings": {k: getattr(settings, k) for k in ("mixed_precision", "gradient_checkpointing", "optimizer", "batch_size", "resolution")},
        "optimizer_used": optimizer_used["name"],
        "vae_dtype": str(vae.dtype).removeprefix("torch."),
        "vae_encodes_every_step": reference,
        "attention_processor": attention_processor(unet),
        "tf32_matmuls": torch.backends.cuda.matmul.allow_tf32,
        "lora_parameters": sum(p.numel() for p in params),
        "resident_text_encoder_parameters": sum(p.numel() for e in encoders for p in e.parameters()),
        "lora_dtype": str(params[0].dtype).removeprefix("torch."),
        "timed_steps": steps,
        "step_s": step_s,
        "steps_per_s": 1.0 / step_s,
        "setup_s": times["setup_s"],
        "cache_s": times.get("cache_s", 0.0),
        "resident_after_setup_bytes": weights_bytes,
        **memory.peak(),
        # Every one finite: the step stops the recipe at a loss that is not, as it does a job.
        "losses": losses,
    }
    return result


def generation_recipe(
    name: str, sizes: Sizes, spec: LoraSpec, batch: int, dtype: torch.dtype, args, config, device,
    attention: str = "sdpa", compile_unet: bool = False, extrapolate: bool = False, update: str = "as the pipeline holds it",
) -> dict:  # fmt: skip
    """Images per second of ``args.gen_batches`` batches of ``args.gen_steps`` steps.

    With ``extrapolate``, two short batches are timed instead (2 and
    ``args.extra_gen_steps`` steps): their difference is the time of a sampler step, and
    the rest the fixed cost of a batch (the VAE decoding, mostly), from which the
    ``args.gen_steps``-step rate follows. The variants use it to save device time;
    ``generate-float32-extrapolated`` checks it against the measured rate.
    """
    clock, memory, times = Clock(device), Memory(device), {}
    release(device)
    evaluation = config["evaluation"]
    generator = torch.Generator().manual_seed(0)
    with clock(times, "setup_s"):
        unet = build_unet(sizes, device, dtype, attention=attention)
        factors = fresh_factors(linear_shapes(unet, spec), spec.rank, generator)
        # A trained adapter has B != 0; the values do not matter for timing.
        factors = {m: (a, torch.randn(b.shape, generator=generator) * 1e-3) for m, (a, b) in factors.items()}
    loading = {}
    if name == "ours":
        # What load_pipeline(model, checkpoint_deltas(handoff, device)) does for an
        # adapter handoff: the update computed on the device, then added in place.
        with clock(loading, "factor_deltas_s"):
            deltas = factor_deltas(factors, spec.scale, device)
        with clock(loading, "apply_update_s"):
            if update == "fused":
                # Added into 16-bit weights, rounding away the elements smaller than
                # W0's last place: what holding the update beside them costs, measured.
                modules = dict(unet.named_modules())
                with torch.no_grad():
                    for module, delta in deltas.items():
                        modules[module].weight += delta.to(modules[module].weight.dtype)
            else:
                apply_update(unet, deltas)
        loading["delta_bytes"] = sum(d.numel() * d.element_size() for d in deltas.values())
        del deltas
    else:
        # load_lora_weights leaves peft layers in the model's precision, unfused.
        attach_adapter(unet, spec, factors)
        unet.to(dtype=dtype)
    unet.eval()
    if compile_unet:
        # Compiled on the first call, which the warm-up batch makes (its time says so).
        unet.compile(backend=args.compile_backend)
    vae = build_vae(sizes, device, dtype)
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
        unet=unet, scheduler=EulerDiscreteScheduler(**arch.SDXL_SCHEDULER), add_watermarker=False,
    )  # fmt: skip
    pipeline.set_progress_bar_config(disable=True)
    condition = random_condition(sizes, batch, device, dtype)
    latents = fixed_latents(pipeline, batch, evaluation.get("latent_seed", 42), sizes.resolution).to(device, dtype)
    resident = memory.current()
    memory.reset()

    def draw(steps: int):
        return pipeline(
            prompt_embeds=condition["encoder_hidden_states"],
            pooled_prompt_embeds=condition["added_cond_kwargs"]["text_embeds"],
            negative_prompt_embeds=torch.zeros_like(condition["encoder_hidden_states"]),
            negative_pooled_prompt_embeds=torch.zeros_like(condition["added_cond_kwargs"]["text_embeds"]),
            latents=latents,
            num_inference_steps=steps,
            guidance_scale=evaluation["guidance_scale"],
            height=sizes.resolution,
            width=sizes.resolution,
            generator=torch.Generator().manual_seed(0),
        ).images

    if args.gen_warmup or compile_unet:
        with clock(times, "warmup_s"):
            draw(2)
    timing = {}
    if extrapolate:
        short, long = 2, args.extra_gen_steps
        with clock(times, "short_s"):
            images = draw(short)
        with clock(times, "long_s"):
            images = draw(long)
        step_s = (times["long_s"] - times["short_s"]) / (long - short)
        fixed_s = times["short_s"] - short * step_s
        batch_s = fixed_s + args.gen_steps * step_s
        n_images = batch
        timing = {"timed_steps": [short, long], "sampler_step_s": step_s, "fixed_s_per_batch": fixed_s,
                  "generate_s": batch_s, "timing": f"extrapolated to {args.gen_steps} steps"}  # fmt: skip
    else:
        with clock(times, "generate_s"):
            for _ in range(args.gen_batches):
                images = draw(args.gen_steps)
        n_images = batch * args.gen_batches
        timing = {"generate_s": times["generate_s"], "timing": "measured"}
    result = {
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": batch,
        "inference_steps": args.gen_steps,
        "guidance_scale": evaluation["guidance_scale"],
        "lora": "fused into the weights" if name == "ours" else "unfused peft adapter",
        "update": update if name == "ours" else "a peft adapter",
        "attention_processor": attention_processor(unet),
        "compiled": compile_unet,
        "tf32_matmuls": torch.backends.cuda.matmul.allow_tf32,
        "images": n_images,
        "images_returned": len(images),
        **timing,
        "images_per_s": n_images / timing["generate_s"],
        "s_per_image": timing["generate_s"] / n_images,
        "setup_s": times["setup_s"],
        "warmup_s": times.get("warmup_s", 0.0),
        "resident_after_setup_bytes": resident,
        **loading,
        **memory.peak(),
    }
    return result


# The paper's metric networks at their published sizes (random weights): DINO ViT-S/16,
# CLIP ViT-B/32 (transformers' CLIPConfig defaults are that model), CSD on CLIP ViT-L/14.
DINO_VITS16 = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                   image_size=224, patch_size=16)  # fmt: skip
CSD_VITL14 = dict(width=1024, layers=24, patch=14, grid=16, mlp=4096, style_dim=768)
SMOKE_DINO = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=224, patch_size=32)  # fmt: skip
SMOKE_CSD = dict(width=64, layers=2, patch=14, grid=16, mlp=128, style_dim=16)
SAMPLES_PER_TASK = 40  # 5 templates x 8 samples, what one checkpoint-task pair scores


def metric_networks(root: Path, smoke: bool) -> dict[str, dict]:
    """Each paper metric's settings, pointing at a random network of its size saved in
    the layout its loader reads."""
    import transformers
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    # The CSD snapshot writer the tests use, at CSD's size here.
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_metric_models import build_csd_checkpoint

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    ViTModel(ViTConfig(**(SMOKE_DINO if smoke else DINO_VITS16)), add_pooling_layer=False).save_pretrained(root / "dino")
    clip = CLIPConfig(text_config=dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2),
                      vision_config=dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                         patch_size=32)) if smoke else CLIPConfig()  # fmt: skip
    CLIPModel(clip).save_pretrained(root / "clip")
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor_cls(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(root / "clip")
    (root / "csd").mkdir()
    csd, _ = build_csd_checkpoint(root / "csd", **(SMOKE_CSD if smoke else CSD_VITL14))
    return {"dino": {"model": str(root / "dino")}, "clip_i": {"model": str(root / "clip")}, "csd": {"checkpoint": str(csd)}}


def scoring_costs(sizes: Sizes, args, device) -> dict:
    """Seconds per image of each paper metric's embedding (its preprocessing on the CPU
    included), on one checkpoint-task pair's generated images at full resolution, with
    the metric backends the scoring jobs use."""
    from PIL import Image

    from continual_lora.scoring.base import get_metric

    clock, memory = Clock(device), Memory(device)
    n = 4 if sizes.smoke else SAMPLES_PER_TASK
    g = torch.Generator().manual_seed(4)
    res = sizes.resolution
    images = [Image.fromarray(torch.randint(0, 256, (res, res, 3), generator=g, dtype=torch.uint8).numpy()) for _ in range(n)]
    result = {"images": n, "image_size": res}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in metric_networks(Path(tmp), sizes.smoke).items():
            times = {}
            release(device)
            with clock(times, "load_s"):
                metric = get_metric(name, settings, device)
            metric.embed(images[:2])  # kernel selection and allocator growth, untimed
            memory.reset()
            with clock(times, "embed_s"):
                features = metric.embed(images)
            result[name] = {
                **times,
                "parameters": sum(p.numel() for p in metric.model.parameters()),
                "features": list(features.shape),
                "s_per_image": times["embed_s"] / n,
                **memory.peak(),
            }
            del metric
    return result


@dataclass
class Bench:
    """What every measurement needs: the sizes, the LoRA, the options, the preset."""

    sizes: Sizes
    spec: LoraSpec
    args: argparse.Namespace
    config: dict
    device: torch.device
    ours: TrainingSettings

    def train(self, settings: TrainingSettings | None = None, **options) -> dict:
        steps = dict(steps=self.args.extra_train_steps, warmup=min(self.args.warmup, 2))
        return train_recipe("ours", settings or self.ours, self.sizes, self.spec, self.args, self.device, **steps | options)

    def generate(self, batch: int | None = None, dtype: torch.dtype = torch.float32, **options) -> dict:
        batch = batch or self.config["evaluation"]["batch_size"]
        return generation_recipe(
            "ours", self.sizes, self.spec, batch, dtype, self.args, self.config, self.device, extrapolate=True, **options
        )

    def with_tf32(self, measure, *a, **kw) -> dict:
        with tf32_matmuls(True):
            return measure(*a, **kw)


# What may make the paper's recipe cheaper, each against ours: its training step
# (a few steps after a shorter warm-up) or its sampling (extrapolated to 50 steps), or
# the metrics' cost. In the order the device run takes them, most telling first, so a
# run cut short keeps the ones that matter most.
EXTRAS = {
    "scoring": lambda b: scoring_costs(b.sizes, b.args, b.device),
    "train-no-checkpointing": lambda b: b.train(replace(b.ours, gradient_checkpointing=False)),
    "generate-float32-extrapolated": lambda b: b.generate(),
    "generate-batch-10": lambda b: b.generate(batch=10),
    "train-bf16": lambda b: b.train(replace(b.ours, mixed_precision="bf16")),
    "generate-float16": lambda b: b.generate(dtype=torch.float16),
    "train-tf32": lambda b: b.with_tf32(b.train),
    "generate-tf32": lambda b: b.with_tf32(b.generate),
    "train-classic-attention": lambda b: b.train(attention="classic"),
    "generate-classic-attention": lambda b: b.generate(attention="classic"),
    "generate-compiled": lambda b: b.generate(compile_unet=True),
    # The combinations the variants above point to, and ours at the variants' protocol.
    "train-float32-short": lambda b: b.train(),
    "train-no-checkpointing-tf32": lambda b: b.with_tf32(b.train, replace(b.ours, gradient_checkpointing=False)),
    "train-no-checkpointing-bf16": lambda b: b.train(replace(b.ours, gradient_checkpointing=False, mixed_precision="bf16")),
    "generate-float16-fused": lambda b: b.generate(dtype=torch.float16, update="fused"),
    "generate-tf32-batch-10": lambda b: b.with_tf32(b.generate, batch=10),
}


def paper_workload(config: dict) -> dict:
    """What a full reproduction of the paper runs, from the preset's protocol values."""
    experiments = config["experiments"].values()
    evaluation = config["evaluation"]
    train_jobs = images = 0
    scored = {}
    for experiment in experiments:
        runs = len(experiment["order_seeds"]) * len(experiment["training_seeds"])
        tasks = experiment["n_tasks"]
        per_checkpoint_task = len(evaluation["templates"][experiment["domain"]]) * evaluation["samples_per_prompt"]
        pairs = runs * len(config["methods"]) * tasks * (tasks + 1) // 2
        train_jobs += runs * len(config["methods"]) * tasks
        experiment_images = pairs * per_checkpoint_task + tasks * per_checkpoint_task  # + the base model's row
        images += experiment_images
        for metric in experiment["metrics"]:
            scored[metric] = scored.get(metric, 0) + experiment_images
    return {
        "train_jobs": train_jobs,
        "train_steps": train_jobs * config["training"]["steps"],
        "images": images,
        "images_scored_by_metric": scored,
        "inference_steps": evaluation["inference_steps"],
    }


def gpu_hours(workload: dict, step_s: float, images_per_s: float) -> dict:
    train = workload["train_steps"] * step_s / 3600
    generate = workload["images"] / images_per_s / 3600
    return {"train_h": train, "generate_h": generate, "total_h": train + generate}


def scoring_hours(workload: dict, scoring: dict) -> float:
    """The metric networks' embedding of every generated image (references aside: a
    few per task)."""
    return sum(n * scoring[metric]["s_per_image"] for metric, n in workload["images_scored_by_metric"].items()) / 3600


def variant_hours(workload: dict, result: dict) -> dict:
    """The paper's GPU-hours with one variant in place of ours: a training variant's
    step time with our sampling, or a sampling variant's rate with our training."""
    train, generation = result["training"]["ours"], result["generation"]["ours"]
    hours = {}
    for name, extra in result["extras"].items():
        if name.startswith("train-") and "step_s" in extra:
            hours[name] = gpu_hours(workload, extra["step_s"], generation["images_per_s"])
        elif name.startswith("generate-") and "images_per_s" in extra:
            hours[name] = gpu_hours(workload, train["step_s"], extra["images_per_s"])
    return hours


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: tests the script in seconds")
    parser.add_argument("--out", default="benchmarks/results/gpu_recipes.json")
    parser.add_argument("--train-steps", type=int, help="timed training steps per recipe (default 10; smoke 1)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3; smoke 0)")
    parser.add_argument("--gen-steps", type=int, help="sampler steps (default: the preset's 50; smoke 2)")
    parser.add_argument("--gen-batches", type=int, default=1, help="timed batches per recipe")
    parser.add_argument(
        "--ours-dtype", choices=["float32", "bfloat16", "float16"], help="generation dtype (default: the preset's)"
    )
    parser.add_argument(
        "--ours-mixed-precision", choices=["no", "bf16", "fp16"], help="training precision (default: the preset's)"
    )
    parser.add_argument("--device", default=None, help="default: cuda (smoke: cpu)")
    parser.add_argument(
        "--extras", nargs="*", default=[], choices=[*EXTRAS, "all"], metavar="EXTRA",
        help=f"measurements after the comparison, in this order ('all': every one): {', '.join(EXTRAS)}",
    )  # fmt: skip
    parser.add_argument("--extra-train-steps", type=int, help="timed steps of a training variant (default 5; smoke 1)")
    parser.add_argument("--extra-gen-steps", type=int, help="the long batch of an extrapolated sampling (default 8; smoke 4)")
    parser.add_argument("--only-extras", action="store_true", help="skip the comparison, measure the extras only")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of generate-compiled")
    args = parser.parse_args(argv)
    args.train_steps = args.train_steps or (1 if args.smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.smoke else 3)
    # A 2-step batch first, so kernel selection and allocator growth stay out of the timing.
    args.gen_warmup = not args.smoke
    args.extra_train_steps = args.extra_train_steps or (1 if args.smoke else 5)
    args.extra_gen_steps = args.extra_gen_steps or (4 if args.smoke else 8)
    if "all" in args.extras:
        args.extras = list(EXTRAS)
    return args


def compare(
    result: dict, ours: TrainingSettings, reference: TrainingSettings, sizes: Sizes, spec: LoraSpec, args, config, device,
    workload: dict,
):  # fmt: skip
    """Ours against the reference recipe: training, sampling, their ratios, the paper's GPU-hours."""
    reference_dtype = torch.float32
    for name, settings in (("ours", ours), ("reference", reference)):
        result["training"][name] = train_recipe(name, settings, sizes, spec, args, device)
        print(f"train {name}: {result['training'][name]['step_s']:.3f} s/step", flush=True)
        write_json(args.out, result)  # after each measurement: a run cut short keeps what it measured
    ours_dtype = getattr(torch, args.ours_dtype or config["evaluation"]["dtype"])
    batches = {"ours": (config["evaluation"]["batch_size"], ours_dtype), "reference": (REFERENCE_GENERATION_BATCH, reference_dtype)}
    for name, (batch, dtype) in batches.items():
        result["generation"][name] = generation_recipe(name, sizes, spec, batch, dtype, args, config, device)
        print(f"generate {name}: {result['generation'][name]['images_per_s']:.3f} images/s", flush=True)
        write_json(args.out, result)

    train, generation = result["training"], result["generation"]
    peak = "peak_allocated_bytes" if device.type == "cuda" else "peak_process_rss_bytes"
    result["ratios"] = {
        "train_step_time_reference_over_ours": train["reference"]["step_s"] / train["ours"]["step_s"],
        "train_peak_memory_reference_over_ours": train["reference"][peak] / train["ours"][peak],
        "generation_images_per_s_ours_over_reference": generation["ours"]["images_per_s"] / generation["reference"]["images_per_s"],
        "generation_peak_memory_ours_over_reference": generation["ours"][peak] / generation["reference"][peak],
    }
    hours = {
        name: gpu_hours(workload, train[name]["step_s"], generation[name]["images_per_s"]) for name in ("ours", "reference")
    }
    result["paper_reproduction"] = {
        **workload,
        "formula": "gpu_h = train_steps * step_s / 3600 + images / images_per_s / 3600 "
        "(excludes per-job model loading and the CLIP/DINO/CSD scoring)",
        "gpu_hours": hours if not args.smoke else "not meaningful in smoke mode",
    }
    if not args.smoke:
        result["ratios"]["paper_gpu_hours_reference_over_ours"] = hours["reference"]["total_h"] / hours["ours"]["total_h"]
    write_json(args.out, result)
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}", flush=True)
    if not args.smoke:
        for name, h in hours.items():
            print(f"paper reproduction, {name}: {h['train_h']:.0f} GPU-h training + {h['generate_h']:.0f} GPU-h generation")



def main(argv=None) -> dict:
    args = parse_args(argv)
    diffusers_logging.set_verbosity_error()
    started = time.perf_counter()
    config = preset()
    sizes = Sizes(args.smoke)
    args.gen_steps = args.gen_steps or (2 if args.smoke else config["evaluation"]["inference_steps"])
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke for the CPU check")
    spec = LoraSpec.from_config(config["lora"])
    sized = {"resolution": sizes.resolution} if args.smoke else {}
    chosen = {"mixed_precision": args.ours_mixed_precision} if args.ours_mixed_precision else {}
    ours = TrainingSettings.from_config(config["training"], **sized | chosen)
    reference = TrainingSettings.from_config(config["training"], **sized | REFERENCE_TRAINING)

    try:
        import bitsandbytes

        bnb = f"bitsandbytes {bitsandbytes.__version__}"
    except ImportError as error:
        bnb = f"absent ({error}): the reference recipe falls back to torch AdamW"
    with torch.device("meta"):
        counts = {
            "unet_parameters": sum(p.numel() for p in UNet2DConditionModel(**sizes.unet).parameters()),
            "vae_parameters": sum(p.numel() for p in AutoencoderKL(**sizes.vae).parameters()),
        }

    result = {
        "mode": "smoke" if args.smoke else "gpu",
        "machine": machine() | {"device": str(device)},
        "bitsandbytes": bnb,
        "architecture": {"resolution": sizes.resolution, **counts, "lora_rank": spec.rank, "lora_alpha": spec.alpha,
                         "target_modules": list(spec.target_modules)},
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "training": {},
        "generation": {},
        "extras": {},
    }
    print(f"{result['mode']} on {device}: UNet {counts['unet_parameters']:,} parameters, {bnb}", flush=True)
    workload = paper_workload(config)
    if not args.only_extras:
        compare(result, ours, reference, sizes, spec, args, config, device, workload)
    bench = Bench(sizes, spec, args, config, device, ours)
    for name in args.extras:
        try:
            result["extras"][name] = EXTRAS[name](bench)
        except Exception as error:  # noqa: BLE001 - one variant failing must not lose the others
            result["extras"][name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        extra = result["extras"][name]
        shown = {k: extra[k] for k in ("step_s", "images_per_s", "error") if k in extra}
        print(f"{name}: {shown or {m: extra[m]['s_per_image'] for m in extra if isinstance(extra[m], dict)}}", flush=True)
        if not args.smoke and "paper_reproduction" in result:
            result["paper_reproduction"]["variants_gpu_hours"] = variant_hours(workload, result)
            if "s_per_image" in result["extras"].get("scoring", {}).get("dino", {}):
                result["paper_reproduction"]["scoring_h"] = scoring_hours(workload, result["extras"]["scoring"])
        result["wall_s"] = time.perf_counter() - started
        write_json(args.out, result)
    result["wall_s"] = time.perf_counter() - started
    write_json(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
