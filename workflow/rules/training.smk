rule train_task:
    input:
        unpack(get_train_task_input),
    output:
        handoff=f"{CHECKPOINT}/handoff.safetensors",
        task_lora=f"{CHECKPOINT}/task_lora.safetensors",
        init_lora=f"{CHECKPOINT}/init_lora.safetensors",
        meta=f"{CHECKPOINT}/meta.json",
    log:
        "results/logs/{experiment}/{method}/{run}/task{task}/train.log",
    benchmark:
        "results/benchmarks/{experiment}/{method}/{run}/task{task}/train.tsv"
    params:
        settings=get_train_task_params,
    resources:
        gpu=1,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/train_task.py"


rule audit_chain:
    input:
        unpack(get_run_checkpoints),
    output:
        "results/{experiment}/{method}/{run}/chain_audit.json",
    log:
        "results/logs/{experiment}/{method}/{run}/chain_audit.log",
    params:
        scale=config["lora"]["alpha"] / config["lora"]["rank"],
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/audit_chain.py"
