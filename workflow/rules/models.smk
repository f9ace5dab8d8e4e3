rule pretrain_tiny_model:
    output:
        directory(TINY_MODEL),
    log:
        layout.log(TINY_MODEL, "pretrain_tiny_model"),
    benchmark:
        layout.benchmark(TINY_MODEL, "pretrain_tiny_model")
    params:
        settings=tiny_model_settings(),
    threads: config["tiny_model"]["threads"]
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
            TINY_SAMPLES,
            caption="../report/tiny_samples.rst",
            category="Base model",
        ),
    log:
        layout.log(TINY_MODEL, "sample_tiny_model"),
    params:
        prompts=get_tiny_sample_prompts(),
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/sample_tiny_model.py"
