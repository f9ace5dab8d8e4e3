rule pretrain_tiny_model:
    output:
        directory(TINY_MODEL),
    log:
        "results/logs/models/pretrain_tiny_model.log",
    benchmark:
        "results/benchmarks/models/pretrain_tiny_model.tsv"
    params:
        settings=canonical(config["tiny_model"]),
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/pretrain_tiny_model.py"


rule sample_tiny_model:
    input:
        TINY_MODEL,
    output:
        report(
            "results/models/tiny_samples.png",
            caption="../report/tiny_samples.rst",
            category="Base model",
        ),
    log:
        "results/logs/models/sample_tiny_model.log",
    params:
        prompts=get_tiny_sample_prompts(),
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/sample_tiny_model.py"
