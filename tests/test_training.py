"""Training a task for real on a tiny random SD model, and loading its checkpoint."""

from __future__ import annotations

import re

import pytest
import torch

from continual_lora import atomic, checkpoint
from continual_lora.data.concepts import read_concept
from continual_lora.lora import LoraSpec, targeted_linears
from continual_lora.methods import get_method
from continual_lora.models.loading import checkpoint_deltas, load_pipeline
from continual_lora.models.noising import SD_NOISE_SCHEDULE, min_snr_weights, noisy_batch
from continual_lora.training import TaskTrainer, TrainingSettings, read_handoff, task_seed, train_task

SPEC = LoraSpec(rank=2, alpha=4.0)
SETTINGS = TrainingSettings(steps=3, learning_rate=1e-2, batch_size=2, resolution=32, log_every=1)


def train(tmp_path, model, concept_dir, method, task, previous=None, seed=0, name=None, method_settings=None):
    out = tmp_path / (name or f"{method}_task{task}")
    lines = []
    train_task(
        base_model=model, method=method, task_index=task, concept_dir=concept_dir, previous_handoff=previous,
        spec=SPEC, settings=SETTINGS, training_seed=seed, out_dir=out, device="cpu", log=lines.append,
        method_settings=method_settings,
    )  # fmt: skip
    return out, lines


def test_a_methods_penalty_steers_training_away_from_what_earlier_tasks_used(tmp_path, tiny_model_dir, object_concepts_dir):
    task1, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "o_lora", 1)
    earlier = checkpoint.load_tensors(task1 / "handoff.safetensors").factors()

    def overlap(weight):
        out, lines = train(tmp_path, tiny_model_dir, object_concepts_dir[1], "o_lora", 2, previous=task1 / "handoff.safetensors",
                           name=f"w{weight}", method_settings={"weight": weight})  # fmt: skip
        trained = checkpoint.load_tensors(out / "task_lora.safetensors").factors()
        return sum(float((a @ earlier[m][0].T).abs().sum()) for m, (a, _) in trained.items()), lines

    free, free_lines = overlap(0.0)
    penalized, penalized_lines = overlap(1.0)
    # Unpenalized, the same seed gives the same A. Three Adam steps at lr 1e-2 move each
    # entry of A (std 0.5) by about 3e-2, so the penalty's pull cuts the overlap by ~6 %.
    assert penalized < 0.97 * free, (penalized, free)
    assert not any("penalty" in line for line in free_lines)
    assert re.fullmatch(r"step 3/3 loss \d+\.\d+ penalty \S+", [l for l in penalized_lines if l.startswith("step 3/")][0])


def test_training_moves_the_adapter_and_logs_progress(tmp_path, tiny_model_dir, object_concepts_dir):
    out, lines = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "merge_and_init", 1)
    init = checkpoint.load_tensors(out / "init_lora.safetensors").factors()
    trained = checkpoint.load_tensors(out / "task_lora.safetensors").factors()
    assert all(torch.count_nonzero(b) == 0 for _, b in init.values())
    assert any(torch.count_nonzero(b) > 0 for _, b in trained.values())  # B left zero: no learning
    assert [line for line in lines if line.startswith("step ")][-1].startswith("step 3/3 loss ")
    meta = atomic.read_json(out / "meta.json")
    assert meta["prompt"] == "a photo of sks house" or meta["prompt"].startswith("a photo of sks ")


def test_training_is_deterministic_on_cpu(tmp_path, tiny_model_dir, object_concepts_dir):
    first, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "magmax", 1, name="a")
    second, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "magmax", 1, name="b")
    other_seed, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "magmax", 1, seed=1, name="c")
    for name in ("handoff.safetensors", "task_lora.safetensors", "init_lora.safetensors"):
        a, b, c = (checkpoint.load_tensors(folder / name).tensors for folder in (first, second, other_seed))
        assert a.keys() == b.keys() == c.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)


