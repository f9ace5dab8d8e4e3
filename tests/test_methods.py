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
        handoff = method.hand_on(previous, trained, SPEC, task=t + 1)
        history.append((previous, start, trained, handoff))
        previous = handoff
    return history


def test_registry_has_the_papers_four_methods_and_the_others_and_names_the_known_ones():
    paper = {"naive", "merge_and_init", "ortho_init", "magmax"}
    others = {"c_lora", "ties", "dare", "task_arithmetic", "running_average", "o_lora"}
    assert set(METHODS) == paper | others
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
    handoff = method.hand_on({"m.weight": tau}, trained, spec, task=2)
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
    for task, (previous, start, trained, handoff) in enumerate(run_chain(name, 3), start=1):
        residuals = method.residuals(previous, start.init, trained, handoff, SPEC, task=task)
        assert residuals and max(residuals.values()) < 1e-4, residuals
    corrupted = {k: v + 0.5 for k, v in handoff.items()}
    assert max(method.residuals(previous, start.init, trained, corrupted, SPEC, task=task).values()) > 0.1


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


# ------------------------------------------------------------------ beyond the paper's four


def one_module_update(delta: torch.Tensor):
    """Trained factors whose update scale * B A is ``delta`` (a 1 x n row) at scale 1."""
    return {"m": (delta.clone(), torch.ones(1, 1))}, LoraSpec(rank=1, alpha=1.0)


def test_task_arithmetic_at_scale_one_is_merge_and_init_and_scales_each_update():
    for (_, _, _, ta), (_, _, _, mi) in zip(run_chain("task_arithmetic", 3), run_chain("merge_and_init", 3)):
        assert all(torch.equal(ta[k], mi[k]) for k in mi)
    trained, spec = one_module_update(torch.tensor([[2.0, -4.0]]))
    handoff = get_method("task_arithmetic", {"scale": 0.25}).hand_on({"m.weight": torch.tensor([[1.0, 1.0]])}, trained, spec, task=2)
    assert torch.equal(handoff["m.weight"], torch.tensor([[1.5, 0.0]]))
    with pytest.raises(ValueError, match=r"method_settings.task_arithmetic.scale: 0 is outside \(0.0, inf\]"):
        get_method("task_arithmetic", {"scale": 0})


def test_running_average_hands_on_the_mean_of_every_task_update():
    method = get_method("running_average")
    tau = None
    for task, row in enumerate(([3.0, 0.0], [0.0, 6.0], [6.0, -3.0]), start=1):
        trained, spec = one_module_update(torch.tensor([row]))
        tau = method.hand_on(tau, trained, spec, task=task)
    # (3, 0), (0, 6), (6, -3): their mean
    assert torch.allclose(tau["m.weight"], torch.tensor([[3.0, 1.0]]))
    # Dividing by the wrong count is caught by the audit.
    fresh = {"m": (torch.ones(1, 2), torch.zeros(1, 1))}
    assert method.residuals({"m.weight": torch.tensor([[1.5, 3.0]])}, fresh, trained, tau, spec, task=3)["handoff_is_running_mean"] < 1e-6
    assert method.residuals({"m.weight": torch.tensor([[1.5, 3.0]])}, fresh, trained, tau, spec, task=2)["handoff_is_running_mean"] > 0.5


def ties_case(**settings):
    tau = torch.tensor([[4.0, -1.0, 0.5, -3.0, 2.0, 0.1]])
    delta = torch.tensor([[-2.0, 3.0, 1.0, -5.0, -6.0, 0.2]])
    trained, spec = one_module_update(delta)
    return get_method("ties", settings).hand_on({"m.weight": tau}, trained, spec, task=2)["m.weight"]


