"""A model's update W - W0 held in its UNet: added to float32 weights in place, kept
beside 16-bit weights in float32 and multiplied in bfloat16, so that no element that
float32 keeps is lost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from continual_lora import checkpoint, training
from continual_lora.lora import LoraSpec, base_layer, targeted_linears
from continual_lora.model_update import apply_update, base_model, held_update
from continual_lora.models.loading import checkpoint_deltas, load_pipeline
from continual_lora.training import TrainingSettings, train_task


def weights_and_update(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """W0 and a merged update a few thousandths of its size, as after a few tasks."""
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(64, 48, generator=g) * 0.02
    return w0, torch.randn(64, 48, generator=g) * 0.02 * 3e-3


def layer_of(weight: torch.Tensor) -> nn.ModuleDict:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight.clone()
    return nn.ModuleDict({"proj": layer.requires_grad_(False)})


@pytest.mark.parametrize(("dtype", "share_rounded_away"), [(torch.bfloat16, 0.3), (torch.float16, 0.01)])
def test_a_16_bit_layer_keeps_every_element_of_the_update_beside_its_weights(dtype, share_rounded_away):
    w0, update = weights_and_update()
    kept_by_float32 = (w0 + update) - w0 != 0
    assert kept_by_float32.all()
    # What adding it into 16-bit weights would do: many elements rounded away.
    rounded = ((w0.to(dtype) + update.to(dtype)) - w0.to(dtype) == 0).float().mean()
    assert rounded > share_rounded_away

    model = layer_of(w0.to(dtype))
    apply_update(model, {"proj": update})
    layer = model["proj"]
    assert torch.equal(layer.weight, w0.to(dtype))  # W0 as loaded
    held = held_update(layer)
    assert held.dtype == torch.float32 and torch.equal(held, update)  # every element, exactly

    # The product in bfloat16: each element of the update rounded on its own, to within
    # 2^-8 of itself, none lost against W0 or flushed to zero.
    in_bfloat16 = update.to(torch.bfloat16)
    assert (in_bfloat16 != 0).all()
    assert ((in_bfloat16.float() - update).abs() / update.abs()).max() <= 2**-8
    x = torch.randn(5, 48, generator=torch.Generator().manual_seed(1)).to(dtype)
    expected = F.linear(x, w0.to(dtype)) + F.linear(x.to(torch.bfloat16), in_bfloat16).to(dtype)
    assert torch.equal(layer(x), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = layer(x.float())
        assert torch.equal(mixed, F.linear(x.float(), w0.to(dtype)) + F.linear(x.float(), update))
    with base_model(model, {"proj": update}):
        assert torch.equal(layer(x), F.linear(x, w0.to(dtype)))
    assert torch.equal(layer(x), expected)  # switched back on

    apply_update(model, {"proj": update})  # a second update adds to the first
    assert torch.equal(held_update(layer), update + update)


def test_a_float32_layer_takes_the_update_into_its_weights_and_gives_it_back_exactly():
    w0, update = weights_and_update()
    model = layer_of(w0)
    apply_update(model, {"proj": update})
    layer = model["proj"]
    assert held_update(layer) is None
    assert torch.equal(layer.weight, w0 + update)
    with base_model(model, {"proj": update}):
        assert torch.allclose(layer.weight, w0, atol=1e-9)
    assert torch.equal(layer.weight, w0 + update)  # bit-exact, not re-added
    with pytest.raises(KeyError, match="names module 'nowhere'"):
        apply_update(model, {"nowhere": update})


SPEC = LoraSpec(rank=2, alpha=4.0)


def test_a_merged_chain_trained_in_bf16_keeps_the_earlier_update_whole(tmp_path, tiny_model_dir, object_concepts_dir, monkeypatch):
    first = tmp_path / "task1"
    settings = TrainingSettings(steps=2, learning_rate=1e-2, batch_size=2, resolution=32, log_every=1)
    common = dict(base_model=tiny_model_dir, method="merge_and_init", spec=SPEC, training_seed=0, device="cpu", log=lambda line: None)
    train_task(task_index=1, concept_dir=object_concepts_dir[0], previous_handoff=None, settings=settings, out_dir=first, **common)
    previous = checkpoint.load_tensors(first / checkpoint.HANDOFF).model_delta()

    seen = {}
    attach = training.attach_adapter

    def recording_attach(unet, spec, init):
        # The frozen model task 2 trains on, before its adapter wraps the layers.
        layers = targeted_linears(unet, spec)
        seen.update({name: (layer.weight.detach().clone(), held_update(layer)) for name, layer in layers.items()})
        return attach(unet, spec, init)

    monkeypatch.setattr(training, "attach_adapter", recording_attach)
    bf16 = TrainingSettings(**{**settings.__dict__, "mixed_precision": "bf16"})
    train_task(task_index=2, concept_dir=object_concepts_dir[1], previous_handoff=first / checkpoint.HANDOFF,
               settings=bf16, out_dir=tmp_path / "task2", **common)  # fmt: skip
    base = {name: layer.weight for name, layer in targeted_linears(load_pipeline(tiny_model_dir).unet, SPEC).items()}
    assert seen.keys() == previous.keys()
    for name, (weight, held) in seen.items():
        assert weight.dtype == torch.bfloat16 and torch.equal(weight, base[name].to(torch.bfloat16))
        assert torch.equal(held, previous[name])


def test_a_pipeline_loaded_in_16_bits_holds_the_checkpoints_whole_update(tmp_path, tiny_model_dir, object_concepts_dir):
    out = tmp_path / "task1"
    settings = TrainingSettings(steps=2, learning_rate=1e-2, batch_size=2, resolution=32, log_every=1)
    train_task(base_model=tiny_model_dir, method="magmax", task_index=1, concept_dir=object_concepts_dir[0],
               previous_handoff=None, spec=SPEC, settings=settings, training_seed=0, out_dir=out, device="cpu",
               log=lambda line: None)  # fmt: skip
    deltas = checkpoint_deltas(out / checkpoint.HANDOFF)
    pipeline = load_pipeline(tiny_model_dir, deltas, dtype=torch.float16)
    modules = dict(pipeline.unet.named_modules())
    for name, delta in deltas.items():
        assert torch.equal(held_update(base_layer(modules[name])), delta)


def test_a_held_update_reaches_the_output_through_peft_and_gradient_checkpointing(tiny_model_dir):
    # The 16-bit path (the update beside the weight, added by a hook) on a float32 UNet,
    # against the update added into its weights: the same forward and the same
    # gradients for the adapter, with peft's wrapper around every layer and the UNet
    # recomputing its activations in the backward pass.
    from continual_lora.lora import attach_adapter, fresh_factors, linear_shapes
    from continual_lora.model_update import hold_beside

    spec = LoraSpec(rank=2, alpha=4.0)
    results = []
    for held in (False, True):
        unet = load_pipeline(tiny_model_dir).unet
        g = torch.Generator().manual_seed(0)
        layers = targeted_linears(unet, spec)
        update = {name: torch.randn(layer.weight.shape, generator=g) * 1e-3 for name, layer in layers.items()}
        if held:
            for name, layer in layers.items():
                hold_beside(layer, update[name])
        else:
            apply_update(unet, update)
        init = {m: (a, torch.randn(b.shape, generator=g) * 1e-2) for m, (a, b) in
                fresh_factors(linear_shapes(unet, spec), spec.rank, g).items()}  # fmt: skip
        params = attach_adapter(unet, spec, init)
        unet.enable_gradient_checkpointing()
        unet.train()
        x = torch.randn(2, unet.config.in_channels, 16, 16, generator=g)
        context = torch.randn(2, 4, unet.config.cross_attention_dim, generator=g)
        out = unet(x, torch.tensor([10, 500]), encoder_hidden_states=context).sample
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in params]))
    (fused, fused_grads), (beside, beside_grads) = results
    assert torch.allclose(fused, beside, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(fused_grads, beside_grads))