def test_naive_second_task_trains_on_from_the_first_tasks_adapter(tmp_path, tiny_model_dir, object_concepts_dir):
    task1, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "naive", 1)
    task2, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[1], "naive", 2, previous=task1 / "handoff.safetensors")
    handoff = checkpoint.load_tensors(task1 / "handoff.safetensors").tensors
    init = checkpoint.load_tensors(task2 / "init_lora.safetensors").tensors
    assert handoff.keys() == init.keys() and all(torch.equal(handoff[k], init[k]) for k in handoff)


def test_loading_a_checkpoint_adds_its_update_to_the_base_weights(tmp_path, tiny_model_dir, object_concepts_dir):
    out, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "ortho_init", 1)
    base = load_pipeline(tiny_model_dir)
    tuned = load_pipeline(tiny_model_dir, checkpoint_deltas(out / "handoff.safetensors"))
    trained = checkpoint.load_tensors(out / "task_lora.safetensors").factors()
    base_layers = targeted_linears(base.unet, SPEC)
    tuned_layers = targeted_linears(tuned.unet, SPEC)
    assert set(trained) == set(base_layers)
    for module, (a, b) in trained.items():
        expected = base_layers[module].weight + SPEC.scale * b @ a
        assert torch.allclose(tuned_layers[module].weight, expected, atol=1e-6)


def test_run_seeding_starts_every_task_from_the_same_fresh_adapter(tmp_path, tiny_model_dir, object_concepts_dir):
    # The reference seeds every task with the run's training seed (set_seed(seed) in
    # each task's process); "task" seeding gives each task its own.
    fresh = {}
    for seeding in ("run", "task"):
        settings = TrainingSettings(**{**SETTINGS.__dict__, "seeding": seeding})
        for task in (1, 2):
            out = tmp_path / f"{seeding}{task}"
            train_task(
                base_model=tiny_model_dir, method="merge_and_init", task_index=task, concept_dir=object_concepts_dir[task - 1],
                previous_handoff=None if task == 1 else tmp_path / f"{seeding}1" / "handoff.safetensors", spec=SPEC,
                settings=settings, training_seed=0, out_dir=out, device="cpu", log=lambda line: None,
            )  # fmt: skip
            fresh[seeding, task] = checkpoint.load_tensors(out / "init_lora.safetensors").tensors
    assert all(torch.equal(fresh["run", 1][k], fresh["run", 2][k]) for k in fresh["run", 1])
    assert not all(torch.equal(fresh["task", 1][k], fresh["task", 2][k]) for k in fresh["task", 1])


def test_ortho_init_can_be_evaluated_as_the_model_its_task_was_trained_as(tmp_path, tiny_model_dir, object_concepts_dir):
    from continual_lora.lora import factor_deltas

    task1, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "ortho_init", 1)
    task2, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[1], "ortho_init", 2, previous=task1 / "handoff.safetensors")
    handoff2 = task2 / "handoff.safetensors"
    # handoff: W0 + s * Bhat_2 Ahat_2, the summed factors the next task fuses
    summed = checkpoint_deltas(handoff2, method=get_method("ortho_init"))
    assert all(torch.equal(summed[k], v) for k, v in checkpoint_deltas(handoff2).items())
    # trained: W0 + s * (Bhat_1 Ahat_1 + B_2 A_2), the model task 2 was trained as
    trained = checkpoint_deltas(handoff2, method=get_method("ortho_init", {"evaluate": "trained"}))
    before = checkpoint_deltas(task1 / "handoff.safetensors")
    update = factor_deltas(checkpoint.load_tensors(task2 / "task_lora.safetensors").factors(), SPEC.scale)
    for module, delta in trained.items():
        assert torch.allclose(delta, before[module] + update[module], atol=1e-7)
        assert not torch.allclose(delta, summed[module], atol=1e-6)  # the cross terms
    with pytest.raises(ValueError, match="method_settings.ortho_init.evaluate: 'best' is not one of handoff, trained"):
        get_method("ortho_init", {"evaluate": "best"})
    with pytest.raises(ValueError, match=r"method_settings.naive: unknown settings \['evaluate'\]; naive reads none"):
        get_method("naive", {"evaluate": "trained"})