def test_ties_trims_elects_the_sign_and_averages_what_agrees():
    # density 0.5 keeps 3 of 6: tau -> (4, 0, 0, -3, 2, 0), delta -> (0, 3, 0, -5, -6, 0).
    # Elected by the sum: (+, +, +, -, -, +); entry 4 is a conflict that delta wins.
    assert torch.equal(ties_case(), torch.tensor([[4.0, 3.0, 0.0, -4.0, -6.0, 0.0]]))
    # By the count of signs entry 4 ties at 0 and goes to +: tau's 2 is kept.
    assert torch.equal(ties_case(majority_sign_method="frequency"), torch.tensor([[4.0, 3.0, 0.0, -4.0, 2.0, 0.0]]))
    # Weights scale the values after the election: entry 3 is (-3 * 1 + -5 * 2) / 2.
    assert torch.equal(ties_case(weights=[1, 2]), torch.tensor([[4.0, 6.0, 0.0, -6.5, -12.0, 0.0]]))
    with pytest.raises(ValueError, match="method_settings.ties.weights: \\[1\\] is not two numbers"):
        get_method("ties", {"weights": [1]})


def test_dare_drops_and_rescales_the_new_update_only_and_draws_the_same_mask_again():
    method = get_method("dare", {"density": 0.25, "weight": 2.0})
    delta = torch.linspace(1.0, 2.0, 4000)[None]
    tau = torch.full_like(delta, 0.5)
    trained, spec = one_module_update(delta)
    before = torch.get_rng_state()
    handoff = method.hand_on({"m.weight": tau}, trained, spec, task=3)["m.weight"]
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left as it was
    added = handoff - tau
    kept = added != 0
    # Kept entries are 2 * delta / 0.25; the rest of the update is dropped; tau is whole.
    assert torch.allclose(added[kept], 8.0 * delta[kept]) and abs(kept.float().mean().item() - 0.25) < 0.03
    assert torch.equal(method.hand_on({"m.weight": tau}, trained, spec, task=3)["m.weight"], handoff)
    assert not torch.equal(method.hand_on({"m.weight": tau}, trained, spec, task=4)["m.weight"], handoff)
    # The audit draws the mask again: the true handoff passes; all kept, or another
    # task's mask, does not.
    fresh = {"m": (delta, torch.zeros(1, 1))}
    audit = "handoff_is_previous_plus_kept_rescaled_update"
    assert method.residuals({"m.weight": tau}, fresh, trained, {"m.weight": handoff}, spec, task=3)[audit] < 1e-6
    assert method.residuals({"m.weight": tau}, fresh, trained, {"m.weight": tau + 8.0 * delta}, spec, task=3)[audit] > 1
    assert method.residuals({"m.weight": tau}, fresh, trained, {"m.weight": handoff}, spec, task=4)[audit] > 1


def test_dare_draws_a_different_mask_for_each_module_of_the_same_shape():
    delta = torch.ones(1, 1000)
    trained = {"a": (delta, torch.ones(1, 1)), "b": (delta.clone(), torch.ones(1, 1))}
    handoff = get_method("dare").hand_on(None, trained, LoraSpec(rank=1, alpha=1.0), task=1)
    assert not torch.equal(handoff["a.weight"], handoff["b.weight"])


def test_ties_audit_accepts_either_choice_among_magnitudes_tied_at_the_cut_off():
    method = get_method("ties", {"density": 0.4})
    tau = torch.tensor([[1.0, -1.0, 1.0, 1.0, 0.5]])  # k = 2 of four tied magnitudes
    trained, spec = one_module_update(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]]))
    handoff = method.hand_on({"m.weight": tau}, trained, spec, task=2)
    fresh = {"m": (torch.ones(1, 5), torch.zeros(1, 1))}
    assert method.residuals({"m.weight": tau}, fresh, trained, handoff, spec, task=2)["handoff_is_ties_merge"] < 1e-6
    # Keeping 0.5 of tau, below the cut-off, is no choice a top-k makes.
    wrong = {"m.weight": handoff["m.weight"] + torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5]])}
    assert method.residuals({"m.weight": tau}, fresh, trained, wrong, spec, task=2)["handoff_is_ties_merge"] > 0.2


