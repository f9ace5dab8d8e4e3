rule pretrain_tiny_model:
    output:
        directory(layout.TINY_MODEL),
    log:
        layout.log(layout.MODELS, "pretrain_tiny_model"),
    benchmark:
        layout.benchmark(layout.MODELS, "pretrain_tiny_model")
    params:
        settings=canonical(config["tiny_model"]),
    threads: config["tiny_model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/pretrain_tiny_model.py"


rule sample_tiny_model:
    input:
        layout.TINY_MODEL,
    output:
        report(
            layout.TINY_SAMPLES,
            caption="../report/tiny_samples.rst",
            category="Base model",
        ),
    log:
        layout.log(layout.MODELS, "sample_tiny_model"),
    params:
        prompts=get_tiny_sample_prompts(),
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/sample_tiny_model.py"
