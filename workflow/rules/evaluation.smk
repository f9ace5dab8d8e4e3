rule generate_samples:
    input:
        unpack(get_seen_concepts),
        handoff=f"{CHECKPOINT}/handoff.safetensors",
        task_lora=f"{CHECKPOINT}/task_lora.safetensors",
        base_model=get_base_model,
    output:
        directory("results/{experiment}/{method}/{run}/task{task}/samples"),
    log:
        "results/logs/{experiment}/{method}/{run}/task{task}/generate.log",
    benchmark:
        "results/benchmarks/{experiment}/{method}/{run}/task{task}/generate.tsv"
    params:
        generation=get_generation_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/generate_samples.py"


use rule generate_samples as generate_base_samples with:
    input:
        unpack(get_all_concepts),
        base_model=get_base_model,
    output:
        directory("results/{experiment}/base/samples"),
    log:
        "results/logs/{experiment}/base/generate.log",
    benchmark:
        "results/benchmarks/{experiment}/base/generate.tsv"


rule score_samples:
    input:
        unpack(get_seen_concepts),
        samples="results/{experiment}/{method}/{run}/task{task}/samples",
        handoff=f"{CHECKPOINT}/handoff.safetensors",
        task_lora=f"{CHECKPOINT}/task_lora.safetensors",
        base_model=get_base_model,
    output:
        "results/{experiment}/{method}/{run}/task{task}/scores.csv",
    log:
        "results/logs/{experiment}/{method}/{run}/task{task}/score.log",
    benchmark:
        "results/benchmarks/{experiment}/{method}/{run}/task{task}/score.tsv"
    params:
        scoring=get_scoring_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/score_samples.py"


use rule score_samples as score_base_samples with:
    input:
        unpack(get_all_concepts),
        samples="results/{experiment}/base/samples",
        base_model=get_base_model,
    output:
        "results/{experiment}/base/scores.csv",
    log:
        "results/logs/{experiment}/base/score.log",
    benchmark:
        "results/benchmarks/{experiment}/base/score.tsv"