def test_c_lora_penalizes_the_update_where_the_task_vector_is_large():
    method = get_method("c_lora", {"weight": 0.5})
    spec = LoraSpec(rank=2, alpha=4.0)  # scale 2
    tau = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fresh = {"m": (torch.ones(2, 2), torch.zeros(2, 2))}
    assert method.start(None, fresh, spec).penalty is None  # nothing learnt yet
    start = method.start({"m.weight": tau}, fresh, spec)
    assert torch.equal(start.frozen_delta["m"], tau) and torch.equal(start.init["m"][1], torch.zeros(2, 2))
    # B A = I: the update is 2 I, tau ⊙ update = diag(2, 8), so 0.5 * (4 + 64).
    penalty = start.penalty({"m": (torch.eye(2), torch.eye(2))})
    assert penalty.item() == pytest.approx(34.0)
    # What it hands on is merge_and_init's sum.
    for (_, _, _, c), (_, _, _, mi) in zip(run_chain("c_lora", 3), run_chain("merge_and_init", 3)):
        assert all(torch.equal(c[k], mi[k]) for k in mi)


def test_o_lora_stacks_every_task_and_penalizes_overlap_with_all_of_them():
    method = get_method("o_lora", {"weight": 0.5})
    history = run_chain("o_lora", 3)
    for task, (previous, start, trained, handoff) in enumerate(history, start=1):
        assert handoff[f"{'down.attn1.to_q'}.lora_A.weight"].shape[0] == task * SPEC.rank
    # The model handed on is merge_and_init's: the sum of every task's update.
    final = factor_deltas(state_to_factors(history[-1][3]), SPEC.scale)
    for module in SHAPES:
        closed_form = sum(2.0 * t[module][1].double() @ t[module][0].double() for *_, t, _ in history)
        assert torch.allclose(final[module].double(), closed_form, atol=1e-5)
        assert torch.allclose(history[-1][1].frozen_delta[module], factor_deltas(state_to_factors(history[-1][0]), SPEC.scale)[module])
    # Earlier rows (1, 0, 0) and (0, 0, 1); new rows give A Ahat^T = ((0.5, -1), (-3, 1)).
    previous = {"m.lora_A.weight": torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), "m.lora_B.weight": torch.ones(2, 2)}
    start = method.start(previous, {"m": (torch.ones(2, 3), torch.zeros(2, 2))}, LoraSpec(rank=2, alpha=2.0))
    penalty = start.penalty({"m": (torch.tensor([[0.5, 2.0, -1.0], [-3.0, 0.0, 1.0]]), torch.zeros(2, 2))})
    assert penalty.item() == pytest.approx(0.5 * (0.5 + 1 + 3 + 1))


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("ties", {"density": 0}, r"method_settings.ties.density: 0 is outside \(0.0, 1.0\]"),
        ("ties", {"majority_sign_method": "mean"}, "method_settings.ties.majority_sign_method: 'mean' is not one of"),
        ("dare", {"density": 1.5}, r"method_settings.dare.density: 1.5 is outside"),
        ("dare", {"seed": "x"}, "method_settings.dare.seed: 'x' is not an integer"),
        ("c_lora", {"weight": -1}, r"method_settings.c_lora.weight: -1 is outside \[0.0, inf\]"),
        ("o_lora", {"weight": "big"}, "method_settings.o_lora.weight: 'big' is not a number in \\[0.0, inf\\]$"),
        ("c_lora", {"weight": "1.0e6"}, r"'1.0e6' is not a number in \[0.0, inf\] \(YAML reads 1.0e6 as text: write"),
        ("running_average", {"scale": 2}, r"method_settings.running_average: unknown settings \['scale'\]"),
    ],
)
def test_method_settings_are_checked_with_a_sentence_that_names_the_key(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_method(name, settings)
