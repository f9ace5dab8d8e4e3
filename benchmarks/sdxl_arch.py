"""Stable Diffusion XL base 1.0, written out: the UNet, VAE and scheduler
configurations as published with stabilityai/stable-diffusion-xl-base-1.0
(unet/config.json, vae/config.json, scheduler/scheduler_config.json) and
madebyollin/sdxl-vae-fp16-fix, so the benchmarks build the exact architecture with
random weights and never touch the hub.

``SMOKE_*`` keep every block type and conditioning path of SDXL at a size that runs on
a CPU in seconds; they exist only so the GPU script can be tested without a GPU.
"""

from __future__ import annotations

from continual_lora.models.noising import SD_NOISE_SCHEDULE

SDXL_UNET = dict(
    sample_size=128,  # 1024 px / 8
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=2048,  # CLIP ViT-L (768) + OpenCLIP bigG (1280) hidden states
    transformer_layers_per_block=(1, 2, 10),
    # diffusers' historical name: the number of heads per level (64 channels each).
    attention_head_dim=(5, 10, 20),
    dual_cross_attention=False,
    use_linear_projection=True,
    upcast_attention=False,
    resnet_time_scale_shift="default",
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # pooled bigG (1280) + 6 time ids x 256
    conv_in_kernel=3,
    conv_out_kernel=3,
    time_embedding_type="positional",
)

# The fp16-fix VAE has SDXL's VAE architecture; its config differs only in
# force_upcast, false because its activations stay in float16's range.
SDXL_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=0.13025,
    force_upcast=False,
)

# scheduler/scheduler_config.json: SD's noise schedule, sampled with Euler.
SDXL_SCHEDULER = SD_NOISE_SCHEDULE | dict(
    prediction_type="epsilon",
    interpolation_type="linear",
    timestep_spacing="leading",
    steps_offset=1,
    use_karras_sigmas=False,
)

# The conditioning the UNet receives: 77 tokens x 2048, the pooled 1280-vector and
# six size/crop ids per image.
SDXL_TEXT = dict(tokens=77, hidden=2048, pooled=1280, time_ids=6)
SDXL_RESOLUTION = 1024

SMOKE_UNET = SDXL_UNET | dict(
    sample_size=4,
    block_out_channels=(32, 64, 128),
    transformer_layers_per_block=(1, 2, 2),
    attention_head_dim=(1, 2, 4),
    norm_num_groups=8,
    cross_attention_dim=48,
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=16 + 6 * 8,
)
SMOKE_VAE = SDXL_VAE | dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=32)
SMOKE_TEXT = dict(tokens=77, hidden=48, pooled=16, time_ids=6)
SMOKE_RESOLUTION = 32

# The two text encoders, built only so that a training job's resident memory includes
# them as it does in both recipes (neither recipe frees them); the benchmarks feed the
# UNet random embeddings of the right shapes instead of running them.
SDXL_TEXT_ENCODER = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)  # fmt: skip
SDXL_TEXT_ENCODER_2 = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
    num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
)  # fmt: skip
SMOKE_TEXT_ENCODER = SDXL_TEXT_ENCODER | dict(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, projection_dim=16,
                                               bos_token_id=0, eos_token_id=1, pad_token_id=1)
SMOKE_TEXT_ENCODER_2 = SMOKE_TEXT_ENCODER | dict(hidden_size=32, intermediate_size=64, projection_dim=16)