def test_a_missing_optimizer_package_stops_the_job_before_the_model_loads(tmp_path, monkeypatch, object_concepts_dir):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    settings = TrainingSettings(**{**SETTINGS.__dict__, "optimizer": "adamw_8bit"})
    # A model that does not exist: the check must come first.
    with pytest.raises(ImportError, match=r"training.optimizer: adamw_8bit needs bitsandbytes, which is not installed "
                                          r"in this job's environment \(pip install -e '.\[gpu\]'\)"):  # fmt: skip
        train_task(base_model=tmp_path / "no_model", method="naive", task_index=1, concept_dir=object_concepts_dir[0],
                   previous_handoff=None, spec=SPEC, settings=settings, training_seed=0, out_dir=tmp_path / "out",
                   device="cpu", log=lambda line: None)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_papers_8_bit_adamw_steps_the_adapter():
    # Runs where bitsandbytes is installed (the `gpu` extra; its wheel runs on the CPU
    # too), which the test dependencies leave out for speed.
    bitsandbytes = pytest.importorskip("bitsandbytes")
    from continual_lora.training import make_optimizer

    settings = TrainingSettings(**{**SETTINGS.__dict__, "optimizer": "adamw_8bit", "learning_rate": 1e-3})
    # 4096 elements and more get 8-bit states; fewer, 32-bit ones.
    params = [torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.randn(8, 8))]
    optimizer = make_optimizer(params, settings)
    assert isinstance(optimizer, bitsandbytes.optim.AdamW8bit)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all((p - b).abs().max() > 0 for p, b in zip(params, before))
    assert optimizer.state[params[0]]["state1"].dtype == torch.uint8


def test_the_phases_the_benchmark_times_train_as_a_job_does(tmp_path, tiny_model_dir, object_concepts_dir):
    # benchmarks/cpu_suite.py times TaskTrainer's phases one by one; train_task must be
    # exactly those phases, so that the benchmark measures what a job runs.
    task1, _ = train(tmp_path, tiny_model_dir, object_concepts_dir[0], "magmax", 1)
    handoff = task1 / checkpoint.HANDOFF
    job, lines = train(tmp_path, tiny_model_dir, object_concepts_dir[1], "magmax", 2, previous=handoff)
    continual = get_method("magmax")
    trainer = TaskTrainer(
        base_model=tiny_model_dir, continual=continual, previous=read_handoff(handoff, continual),
        spec=SPEC, settings=SETTINGS, seed=task_seed(0, 2), task=2, device="cpu",
    )  # fmt: skip
    trainer.load()
    trainer.start()
    trainer.cache(read_concept(object_concepts_dir[1]))
    losses = [trainer.step() for _ in range(SETTINGS.steps)]
    trained = trainer.save(tmp_path / "phases")

    assert [f"step {i}/3 loss {loss:.4f}" for i, loss in enumerate(losses, start=1)] == [
        line for line in lines if line.startswith("step ")
    ]
    saved = checkpoint.load_tensors(job / checkpoint.TASK_LORA).factors()
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[m][0], a) and torch.equal(saved[m][1], b) for m, (a, b) in trained.items())
    for name in (checkpoint.HANDOFF, checkpoint.INIT_LORA):
        expected, written = (checkpoint.load_tensors(folder / name).tensors for folder in (job, tmp_path / "phases"))
        assert expected.keys() == written.keys() and all(torch.equal(expected[k], written[k]) for k in expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_a_training_batch_is_drawn_posterior_noise_timesteps_in_that_order(prediction_type):
    # The order of the draws is part of what a seed means: every trained adapter, and
    # the pretrained tiny model, depend on it.
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**SD_NOISE_SCHEDULE, prediction_type=prediction_type)
    images = torch.Generator().manual_seed(1)
    mean, std = torch.randn(3, 4, 2, 2, generator=images), torch.rand(3, 4, 2, 2, generator=images)
    batch = noisy_batch(scheduler, mean, std, torch.Generator().manual_seed(0), scaling=0.5, shift=0.25)

    generator = torch.Generator().manual_seed(0)
    latents = (mean + std * torch.randn(mean.shape, generator=generator) - 0.25) * 0.5
    noise = torch.randn(mean.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (3,), generator=generator)
    assert torch.equal(batch.timesteps, timesteps)
    assert torch.equal(batch.noisy, scheduler.add_noise(latents, noise, timesteps))
    target = scheduler.get_velocity(latents, noise, timesteps) if prediction_type == "v_prediction" else noise
    assert torch.equal(batch.target, target)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_are_the_closed_form(prediction_type):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**SD_NOISE_SCHEDULE, prediction_type=prediction_type)
    timesteps = torch.tensor([0, 100, 500, 999])
    alpha_bar = scheduler.alphas_cumprod[timesteps].double()
    snr = alpha_bar / (1 - alpha_bar)
    gamma = 5.0
    expected = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64))
    expected = expected / (snr + 1) if prediction_type == "v_prediction" else expected / snr
    weights = min_snr_weights(scheduler, timesteps, gamma)
    torch.testing.assert_close(weights.double(), expected, rtol=1e-5, atol=0)
    # Nearly clean timesteps (SNR far above gamma) are weighted down; noisy ones are
    # not, for a noise-predicting model.
    assert weights[0] < 0.01 and (prediction_type == "v_prediction" or weights[-1] == 1)


