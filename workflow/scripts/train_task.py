"""Train one task of the continual chain and write its checkpoint files."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from continual_lora.lora import LoraSpec
from continual_lora.training import TrainingSettings, train_task

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    settings = snakemake.params.settings
    train_task(
        base_model=settings["base_model"],
        method=snakemake.wildcards.method,
        task_index=int(snakemake.wildcards.task),
        concept_dir=snakemake.input.concept,
        previous_handoff=snakemake.input.get("previous"),
        spec=LoraSpec.from_config(settings["lora"]),
        settings=TrainingSettings.from_config(settings["training"]),
        training_seed=settings["training_seed"],
        out_dir=Path(snakemake.output.handoff).parent,
        device=settings["device"],
        method_settings=settings["method_settings"],
    )
