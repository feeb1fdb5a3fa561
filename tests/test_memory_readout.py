"""Memory read-out and memory-as-prompt: properties that must hold before any training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from i2v.adapters.config import MemoryReadoutConfig
from i2v.adapters.memory_prompt import competing_click, peak_click, peak_region, readout_prompts, soft_box
from i2v.adapters.memory_readout import (
    MemoryReadout,
    ReadoutMemory,
    ReadoutRefiner,
    grid_positions,
    propagate_masks,
    prototype_similarity,
)

G = 8
M = G * G


def _one_hot_keys(perm: torch.Tensor) -> torch.Tensor:
    """(M, M) unit keys: position i gets basis vector perm[i] (every position distinct)."""
    return F.one_hot(perm, M).float()


def _memory(keys, values, short=None) -> ReadoutMemory:
    """keys (F, M, D), values (N, F, M); every object reads every frame."""
    n, f = values.shape[:2]
    selected = torch.ones(n, f, dtype=torch.bool)
    short = torch.zeros(n, f, dtype=torch.bool) if short is None else short
    return ReadoutMemory(keys, values, selected, short)


def _read(query, memory, temperature=0.02, locality=0.0, chunk=1024):
    return propagate_masks(
        query, memory, torch.tensor(temperature), torch.tensor(locality), grid_positions(G, query.device), chunk
    )


def test_read_out_follows_positions_that_moved() -> None:
    """Frame t shows frame 0's content shifted: the read-out is frame 0's mask, shifted."""
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(M, generator=gen)
    keys0 = _one_hot_keys(perm)
    mask0 = torch.zeros(G, G)
    mask0[2:5, 1:4] = 1.0
    # Content moves two cells right: position (y, x) on frame t holds what (y, x - 2) held.
    shifted = keys0.view(G, G, M).roll(2, dims=1).reshape(M, M)
    out = _read(shifted, _memory(keys0[None], mask0.flatten()[None, None]))
    assert torch.allclose(out.view(G, G), mask0.roll(2, dims=1), atol=1e-4)


def test_objects_share_the_affinity_and_read_only_their_frames() -> None:
    gen = torch.Generator().manual_seed(1)
    keys = F.normalize(torch.randn(3, M, 16, generator=gen), dim=-1)
    values = torch.rand(2, 3, M, generator=gen)
    query = F.normalize(torch.randn(M, 16, generator=gen), dim=-1)
    selected = torch.tensor([[True, True, False], [False, True, True]])
    short = torch.zeros(2, 3, dtype=torch.bool)
    together = _read(query, ReadoutMemory(keys, values, selected, short), temperature=0.1)
    for n in range(2):
        cols = selected[n].nonzero().flatten()
        alone = _read(
            query,
            ReadoutMemory(
                keys[cols],
                values[n : n + 1, cols],
                torch.ones(1, len(cols), dtype=torch.bool),
                torch.zeros(1, len(cols), dtype=torch.bool),
            ),
            temperature=0.1,
        )
        assert torch.allclose(together[n], alone[0], atol=1e-6)


def test_chunks_do_not_change_the_read_out() -> None:
    gen = torch.Generator().manual_seed(2)
    keys = F.normalize(torch.randn(2, M, 8, generator=gen), dim=-1)
    values = torch.rand(3, 2, M, generator=gen)
    query = F.normalize(torch.randn(M, 8, generator=gen), dim=-1)
    short = torch.tensor([[True, False], [False, False], [True, True]])
    mem = _memory(keys, values, short)
    assert torch.allclose(_read(query, mem, 0.1, 0.2, chunk=M), _read(query, mem, 0.1, 0.2, chunk=5), atol=1e-6)


def test_locality_prior_acts_on_short_term_entries_only() -> None:
    """Two remembered positions look the same; only a short-term entry prefers the near one."""
    keys = torch.zeros(1, M, 2)
    keys[..., 0] = 1.0  # every memory position identical
    values = torch.zeros(1, 1, M)
    values[0, 0, 0] = 1.0  # remembered object at the top-left cell only
    query = torch.zeros(M, 2)
    query[:, 0] = 1.0
    far_field = _read(query, _memory(keys, values), locality=0.1)
    near = _read(query, _memory(keys, values, torch.ones(1, 1, dtype=torch.bool)), locality=0.03)
    assert torch.allclose(far_field, torch.full_like(far_field, 1.0 / M), atol=1e-6)  # uniform average
    assert near[0, 0] > 0.9 and near[0, -1] < 1e-3  # the top-left cell reads itself, the far corner does not


def test_untrained_keys_are_the_normalised_pooled_embedding() -> None:
    module = MemoryReadout(16, (16, 16), MemoryReadoutConfig(grid=8))
    raw = torch.randn(1, 16, 16, 16)
    expected = F.normalize(F.adaptive_avg_pool2d(raw, 8).flatten(2)[0].T, dim=-1)
    assert torch.allclose(module.keys(raw), expected, atol=1e-6)
    assert module.grid == 8 and MemoryReadout(16, (4, 4), MemoryReadoutConfig(grid=8)).grid == 4


def test_read_out_refuses_objects_without_memory() -> None:
    module = MemoryReadout(4, (G, G), MemoryReadoutConfig(grid=G))
    mem = ReadoutMemory(
        torch.zeros(1, M, 4), torch.zeros(2, 1, M), torch.tensor([[True], [False]]), torch.zeros(2, 1, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="at least one memory entry"):
        module(torch.zeros(M, 4), mem)


def test_read_out_trains_temperature_locality_and_keys() -> None:
    torch.manual_seed(0)
    module = MemoryReadout(8, (G, G), MemoryReadoutConfig(grid=G))
    raw = torch.randn(2, 8, G, G)
    nn_init = module.key_residual.weight.detach().clone()
    mem = ReadoutMemory(
        module.keys(raw[:1])[None],
        torch.rand(1, 1, M),
        torch.ones(1, 1, dtype=torch.bool),
        torch.ones(1, 1, dtype=torch.bool),
    )
    out = module(module.keys(raw[1:]), mem)
    (out.prob - 1.0).pow(2).mean().backward()
    assert module.log_temperature.grad is not None and module.log_temperature.grad.abs() > 0
    assert module.log_locality.grad is not None and module.log_locality.grad.abs() > 0
    assert module.key_residual.weight.grad.abs().sum() > 0
    assert torch.equal(module.key_residual.weight.detach(), nn_init)
    assert out.peak.shape == out.mass.shape == (1,)


def test_soft_box_of_a_filled_rectangle_is_that_rectangle() -> None:
    prob = torch.zeros(1, 1, 64, 64)
    prob[0, 0, 10:30, 20:52] = 1.0
    box = soft_box(prob, 0.5, image_size=128)
    assert torch.allclose(box, torch.tensor([[40.0, 20.0, 104.0, 60.0]]), atol=1.0)


def test_soft_box_is_differentiable_and_click_sits_on_the_peak() -> None:
    prob = torch.full((1, 1, 64, 64), 0.1)
    prob[0, 0, 30:40, 5:15] = 0.9
    prob[0, 0, 33, 7] = 0.99
    prob.requires_grad_(True)
    soft_box(prob, 0.5, 128).sum().backward()
    assert prob.grad is not None and prob.grad.abs().sum() > 0
    assert peak_click(prob.detach(), 128).tolist() == [[[15.0, 67.0]]]  # (7.5, 33.5) * 2


def test_prompts_say_whether_memory_found_the_object() -> None:
    prob = torch.zeros(2, 1, 16, 16)
    prob[0, 0, 4:8, 4:8] = 0.8
    prob[1] = 0.1
    p = readout_prompts(prob, threshold=0.5, absent_below=0.2, image_size=64, click=True)
    assert p.found.tolist() == [True, False]
    assert p.boxes.shape == (2, 4) and p.point_coords.shape == (2, 1, 2) and p.point_labels.tolist() == [[1], [1]]
    assert p.mask_inputs.shape == prob.shape and p.mask_inputs.max() <= 10 and p.mask_inputs.min() >= -10
    assert readout_prompts(prob, 0.5, 0.2, 64, click=False).point_coords is None


def _two_blobs() -> torch.Tensor:
    """(1, 1, 16, 16): the object (peak 0.95) at the top left, a look-alike (0.7) at the bottom right."""
    prob = torch.full((1, 1, 16, 16), 0.05)
    prob[0, 0, 1:5, 1:5] = 0.9
    prob[0, 0, 2, 2] = 0.95
    prob[0, 0, 10:14, 10:14] = 0.7
    return prob


def test_peak_region_keeps_the_peaks_blob_only() -> None:
    prob = _two_blobs()
    region = peak_region(prob, 0.5)[0, 0]
    assert region[1:5, 1:5].all() and region[0:6, 0:6].all()  # the blob, dilated by one cell
    assert not region[8:, 8:].any()  # not the look-alike
    # A snake-shaped blob is still one region: the growth follows it around its bends.
    snake = torch.zeros(1, 1, 16, 16)
    snake[0, 0, 1, 1:15] = 0.9
    snake[0, 0, 1:15, 14] = 0.9
    snake[0, 0, 14, 1:15] = 0.9
    snake[0, 0, 1, 1] = 0.95
    assert peak_region(snake, 0.5)[0, 0, 14, 1] == 1


def _flood_region(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """Reference: breadth-first 8-connected flood fill from the peak, then a 3x3 dilation."""
    g = prob.shape[-1]
    peak = int(prob.flatten().argmax())
    start = divmod(peak, g)
    region = torch.zeros(g, g)
    region[start] = 1.0
    if prob[start] >= threshold:
        todo = [start]
        while todo:
            y, x = todo.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < g and 0 <= u < g and not region[v, u] and prob[v, u] >= threshold:
                        region[v, u] = 1.0
                        todo.append((v, u))
    return F.max_pool2d(region[None, None], 3, stride=1, padding=1)[0, 0]


def test_peak_region_is_the_flood_fill_from_the_peak_on_random_maps() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(40):
        prob = torch.rand(3, 1, 16, 16, generator=gen)
        for _ in range(trial % 3):  # smoother maps: larger, winding regions
            prob = F.avg_pool2d(prob, 3, stride=1, padding=1)
        threshold = float(prob.quantile(0.6))
        got = peak_region(prob, threshold)
        for i in range(3):
            assert torch.equal(got[i, 0], _flood_region(prob[i, 0], threshold))


def test_negative_click_lands_on_the_look_alike_and_focus_shrinks_the_box() -> None:
    prob = _two_blobs()
    region = peak_region(prob, 0.5)
    xy, label = competing_click(prob, region, 0.5, 64)
    assert label.tolist() == [[0]]
    assert 40 <= xy[0, 0, 0] <= 56 and 40 <= xy[0, 0, 1] <= 56  # inside the look-alike (cells 10-13 of 16, x4)
    lone = prob.clone()
    lone[0, 0, 10:14, 10:14] = 0.05
    assert competing_click(lone, peak_region(lone, 0.5), 0.5, 64)[1].tolist() == [[-1]]  # nothing competes: padding
    up = F.interpolate(prob, size=(64, 64), mode="nearest")
    wide = readout_prompts(up, 0.5, 0.2, 64, click=True, grid_prob=prob)
    tight = readout_prompts(up, 0.5, 0.2, 64, click=True, grid_prob=prob, focus=True, negative_click=True)
    assert wide.boxes[0, 2] > 50 and tight.boxes[0, 2] < 25  # the look-alike no longer stretches the box
    assert tight.point_labels.tolist() == [[1, 0]] and tight.point_coords.shape == (1, 2, 2)


def test_untrained_refiner_changes_nothing_and_sees_prototypes() -> None:
    gen = torch.Generator().manual_seed(0)
    refiner = ReadoutRefiner(key_dim=8, dim=4)
    logits = torch.randn(3, 1, G, G, generator=gen)
    query = F.normalize(torch.randn(M, 8, generator=gen), dim=-1)
    sim = torch.randn(3, 2, M, generator=gen)
    assert torch.equal(refiner(logits, sim, query), logits)
    # Prototypes: the foreground one is the mean key under the remembered mask.
    keys = F.normalize(torch.randn(2, M, 8, generator=gen), dim=-1)
    values = torch.zeros(1, 2, M)
    values[0, 0, :5] = 1.0
    values[0, 1, :5] = 1.0
    sims = prototype_similarity(query, _memory(keys, values))
    fg = F.normalize(keys[:, :5].sum(dim=(0, 1)), dim=0)
    assert sims.shape == (1, 2, M) and torch.allclose(sims[0, 0], query @ fg, atol=1e-5)


def test_refiner_learns_to_suppress_a_look_alike() -> None:
    """The refiner can be trained: a few steps on one example move the read-out towards it."""
    torch.manual_seed(0)
    refiner = ReadoutRefiner(key_dim=8, dim=8)
    prob = _two_blobs()
    logits = torch.logit(prob)
    query = F.normalize(torch.randn(256, 8), dim=-1)
    sim = torch.zeros(1, 2, 256)
    target = (prob > 0.8).float()
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    before = F.binary_cross_entropy_with_logits(refiner(logits, sim, query), target).item()
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(refiner(logits, sim, query), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * before


def _reference_read(query, memory, temperature, locality, positions):
    """The read-out written plainly: one softmax per object over the (frame, position) pairs it reads."""
    d2 = torch.cdist(positions, positions).pow(2)
    rows = []
    for n in range(memory.values.shape[0]):
        logits, values = [], []
        for f in range(memory.keys.shape[0]):
            if memory.selected[n, f]:
                lg = query @ memory.keys[f].T / temperature
                if memory.short_term[n, f] and locality > 0:
                    lg = lg - d2 / (2 * locality**2)
                logits.append(lg)
                values.append(memory.values[n, f])
        rows.append(torch.cat(logits, dim=1).softmax(dim=1) @ torch.cat(values))
    return torch.stack(rows)


@pytest.mark.parametrize("locality", [0.0, 0.15])
def test_shared_exponentials_equal_one_softmax_per_object(locality: float) -> None:
    """The shared-frame formulation is the per-object softmax, for any selection, also at a
    temperature sharp enough that a naive shared shift would underflow."""
    gen = torch.Generator().manual_seed(3)
    frames, objects = 5, 4
    keys = F.normalize(torch.randn(frames, M, 16, generator=gen), dim=-1)
    values = torch.rand(objects, frames, M, generator=gen)
    selected = torch.rand(objects, frames, generator=gen) > 0.4
    selected[:, 0] = True
    short = torch.rand(objects, frames, generator=gen) > 0.5
    memory = ReadoutMemory(keys, values * selected[..., None], selected, short)
    query = F.normalize(torch.randn(M, 16, generator=gen), dim=-1)
    for temperature in (0.05, 0.005):
        got = propagate_masks(
            query, memory, torch.tensor(temperature), torch.tensor(locality), grid_positions(G, query.device), chunk=24
        )
        want = _reference_read(query, memory, temperature, locality, grid_positions(G, query.device))
        assert torch.isfinite(got).all()
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
