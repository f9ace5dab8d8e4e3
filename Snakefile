# Continual LoRA personalization of text-to-image diffusion models (arXiv 2410.04891).
# The embedded default: snakemake --cores 1 --resources gpu=1


# A config given with --configfile replaces the embedded default instead of being
# merged into it, so a preset never inherits the default's experiments.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/beyond_paper.smk"
include: "workflow/rules/aggregation.smk"
include: "workflow/rules/export.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
