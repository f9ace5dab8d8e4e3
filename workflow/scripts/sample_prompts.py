"""Sample free prompts (the retention prompts, the concept pairs) with one model: a
checkpoint, or the base model."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.generation import GenerationSettings, generate_prompt_samples
from continual_lora.matmul_precision import tf32_matmuls
from continual_lora.models.loading import evaluated_pipeline, resolve_device

params = snakemake.params.generation
# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA;
# TF32 matrix products where evaluation.allow_tf32 asks for them.
with holding_gpu(), tf32_matmuls(params["allow_tf32"]):
    pipeline = evaluated_pipeline(
        params["base_model"],
        resolve_device(params["device"]),
        params["dtype"],
        params["method"],
        params["method_settings"],
        snakemake.input.get("handoff"),
        snakemake.input.get("task_lora"),
    )
    settings = GenerationSettings(**params["settings"] | {"templates": ()})
    with atomic_directory(snakemake.output[0]) as out_dir:
        rows = generate_prompt_samples(pipeline, [tuple(pair) for pair in params["prompts"]], settings, out_dir)
    print(f"generated {len(rows)} images of {len(params['prompts'])} prompt(s) with {type(pipeline.scheduler).__name__}")
