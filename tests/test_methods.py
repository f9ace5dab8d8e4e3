"""The four methods against their closed forms (docs/reproduction.md), on small random tensors."""

from __future__ import annotations

import pytest
import torch

from continual_lora.lora import LoraSpec, factor_deltas, factors_to_state, fresh_factors, state_to_factors
from continual_lora.methods import METHODS, get_method
from continual_lora.methods.ortho_init import orthogonal_columns

SHAPES = {"down.attn1.to_q": (6, 5), "up.attn2.to_out.0": (4, 7)}
SPEC = LoraSpec(rank=3, alpha=6.0)  # scale 2, so a forgotten scale shows


def trained_like(init, seed):
    """A stand-in for training: the initial factors moved by a seeded random step."""
    g = torch.Generator().manual_seed(seed)
    return {m: (a + torch.randn(a.shape, generator=g), b + torch.randn(b.shape, generator=g)) for m, (a, b) in init.items()}


def run_chain(method_name, n_tasks, seed=0):
    """Drive a method through n tasks; return every task's (start, trained, handoff)."""
    method = get_method(method_name)
    g = torch.Generator().manual_seed(seed)
    previous, history = None, []
    for t in range(n_tasks):
        start = method.start(previous, fresh_factors(SHAPES, SPEC.rank, g), SPEC)
        trained = trained_like(start.init, seed * 100 + t)
        handoff = method.hand_on(previous, trained, SPEC)
        history.append((previous, start, trained, handoff))
        previous = handoff
    return history


def test_registry_has_the_four_methods_and_names_the_known_ones():
    assert set(METHODS) == {"naive", "merge_and_init", "ortho_init", "magmax"}
    with pytest.raises(ValueError, match="unknown method 'lora_soup'.*magmax"):
        get_method("lora_soup")


def test_fresh_factors_follow_the_protocol_init():
    factors = fresh_factors({"m": (64, 4096)}, 16, torch.Generator().manual_seed(0))
    a, b = factors["m"]
    assert a.shape == (16, 4096) and b.shape == (64, 16)
    assert torch.count_nonzero(b) == 0
    assert a.std().item() == pytest.approx(1 / 16, rel=0.02)
    assert abs(a.mean().item()) < 3e-3


def test_merge_and_init_fuses_the_sum_of_scaled_task_updates():
    history = run_chain("merge_and_init", 3)
    for t, (previous, start, _, _) in enumerate(history):
        assert all(torch.count_nonzero(b) == 0 for _, b in start.init.values())  # fresh every task
        if t == 0:
            assert start.frozen_delta == {}
        else:
            for module in SHAPES:  # task t is trained on W_{t-1}
                assert torch.equal(start.frozen_delta[module], previous[f"{module}.weight"])
    final = history[-1][3]
    for module in SHAPES:
        closed_form = sum(2.0 * trained[module][1].double() @ trained[module][0].double() for *_, trained, _ in history)
        assert torch.allclose(final[f"{module}.weight"].double(), closed_form, atol=1e-5)


def test_magmax_keeps_the_larger_magnitude_and_gives_ties_to_the_new_update():
    method = get_method("magmax")
    spec = LoraSpec(rank=2, alpha=2.0)
    tau = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    delta = torch.tensor([[-1.0, 1.0], [0.7, -3.0]])
    trained = {"m": (torch.eye(2), delta.clone())}  # B @ A = delta at scale 1
    handoff = method.hand_on({"m.weight": tau}, trained, spec)
    expected = torch.tensor([[-1.0, -2.0], [0.7, -3.0]])  # (0,0) and (1,1) are ties
    assert torch.equal(handoff["m.weight"], expected)
    start = method.start({"m.weight": tau}, {"m": (torch.ones(2, 2), torch.zeros(2, 2))}, spec)
    assert torch.equal(start.frozen_delta["m"], tau)


def test_magmax_first_task_hands_on_its_own_update():
    ((_, start, trained, handoff),) = run_chain("magmax", 1)
    for module, (a, b) in trained.items():
        assert torch.allclose(handoff[f"{module}.weight"], 2.0 * b @ a, atol=1e-6)
    assert start.frozen_delta == {}