def test_min_snr_training_weights_each_images_error(tiny_model_dir, object_concepts_dir):
    # The weighted loss of one batch, from the same draws, is the mean of each image's
    # error times its weight.
    from diffusers import DDPMScheduler

    from continual_lora.models.conditioning import condition_rows
    from continual_lora.training import CachedTask, denoising_loss

    trainer = TaskTrainer(base_model=tiny_model_dir, continual=get_method("naive"), previous=None, spec=SPEC,
                          settings=SETTINGS, seed=0, task=1, device="cpu")  # fmt: skip
    trainer.load()
    unet = trainer.pipeline.unet
    noise_scheduler = DDPMScheduler.from_config(trainer.pipeline.scheduler.config)
    cached = CachedTask.encode(trainer.pipeline, read_concept(object_concepts_dir[0]), SETTINGS, "cpu",
                               torch.Generator().manual_seed(0))  # fmt: skip
    index = torch.tensor([0, 1])

    def loss(gamma):
        with torch.no_grad():
            return denoising_loss(unet, noise_scheduler, cached, index, torch.Generator().manual_seed(3), gamma)

    batch = noisy_batch(noise_scheduler, cached.latent_mean[index], cached.latent_std[index],
                        torch.Generator().manual_seed(3), scaling=cached.scaling)  # fmt: skip
    with torch.no_grad():
        prediction = unet(batch.noisy, batch.timesteps, **condition_rows(cached.condition, index)).sample
    per_image = (prediction - batch.target).pow(2).mean(dim=(1, 2, 3))
    weights = min_snr_weights(noise_scheduler, batch.timesteps, 2.0)
    torch.testing.assert_close(loss(2.0), (per_image * weights).mean())
    torch.testing.assert_close(loss(None), per_image.mean())
    # At a gamma above every SNR, min(SNR, gamma) is the SNR: each error times 1 for a
    # noise-predicting model, times SNR / (SNR + 1) for a velocity-predicting one (this).
    alphas = noise_scheduler.alphas_cumprod[batch.timesteps]
    snr = alphas / (1 - alphas)
    assert noise_scheduler.config.prediction_type == "v_prediction"
    torch.testing.assert_close(loss(1e9), (per_image * snr / (snr + 1)).mean())


def test_allow_tf32_holds_for_the_whole_task_and_is_put_back_after(tmp_path, tiny_model_dir, object_concepts_dir):
    flags = []

    def log(line):
        # Called during the task (its first line, then one per step).
        flags.append(torch.backends.cuda.matmul.allow_tf32)

    before = torch.backends.cuda.matmul.allow_tf32
    for allow in (True, False):
        train_task(
            base_model=tiny_model_dir, method="naive", task_index=1, concept_dir=object_concepts_dir[0],
            previous_handoff=None, spec=SPEC, settings=TrainingSettings(**{**SETTINGS.__dict__, "allow_tf32": allow}),
            training_seed=0, out_dir=tmp_path / f"tf32_{allow}", device="cpu", log=log,
        )  # fmt: skip
        assert flags and set(flags) == {allow}
        assert torch.backends.cuda.matmul.allow_tf32 == before
        flags.clear()
