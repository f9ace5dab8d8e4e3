rule summarize_experiment:
    input:
        scores=get_experiment_scores,
        metas=get_experiment_metas,
        retention=get_experiment_retention_scores,
        composition=get_experiment_composition_scores,
    output:
        summary=report(
            layout.SUMMARY,
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="Tables",
        ),
        markdown=layout.SUMMARY_MARKDOWN,
        latex=layout.SUMMARY_LATEX,
        per_run=layout.PER_RUN,
        matrices=directory(layout.MATRICES),
        environment=layout.ENVIRONMENT,
    log:
        layout.log(layout.EXPERIMENT, "summarize_experiment"),
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/summarize_experiment.py"


rule plot_scores:
    input:
        scores=get_experiment_scores,
        per_run=layout.PER_RUN,
    output:
        report(
            directory(layout.partial(layout.FIGURES, figure_set="scores")),
            patterns=["{name}.png"],
            caption="../report/score_figures.rst",
            category="{experiment}",
            subcategory="Forgetting",
        ),
    log:
        layout.log(layout.EXPERIMENT, "plot_scores"),
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_scores.py"


rule plot_samples:
    input:
        samples=get_final_samples,
        right_after=get_first_run_samples,
        base=layout.BASE_SAMPLES,
        concepts=get_all_concept_dirs,
    output:
        report(
            directory(layout.partial(layout.FIGURES, figure_set="samples")),
            patterns=["{name}.png"],
            caption="../report/sample_grids.rst",
            category="{experiment}",
            subcategory="Samples",
        ),
    log:
        layout.log(layout.EXPERIMENT, "plot_samples"),
    params:
        grid=get_plot_samples_params,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_samples.py"


rule plot_sign_conflicts:
    input:
        task_loras=get_first_run_task_loras,
    output:
        report(
            directory(layout.partial(layout.FIGURES, figure_set="sign_conflicts")),
            patterns=["{name}.png"],
            caption="../report/sign_conflicts.rst",
            category="{experiment}",
            subcategory="Sign conflicts",
        ),
    log:
        layout.log(layout.EXPERIMENT, "plot_sign_conflicts"),
    params:
        labels=get_plot_sign_conflicts_params,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_sign_conflicts.py"
