# Beyond the paper's protocol, each behind its own switch (retention.enabled,
# composition.enabled): whether the model still draws what the base model drew
# (retention, after every task) and whether it can combine what it learnt
# (composition, after the last task). Like the evaluation, one sampling and one
# scoring job per checkpoint; the base model's samples are the reference.


rule sample_retention:
    input:
        handoff=layout.HANDOFF,
        task_lora=layout.TASK_LORA,
        base_model=get_base_model,
    output:
        directory(layout.RETENTION_SAMPLES),
    log:
        layout.log(layout.TASK, "sample_retention"),
    benchmark:
        layout.benchmark(layout.TASK, "sample_retention")
    params:
        generation=get_sample_retention_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/sample_prompts.py"


use rule sample_retention as sample_base_retention with:
    input:
        base_model=get_base_model,
    output:
        directory(layout.BASE_RETENTION_SAMPLES),
    log:
        layout.log(layout.BASE, "sample_retention"),
    benchmark:
        layout.benchmark(layout.BASE, "sample_retention")
    params:
        generation=get_sample_base_retention_params,


rule score_retention:
    input:
        samples=layout.RETENTION_SAMPLES,
        base_samples=layout.BASE_RETENTION_SAMPLES,
    output:
        layout.RETENTION_SCORES,
    log:
        layout.log(layout.TASK, "score_retention"),
    benchmark:
        layout.benchmark(layout.TASK, "score_retention")
    params:
        scoring=get_score_retention_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/score_retention.py"


rule summarize_retention:
    input:
        scores=get_experiment_retention_scores,
        samples=get_first_run_final_retention_samples,
        base=layout.BASE_RETENTION_SAMPLES,
    output:
        table=report(
            layout.RETENTION_TABLE,
            caption="../report/retention.rst",
            category="{experiment}",
            subcategory="Tables",
        ),
        figures=report(
            directory(layout.RETENTION_FIGURES),
            patterns=["{name}.png"],
            caption="../report/retention.rst",
            category="{experiment}",
            subcategory="Retention",
        ),
    log:
        layout.log(layout.EXPERIMENT, "summarize_retention"),
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/summarize_retention.py"


rule sample_composition:
    input:
        unpack(get_final_checkpoint),
        concepts=get_all_concept_dirs,
        base_model=get_base_model,
    output:
        directory(layout.COMPOSITION_SAMPLES),
    log:
        layout.log(layout.RUN, "sample_composition"),
    benchmark:
        layout.benchmark(layout.RUN, "sample_composition")
    params:
        generation=get_sample_composition_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/sample_prompts.py"


use rule sample_composition as sample_base_composition with:
    input:
        concepts=get_all_concept_dirs,
        base_model=get_base_model,
    output:
        directory(layout.BASE_COMPOSITION_SAMPLES),
    log:
        layout.log(layout.BASE, "sample_composition"),
    benchmark:
        layout.benchmark(layout.BASE, "sample_composition")
    params:
        generation=get_sample_base_composition_params,


rule score_composition:
    input:
        concepts=get_all_concept_dirs,
        samples=layout.COMPOSITION_SAMPLES,
    output:
        layout.COMPOSITION_SCORES,
    log:
        layout.log(layout.RUN, "score_composition"),
    benchmark:
        layout.benchmark(layout.RUN, "score_composition")
    params:
        scoring=get_score_composition_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/score_composition.py"


use rule score_composition as score_base_composition with:
    input:
        concepts=get_all_concept_dirs,
        samples=layout.BASE_COMPOSITION_SAMPLES,
    output:
        layout.BASE_COMPOSITION_SCORES,
    log:
        layout.log(layout.BASE, "score_composition"),
    benchmark:
        layout.benchmark(layout.BASE, "score_composition")
    params:
        scoring=get_score_base_composition_params,


rule summarize_composition:
    input:
        scores=get_experiment_composition_scores,
        samples=get_first_run_composition_samples,
        base=layout.BASE_COMPOSITION_SAMPLES,
    output:
        table=report(
            layout.COMPOSITION_TABLE,
            caption="../report/composition.rst",
            category="{experiment}",
            subcategory="Tables",
        ),
        figures=report(
            directory(layout.COMPOSITION_FIGURES),
            patterns=["{name}.png"],
            caption="../report/composition.rst",
            category="{experiment}",
            subcategory="Composition",
        ),
    log:
        layout.log(layout.EXPERIMENT, "summarize_composition"),
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/summarize_composition.py"
