"""Memory filter and memory bank: capacity, always-keep rules, determinism, strategy rankings.

No model here: the filter is a pure function of per-entry scores, so these tests build the
scores by hand (or let hypothesis draw them) and check the rules ``select_memory`` and
``entries_to_evict`` promise for every strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from i2v.memory_bank import MemoryBank, MemoryEntry, gather_memory
from i2v.memory_filter import (
    STRATEGIES,
    MemoryFilterConfig,
    MemoryScores,
    compute_scores,
    cosine_similarity,
    entries_to_evict,
    select_memory,
)

# -- helpers ----------------------------------------------------------------------------------


def make_scores(
    frames: Sequence[int],
    similarity: Optional[Sequence[float]] = None,
    iou: Optional[Sequence[float]] = None,
    presence: Optional[Sequence[float]] = None,
    prompted: Optional[Sequence[bool]] = None,
) -> MemoryScores:
    """Scores of len(frames) entries; unspecified fields are neutral (similar, good, present)."""
    n = len(frames)
    return MemoryScores(
        frame_idx=torch.tensor(list(frames), dtype=torch.long),
        similarity=torch.tensor(similarity if similarity is not None else [0.5] * n, dtype=torch.float),
        iou=torch.tensor(iou if iou is not None else [0.9] * n, dtype=torch.float),
        presence=torch.tensor(presence if presence is not None else [0.9] * n, dtype=torch.float),
        prompted=torch.tensor(prompted if prompted is not None else [False] * n, dtype=torch.bool),
    )


def permuted(scores: MemoryScores, perm: Sequence[int]) -> MemoryScores:
    idx = torch.tensor(list(perm), dtype=torch.long)
    return MemoryScores(
        frame_idx=scores.frame_idx[idx],
        similarity=scores.similarity[idx],
        iou=scores.iou[idx],
        presence=scores.presence[idx],
        prompted=scores.prompted[idx],
    )


def selected_frames(scores: MemoryScores, current: int, cfg: MemoryFilterConfig) -> List[int]:
    return scores.frame_idx[select_memory(scores, current, cfg)].tolist()


def tie_key(scores: MemoryScores, i: int, current: int) -> Tuple[int, int]:
    """The documented tie-break: temporal distance, then frame index."""
    frame = int(scores.frame_idx[i])
    return abs(frame - current), frame


def protected_prompted(scores: MemoryScores, current: int, max_prompted: int) -> List[int]:
    """Indices of the prompted entries kept unconditionally: the nearest ``max_prompted``."""
    prompted = [i for i in range(len(scores)) if bool(scores.prompted[i])]
    return sorted(prompted, key=lambda i: tie_key(scores, i, current))[:max_prompted]


def most_recent(scores: MemoryScores, current: int) -> int:
    return min(range(len(scores)), key=lambda i: tie_key(scores, i, current))


# Random banks: unique frame indices (the bank holds one entry per frame) in a short range
# around the current frame, and scores on a coarse grid, so that ties in priority and in
# temporal distance (frames on both sides of the current one) actually happen.
unit = st.sampled_from([0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0])


@st.composite
def memory_cases(draw: st.DrawFn) -> Tuple[MemoryScores, int, MemoryFilterConfig]:
    frames = draw(st.lists(st.integers(0, 24), min_size=0, max_size=16, unique=True))
    n = len(frames)
    scores = make_scores(
        frames,
        similarity=draw(st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.3, 0.5, 0.8, 1.0]), min_size=n, max_size=n)),
        iou=draw(st.lists(unit, min_size=n, max_size=n)),
        presence=draw(st.lists(unit, min_size=n, max_size=n)),
        prompted=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
    )
    capacity = draw(st.integers(1, 10))
    cfg = MemoryFilterConfig(
        strategy=draw(st.sampled_from(sorted(STRATEGIES))),
        capacity=capacity,
        max_prompted=draw(st.integers(0, capacity)),
    )
    return scores, draw(st.integers(0, 24)), cfg


# -- select_memory: rules that hold for every strategy ---------------------------------------


@settings(max_examples=300, deadline=None)
@given(memory_cases())
def test_selection_respects_capacity_and_is_sorted(case) -> None:
    scores, current, cfg = case
    chosen = select_memory(scores, current, cfg)
    assert chosen.dtype == torch.long and chosen.dim() == 1
    assert len(chosen) <= cfg.capacity
    idx = chosen.tolist()
    assert len(set(idx)) == len(idx) and all(0 <= i < len(scores) for i in idx)
    frames = scores.frame_idx[chosen].tolist()
    assert frames == sorted(frames)


@settings(max_examples=300, deadline=None)
@given(memory_cases())
def test_selection_always_keeps_prompted_then_most_recent(case) -> None:
    scores, current, cfg = case
    if len(scores) == 0:
        return
    chosen = set(select_memory(scores, current, cfg).tolist())
    protected = protected_prompted(scores, current, cfg.max_prompted)
    assert set(protected) <= chosen
    recent = most_recent(scores, current)
    if recent in protected or len(protected) < cfg.capacity:
        assert recent in chosen
    # Prompted entries beyond max_prompted are read only if one is the most recent entry.
    extra_prompted = {i for i in chosen if bool(scores.prompted[i])} - set(protected)
    assert extra_prompted <= {recent}


@settings(max_examples=300, deadline=None)
@given(memory_cases())
def test_selection_follows_the_strategy_ranking_and_fills_capacity(case) -> None:
    scores, current, cfg = case
    if len(scores) == 0:
        return
    chosen = set(select_memory(scores, current, cfg).tolist())
    forced = set(protected_prompted(scores, current, cfg.max_prompted))
    recent = most_recent(scores, current)
    if len(forced) < cfg.capacity:
        forced.add(recent)
    priority = STRATEGIES[cfg.strategy](scores, current, cfg).tolist()
    eligible = {
        i for i in range(len(scores)) if i not in forced and not bool(scores.prompted[i]) and priority[i] != -math.inf
    }
    ranked = chosen - forced
    # Everything selected is forced or eligible (quality_gated's dropped entries stay out).
    assert ranked <= eligible
    # A frame reads as much memory as it may.
    assert len(chosen) == min(cfg.capacity, len(forced | eligible))

    def rank(i: int) -> Tuple[float, int, int]:
        return (-priority[i], *tie_key(scores, i, current))

    # Every ranked pick outranks every eligible entry left out.
    for i in ranked:
        for j in eligible - chosen:
            assert rank(i) < rank(j)


@settings(max_examples=200, deadline=None)
@given(memory_cases(), st.randoms(use_true_random=False))
def test_selection_is_deterministic_and_order_free(case, random) -> None:
    scores, current, cfg = case
    first = selected_frames(scores, current, cfg)
    assert selected_frames(scores, current, cfg) == first
    perm = list(range(len(scores)))
    random.shuffle(perm)
    assert selected_frames(permuted(scores, perm), current, cfg) == first


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_empty_bank_selects_nothing(strategy: str) -> None:
    chosen = select_memory(make_scores([]), 5, MemoryFilterConfig(strategy=strategy))
    assert chosen.dtype == torch.long and chosen.shape == (0,)


def test_capacity_one_keeps_the_prompted_frame_over_the_most_recent() -> None:
    scores = make_scores([0, 8, 9], prompted=[True, False, False])
    cfg = MemoryFilterConfig(strategy="recency", capacity=1, max_prompted=1)
    assert selected_frames(scores, 10, cfg) == [0]
    # Without a prompted slot the most recent entry wins.
    cfg = MemoryFilterConfig(strategy="relevance", capacity=1, max_prompted=0)
    assert selected_frames(make_scores([0, 8, 9], similarity=[1.0, 0.9, -1.0]), 10, cfg) == [9]


def test_prompted_frames_nearest_first_up_to_max_prompted() -> None:
    scores = make_scores([0, 20, 30, 38, 39], prompted=[True, True, True, False, False])
    cfg = MemoryFilterConfig(strategy="recency", capacity=7, max_prompted=2)
    # Prompted 30 and 20 are nearest to frame 40; prompted 0 is beyond max_prompted and is not
    # read even though capacity is left.
    assert selected_frames(scores, 40, cfg) == [20, 30, 38, 39]


def test_ties_break_by_distance_then_frame_index() -> None:
    # Equal similarity everywhere: relevance falls back to distance, then to the earlier frame.
    scores = make_scores([4, 6, 3, 7, 1], similarity=[0.5] * 5)
    cfg = MemoryFilterConfig(strategy="relevance", capacity=3, max_prompted=0)
    # Most recent: 4 (distance 1, earlier than 6); then 6; then 3 (distance 2, earlier than 7).
    assert selected_frames(scores, 5, cfg) == [3, 4, 6]


# -- each strategy's ranking -------------------------------------------------------------------


def test_recency_picks_the_nearest_frames() -> None:
    scores = make_scores([1, 5, 9, 10, 12], similarity=[1.0, 0.9, -1.0, -1.0, 0.0], iou=[0.0] * 5)
    cfg = MemoryFilterConfig(strategy="recency", capacity=3, max_prompted=0)
    # Frame 10 is current-ish; nearest to 11 are 10, 12 (distance 1) and 9 (distance 2).
    assert selected_frames(scores, 11, cfg) == [9, 10, 12]


def test_relevance_picks_the_most_similar_frames() -> None:
    scores = make_scores([1, 5, 9, 10], similarity=[0.95, 0.2, 0.9, -0.3], iou=[0.0] * 4)
    cfg = MemoryFilterConfig(strategy="relevance", capacity=3, max_prompted=0)
    # 10 is kept as the most recent; then the two most similar, 1 and 9, not the nearer 5.
    assert selected_frames(scores, 11, cfg) == [1, 9, 10]


def test_quality_gated_drops_unreliable_entries() -> None:
    scores = make_scores(
        [1, 2, 3, 4, 10],
        similarity=[0.9, 0.9, 0.9, 0.9, 0.1],
        iou=[0.9, 0.3, 0.9, 0.9, 0.1],
        presence=[0.9, 0.9, 0.2, 0.9, 0.1],
    )
    cfg = MemoryFilterConfig(strategy="quality_gated", capacity=7, max_prompted=0, min_iou=0.5, min_presence=0.5)
    # 2 (low IoU) and 3 (absent) are dropped even though capacity is left; 10 is unreliable
    # too but is the most recent entry, which is always read.
    assert selected_frames(scores, 11, cfg) == [1, 4, 10]
    priority = STRATEGIES["quality_gated"](scores, 11, cfg)
    assert torch.isinf(priority[[1, 2, 4]]).all() and torch.isfinite(priority[[0, 3]]).all()


def test_quality_gated_ranks_by_similarity_times_iou_with_recency_bonus() -> None:
    cfg = MemoryFilterConfig(strategy="quality_gated", capacity=2, max_prompted=0, recency_weight=0.1)
    # 20 is the most recent. Among 0, 5, 10: 0.8*0.9=0.72 beats 0.9*0.6=0.54 and 0.6*0.9=0.54.
    scores = make_scores([0, 5, 10, 20], similarity=[0.8, 0.9, 0.6, 0.0], iou=[0.9, 0.6, 0.9, 0.9])
    assert selected_frames(scores, 21, cfg) == [0, 20]
    priority = STRATEGIES["quality_gated"](scores, 21, cfg)
    expected = torch.tensor([0.72 + 0.1 / 22, 0.54 + 0.1 / 17, 0.54 + 0.1 / 12, 0.0 + 0.1 / 2])
    assert torch.allclose(priority, expected, atol=1e-6)
    # Equal similarity x IoU: the recency bonus prefers the nearer frame (10 over 5).
    cfg3 = MemoryFilterConfig(strategy="quality_gated", capacity=3, max_prompted=0, recency_weight=0.1)
    assert selected_frames(scores, 21, cfg3) == [0, 10, 20]


# -- entries_to_evict ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(memory_cases(), st.integers(1, 12), st.randoms(use_true_random=False))
def test_eviction_keeps_bank_size_most_recent_and_protected(case, bank_size: int, random) -> None:
    scores, current, cfg = case
    n = len(scores)
    drop = entries_to_evict(scores, current, cfg, bank_size)
    assert drop.dtype == torch.long
    dropped = drop.tolist()
    assert dropped == sorted(set(dropped)) and all(0 <= i < n for i in dropped)
    assert n - len(dropped) == min(n, bank_size)
    if n == 0:
        return
    protected = protected_prompted(scores, current, min(cfg.max_prompted, bank_size))
    assert not set(protected) & set(dropped)
    if len(protected) < bank_size:
        assert most_recent(scores, current) not in dropped
    # Deterministic, and independent of the order the bank lists its entries in.
    frames = sorted(scores.frame_idx[drop].tolist())
    perm = list(range(n))
    random.shuffle(perm)
    shuffled = permuted(scores, perm)
    assert sorted(shuffled.frame_idx[entries_to_evict(shuffled, current, cfg, bank_size)].tolist()) == frames


@dataclass(frozen=True)
class _OldestFirstConfig(MemoryFilterConfig):
    """A filter config with a field of its own, as a new strategy would add."""

    oldest_first: bool = True


def _age_priority(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig) -> torch.Tensor:
    assert isinstance(cfg, _OldestFirstConfig), "the strategy must see its own config"
    distance = scores.temporal_distance(current_frame).float()
    return distance if cfg.oldest_first else -distance


def test_eviction_passes_every_config_field_to_the_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STRATEGIES, "age", _age_priority)
    scores = make_scores([1, 2, 3, 4, 5, 6])
    keep_old = _OldestFirstConfig(strategy="age", capacity=2, max_prompted=0, oldest_first=True)
    keep_new = _OldestFirstConfig(strategy="age", capacity=2, max_prompted=0, oldest_first=False)
    # The most recent entry is always kept; the strategy's field decides the rest.
    assert scores.frame_idx[entries_to_evict(scores, 7, keep_old, 3)].tolist() == [3, 4, 5]
    assert scores.frame_idx[entries_to_evict(scores, 7, keep_new, 3)].tolist() == [1, 2, 3]


def test_eviction_is_a_noop_below_bank_size() -> None:
    scores = make_scores([1, 2, 3])
    assert entries_to_evict(scores, 4, MemoryFilterConfig(), bank_size=3).shape == (0,)


def test_eviction_refills_with_nearest_frames_when_quality_gate_drops_too_many() -> None:
    # All but the current entry fail the gate; the bank still keeps bank_size entries, the
    # nearest ones, with equal distances resolved towards the earlier frame.
    scores = make_scores([12, 8, 10, 5], iou=[0.1, 0.1, 0.9, 0.1])
    cfg = MemoryFilterConfig(strategy="quality_gated", capacity=2, max_prompted=0)
    drop = entries_to_evict(scores, 10, cfg, bank_size=2)
    assert sorted(scores.frame_idx[drop].tolist()) == [5, 12]


# -- config validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(strategy="fifo"), "unknown memory strategy 'fifo'"),
        (dict(capacity=0), "capacity must be at least 1"),
        (dict(capacity=3, max_prompted=4), r"max_prompted must be in \[0, capacity=3\]"),
        (dict(max_prompted=-1), "max_prompted must be in"),
    ],
)
def test_filter_config_rejects_bad_values(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryFilterConfig(**kwargs)


def test_scores_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="MemoryScores.iou has shape"):
        MemoryScores(
            frame_idx=torch.arange(3),
            similarity=torch.zeros(3),
            iou=torch.zeros(2),
            presence=torch.zeros(3),
            prompted=torch.zeros(3, dtype=torch.bool),
        )


def test_cosine_similarity_handles_empty_and_zero_vectors() -> None:
    assert cosine_similarity(torch.ones(4), torch.zeros(0, 4)).shape == (0,)
    sim = cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]))
    assert torch.allclose(sim, torch.tensor([1.0, 0.0, -1.0]))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_compute_scores_puts_every_field_on_the_descriptors_device(strategy: str) -> None:
    # The bank passes device descriptors and CPU frame/iou/presence/prompted tensors, and the
    # strategies mix them. "meta" stands in for a GPU: mixing it with CPU tensors fails the
    # same way, so this runs on a CPU-only machine.
    scores = compute_scores(
        query=torch.ones(3, device="meta"),
        keys=torch.ones(2, 3, device="meta"),
        frame_idx=torch.tensor([1, 2], dtype=torch.int32),
        iou=torch.tensor([0.5, 0.7], dtype=torch.float64),
        presence=torch.tensor([1.0, 1.0]),
        prompted=torch.tensor([1, 0]),
    )
    fields = (scores.frame_idx, scores.similarity, scores.iou, scores.presence, scores.prompted)
    assert {t.device.type for t in fields} == {"meta"}
    assert scores.frame_idx.dtype == torch.long and scores.prompted.dtype == torch.bool
    assert scores.iou.dtype == scores.presence.dtype == torch.float32
    assert STRATEGIES[strategy](scores, 3, MemoryFilterConfig(strategy=strategy)).shape == (2,)


# -- MemoryBank ------------------------------------------------------------------------------

TOKENS, DK, DV, C = 4, 3, 5, 8


def entry(
    frame: int,
    descriptor: Optional[torch.Tensor] = None,
    iou: float = 0.9,
    presence: float = 0.9,
    prompted: bool = False,
    fill: float = 0.0,
) -> MemoryEntry:
    if descriptor is None:
        descriptor = torch.ones(C)
    return MemoryEntry(
        frame_idx=frame,
        keys=torch.full((TOKENS, DK), fill),
        values=torch.full((TOKENS,), fill),
        descriptor=descriptor,
        iou=iou,
        presence=presence,
        prompted=prompted,
    )


def recency_bank(bank_size: int = 3, capacity: int = 2, max_prompted: int = 1) -> MemoryBank:
    return MemoryBank(bank_size, MemoryFilterConfig(strategy="recency", capacity=capacity, max_prompted=max_prompted))


def test_bank_add_and_replace_the_same_frame() -> None:
    bank = recency_bank()
    bank.add(entry(0, fill=1.0))
    bank.add(entry(1))
    assert len(bank) == 2
    bank.add(entry(0, fill=2.0, prompted=True))
    assert len(bank) == 2
    assert bank.entries[0].prompted and bank.entries[0].keys.eq(2.0).all()


def test_bank_evicts_down_to_size_keeping_prompted_and_newest() -> None:
    bank = recency_bank(bank_size=3, capacity=2, max_prompted=1)
    bank.add(entry(0, prompted=True))
    for f in range(1, 8):
        bank.add(entry(f))
        assert len(bank) <= 3
        assert 0 in bank.entries and f in bank.entries  # the prompted and the newest stay
    # a full bank evicts down to max(capacity, bank_size - EVICTION_SLACK) at once
    assert sorted(bank.entries) == [0, 7]


def test_bank_eviction_never_drops_the_entry_just_added() -> None:
    # quality_gated drops everything unreliable, including the newest entry, from reading;
    # eviction must still keep it (it is the most recent) and refill from the nearest ones.
    bank = MemoryBank(2, MemoryFilterConfig(strategy="quality_gated", capacity=2, max_prompted=0))
    for f in range(5):
        bank.add(entry(f, iou=0.1))
    assert sorted(bank.entries) == [3, 4]


def test_bank_select_excludes_the_frame_being_segmented() -> None:
    bank = recency_bank(bank_size=5, capacity=3, max_prompted=1)
    for f in (0, 4, 5, 6):
        bank.add(entry(f, prompted=f == 0))
    assert [e.frame_idx for e in bank.select(5, torch.ones(C))] == [0, 4, 6]
    assert [e.frame_idx for e in bank.select(5, torch.ones(C), exclude_frame=False)] == [0, 4, 5]
    assert recency_bank().select(3, torch.ones(C)) == []
    only = recency_bank()
    only.add(entry(3))
    assert only.select(3, torch.ones(C)) == []


def test_bank_select_by_relevance_uses_descriptors() -> None:
    bank = MemoryBank(5, MemoryFilterConfig(strategy="relevance", capacity=2, max_prompted=0))
    like, unlike = torch.eye(C)[0], torch.eye(C)[1]
    bank.add(entry(1, descriptor=like))
    bank.add(entry(2, descriptor=unlike))
    bank.add(entry(8, descriptor=unlike))
    # Frame 9 reads 8 (most recent) and 1 (similar), not 2.
    assert [e.frame_idx for e in bank.select(9, like)] == [1, 8]


def test_bank_remove_unprompted_and_discard() -> None:
    bank = recency_bank(bank_size=5)
    for f in range(4):
        bank.add(entry(f, prompted=f in (0, 2)))
    bank.remove_unprompted()
    assert sorted(bank.entries) == [0, 2]
    bank.discard(2)
    bank.discard(99)  # absent frames are ignored
    assert sorted(bank.entries) == [0]


# -- gather_memory -----------------------------------------------------------------------------


def test_gather_shares_a_frame_between_objects_and_marks_short_term() -> None:
    per_object = [[entry(0, prompted=True, fill=1.0), entry(5, fill=2.0)], [entry(5, fill=3.0), entry(9, fill=4.0)]]
    mem = gather_memory(per_object, frame_idx=10, short_term=4, device=torch.device("cpu"))
    assert mem.keys.shape == (3, TOKENS, DK)  # frames 0, 5, 9: frame 5 once for both objects
    assert mem.values.shape == (2, 3, TOKENS)
    assert mem.selected.tolist() == [[True, True, False], [False, True, True]]
    # Prompted entries are never short-term; frame 5 is 5 frames away (> 4); frame 9 is 1 away.
    assert mem.short_term.tolist() == [[False, False, False], [False, False, True]]
    assert mem.values[0, 0].eq(1.0).all() and mem.values[0, 1].eq(2.0).all() and mem.values[0, 2].eq(0.0).all()
    assert mem.values[1, 1].eq(3.0).all() and mem.values[1, 2].eq(4.0).all()


def test_gather_refuses_an_object_without_memory() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        gather_memory([[entry(0)], []], frame_idx=1, short_term=4, device=torch.device("cpu"))
