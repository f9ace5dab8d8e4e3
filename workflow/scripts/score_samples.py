"""Score one model's samples on every task it has seen."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.evaluation import score_samples
from continual_lora.matmul_precision import tf32_matmuls
from continual_lora.methods import get_method
from continual_lora.models.loading import resolve_device
from continual_lora.scoring import ModelHandle

params = snakemake.params.scoring
# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA;
# TF32 matrix products where evaluation.allow_tf32 asks for them.
with holding_gpu(), tf32_matmuls(params["allow_tf32"]):
    device = resolve_device(params["device"])
    handoff = snakemake.input.get("handoff")
    concept_dirs = dict(zip(params["concepts"], snakemake.input.concepts, strict=True))
    method = get_method(params["method"], params["method_settings"]) if handoff else None
    score_samples(
        samples_dir=snakemake.input.samples,
        concept_dirs=concept_dirs,
        metrics=params["metrics"],
        model=lambda: ModelHandle.load(
            params["base_model"], handoff, device, params["dtype"], method, snakemake.input.get("task_lora")
        ),
        method=params["method"],
        run=params["run"],
        after_task=params["after_task"],
        out_csv=snakemake.output[0],
        device=str(device),
    )
