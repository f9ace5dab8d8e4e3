# The prompts come from the params; the prepared concepts are inputs so that a concept
# prepared anew (its dataset changed) is sampled anew.
rule generate_samples:
    input:
        concepts=get_seen_concept_dirs,
        handoff=layout.HANDOFF,
        task_lora=layout.TASK_LORA,
        base_model=get_base_model,
    output:
        directory(layout.SAMPLES),
    log:
        layout.log(layout.TASK, "generate_samples"),
    benchmark:
        layout.benchmark(layout.TASK, "generate_samples")
    params:
        generation=get_generate_samples_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/generate_samples.py"


use rule generate_samples as generate_base_samples with:
    input:
        concepts=get_all_concept_dirs,
        base_model=get_base_model,
    output:
        directory(layout.BASE_SAMPLES),
    log:
        layout.log(layout.BASE, "generate_base_samples"),
    benchmark:
        layout.benchmark(layout.BASE, "generate_base_samples")
    params:
        generation=get_generate_base_samples_params,


rule score_samples:
    input:
        concepts=get_seen_concept_dirs,
        samples=layout.SAMPLES,
        handoff=layout.HANDOFF,
        task_lora=layout.TASK_LORA,
        base_model=get_base_model,
    output:
        layout.SCORES,
    log:
        layout.log(layout.TASK, "score_samples"),
    benchmark:
        layout.benchmark(layout.TASK, "score_samples")
    params:
        scoring=get_score_samples_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/score_samples.py"


use rule score_samples as score_base_samples with:
    input:
        concepts=get_all_concept_dirs,
        samples=layout.BASE_SAMPLES,
        base_model=get_base_model,
    output:
        layout.BASE_SCORES,
    log:
        layout.log(layout.BASE, "score_base_samples"),
    benchmark:
        layout.benchmark(layout.BASE, "score_base_samples")
    params:
        scoring=get_score_base_samples_params,
