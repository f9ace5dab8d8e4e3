rule train_task:
    input:
        unpack(get_train_task_input),
    output:
        handoff=layout.HANDOFF,
        task_lora=layout.TASK_LORA,
        init_lora=layout.INIT_LORA,
        meta=layout.META,
    log:
        layout.log(layout.TASK, "train_task"),
    benchmark:
        layout.benchmark(layout.TASK, "train_task")
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
        handoffs=get_run_handoffs,
        init_loras=get_run_init_loras,
        task_loras=get_run_task_loras,
    output:
        layout.CHAIN_AUDIT,
    log:
        layout.log(layout.RUN, "audit_chain"),
    params:
        method_settings=get_audit_chain_params,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/audit_chain.py"