def test_ortho_init_starts_orthogonal_with_zero_B_and_hands_on_summed_factors():
    history = run_chain("ortho_init", 3)
    for t, (previous, start, trained, handoff) in enumerate(history):
        for module in SHAPES:
            a0, b0 = start.init[module]
            assert torch.count_nonzero(b0) == 0
            if t == 0:
                continue
            a_hat, b_hat = state_to_factors(previous)[module]
            cos = (a0 * a_hat).sum(0) / (a0.norm(dim=0) * a_hat.norm(dim=0))
            assert cos.abs().max().item() < 1e-4
            assert torch.allclose(a0.norm(dim=0), torch.ones(a0.shape[1]), atol=1e-5)
            # the accumulated adapter is fused and frozen for the new task
            assert torch.allclose(start.frozen_delta[module], 2.0 * b_hat @ a_hat, atol=1e-5)
            summed = handoff[f"{module}.lora_A.weight"], handoff[f"{module}.lora_B.weight"]
            assert torch.allclose(summed[0], a_hat + trained[module][0], atol=1e-6)
            assert torch.allclose(summed[1], b_hat + trained[module][1], atol=1e-6)


def test_orthogonal_columns_is_the_last_right_singular_vector():
    a_hat = torch.tensor([[3.0, 0.0], [4.0, 1.0]])  # columns (3, 4) and (0, 1)
    ortho = orthogonal_columns(a_hat)
    # in two dimensions the orthogonal unit vector is unique up to sign
    assert torch.allclose(ortho[:, 0].abs(), torch.tensor([0.8, 0.6]), atol=1e-6)
    assert torch.allclose(ortho[:, 1].abs(), torch.tensor([1.0, 0.0]), atol=1e-6)


def test_naive_starts_each_task_from_the_previous_adapter_exactly():
    history = run_chain("naive", 3)
    for t, (previous, start, trained, handoff) in enumerate(history):
        assert start.frozen_delta == {}
        if t > 0:
            init_state = factors_to_state(start.init)
            assert init_state.keys() == previous.keys()
            assert all(torch.equal(init_state[k], previous[k]) for k in previous)
        assert all(torch.equal(handoff[k], v) for k, v in factors_to_state(trained).items())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_residuals_vanish_on_a_true_chain_and_catch_a_corrupted_handoff(name):
    method = get_method(name)
    for previous, start, trained, handoff in run_chain(name, 3):
        residuals = method.residuals(previous, start.init, trained, handoff, SPEC)
        assert residuals and max(residuals.values()) < 1e-4, residuals
    corrupted = {k: v + 0.5 for k, v in handoff.items()}
    assert max(method.residuals(previous, start.init, trained, corrupted, SPEC).values()) > 0.1


def test_factor_deltas_are_the_float64_product_taken_on_the_requested_device():
    generator = torch.Generator().manual_seed(3)
    factors = {"m": (torch.randn(4, 6, generator=generator), torch.randn(5, 4, generator=generator))}
    a, b = factors["m"]
    here = factor_deltas(factors, 0.5)["m"]
    assert here.dtype == torch.float32 and torch.equal(here, 0.5 * (b.double() @ a.double()).float())
    # The meta device computes shapes only: the product was taken there, not on the CPU.
    there = factor_deltas(factors, 0.5, "meta")["m"]
    assert there.device.type == "meta" and there.shape == (5, 6) and there.dtype == torch.float32


def test_checkpoint_deltas_take_an_adapters_products_on_the_device_and_leave_a_delta_file_on_the_cpu(tmp_path):
    from continual_lora.checkpoint import save_adapter, save_tensors
    from continual_lora.models.loading import checkpoint_deltas

    generator = torch.Generator().manual_seed(4)
    factors = {"m": (torch.randn(2, 3, generator=generator), torch.randn(4, 2, generator=generator))}
    save_adapter(tmp_path / "adapter.safetensors", factors, 0.5)
    delta = torch.randn(4, 3, generator=generator)
    save_tensors(tmp_path / "delta.safetensors", {"m.weight": delta}, "delta", 1.0)

    assert torch.equal(checkpoint_deltas(tmp_path / "adapter.safetensors")["m"], factor_deltas(factors, 0.5)["m"])
    on_device = checkpoint_deltas(tmp_path / "adapter.safetensors", "meta")["m"]
    assert on_device.device.type == "meta" and on_device.shape == (4, 3)
    # apply_deltas moves a delta file's tensors one module at a time; all at once on a
    # GPU they would only add to its peak memory.
    kept = checkpoint_deltas(tmp_path / "delta.safetensors", "meta")["m"]
    assert kept.device.type == "cpu" and torch.equal(kept, delta)
