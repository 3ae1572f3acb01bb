"""Threshold rules: the reference percentile equals numpy's, the exact rule counts exactly."""
import numpy as np
import pytest
import torch

from captum_prune.selection import (
    exact_keep,
    order_statistics,
    reference_keep,
    reference_threshold,
    select,
)


def _rows(seed, n_rows=4, n=997, zeros=0.4, ties=True):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n_rows, n, generator=g) ** 3  # skewed, like |a * g|
    scores[torch.rand(n_rows, n, generator=g) < zeros] = 0.0
    if ties:
        scores[:, : n // 10] = scores[:, :1]  # a block of tied values
    return scores


def test_reference_keeps_everything_at_sparsity_zero():
    scores = torch.ones(2, 50)  # all tied: the authors' rule would prune every neuron
    assert reference_keep(scores, 0.0).all()


@pytest.mark.parametrize("sparsity", [0.0, 0.01, 0.3, 0.5, 0.7, 0.85, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_threshold_equals_numpy_percentile(sparsity, seed):
    scores = _rows(seed)
    tau = reference_threshold(scores, sparsity)
    for row, value in zip(scores, tau):
        expected = np.percentile(row.numpy().astype(np.float64), 100 * sparsity)
        assert value.item() == expected


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_reference_threshold_tiny_rows(n):
    scores = torch.arange(2 * n, dtype=torch.float32).reshape(2, n).flip(1)
    for sparsity in (0.0, 0.25, 0.5, 0.75, 0.99):
        tau = reference_threshold(scores, sparsity)
        for row, value in zip(scores, tau):
            assert value.item() == np.percentile(row.numpy().astype(np.float64), 100 * sparsity)


def test_reference_prunes_all_zero_scores_at_low_sparsity():
    scores = _rows(3, zeros=0.5, ties=False)
    keep = reference_keep(scores, 0.3)
    # tau is 0 when more than 30% are zero: every zero goes, so fewer than 70% are kept.
    assert torch.all(keep == (scores > 0))
    assert torch.all(keep.float().mean(1) < 0.55)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.3, 0.5, 0.85, 0.99])
def test_exact_keeps_exact_count_and_highest_scores(sparsity):
    scores = _rows(4, zeros=0.5)
    keep = exact_keep(scores, sparsity)
    n = scores.shape[1]
    expected_kept = n - int(np.floor(sparsity * n + 0.5))
    assert keep.sum(1).tolist() == [expected_kept] * scores.shape[0]
    for row, k in zip(scores, keep):
        if k.all() or (~k).all():
            continue
        assert row[k].min() >= row[~k].max()  # nothing pruned outranks anything kept


def test_exact_breaks_ties_by_position():
    scores = torch.zeros(2, 10)
    keep = exact_keep(scores, 0.3)
    # All tied: the last three neurons in forward order are pruned.
    assert keep.tolist() == [[True] * 7 + [False] * 3] * 2


def test_per_layer_selection_prunes_each_layer():
    scores = _rows(5, zeros=0.0, ties=False)
    chunks = list(scores.split([100, 397, 500], dim=1))
    keep = select(chunks, 0.8, selection="per_layer", threshold="exact")
    for block, chunk in zip(keep, chunks):
        size = chunk.shape[1]
        assert block.shape == chunk.shape
        assert block.sum(1).tolist() == [size - int(np.floor(0.8 * size + 0.5))] * 4
    # Global selection does not balance layers: scale one layer up and it takes the budget.
    chunks[0] = chunks[0] + 10
    global_keep = select(chunks, 0.8, selection="global", threshold="exact")
    assert global_keep[0].all()


@pytest.mark.parametrize("rule", [reference_keep, exact_keep])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.85, 0.99])
def test_chunks_select_as_the_pooled_row(rule, sparsity, monkeypatch):
    # Per-layer chunks of any shape are pooled along the row in list order, exactly as one
    # concatenated matrix, on the sort path and on the sampled-bracket path alike.
    scores = _rows(9, n_rows=3, n=5800, zeros=0.5)
    shapes = [(3, 2, 10, 10), (3, 1000), (3, 5, 4, 40), (3, 3800)]
    chunks = [c.reshape(s) for c, s in zip(scores.split([200, 1000, 800, 3800], 1), shapes)]
    for limit in (1 << 17, 100):
        monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", limit)
        monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", limit)
        monkeypatch.setattr("captum_prune.selection._SAMPLE", 512)
        pooled = rule(scores, sparsity)
        split = rule(chunks, sparsity)
        assert [m.shape for m in split] == [c.shape for c in chunks]
        assert torch.equal(torch.cat([m.reshape(3, -1) for m in split], 1), pooled)
    assert torch.equal(reference_threshold(chunks, 0.7), reference_threshold(scores, 0.7))


def test_mixed_dtype_chunks_compare_on_one_scale():
    scores = _rows(10, n_rows=2, n=400, zeros=0.3).double()
    chunks = [scores[:, :150].float(), scores[:, 150:]]
    expected = reference_threshold(torch.cat([chunks[0].double(), chunks[1]], 1), 0.6)
    assert torch.equal(reference_threshold(chunks, 0.6), expected)


def test_rows_are_independent():
    scores = _rows(6)
    for rule in (reference_keep, exact_keep):
        together = rule(scores, 0.7)
        alone = torch.cat([rule(scores[i : i + 1], 0.7) for i in range(scores.shape[0])])
        assert torch.equal(together, alone)


@pytest.mark.parametrize("zeros", [0.0, 0.5])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.7, 0.9, 0.999])
def test_order_statistics_on_long_rows_equal_kthvalue(sparsity, zeros, monkeypatch):
    # Long rows take the sampled-bracket path; force it on moderately long rows.
    monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 1000)
    monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
    monkeypatch.setattr("captum_prune.selection._SAMPLE", 256)
    scores = _rows(7, n_rows=3, n=200_003, zeros=zeros)
    n = scores.shape[1]
    rank = int(sparsity * (n - 1))
    ranks = [rank, min(rank + 1, n - 1)]
    got = order_statistics(scores, ranks)
    for j, r in enumerate(ranks):
        assert torch.equal(got[:, j], torch.kthvalue(scores, r + 1, dim=1).values)
    assert torch.equal(
        reference_threshold(scores, sparsity), reference_threshold_by_sort(scores, sparsity)
    )


def test_order_statistics_fall_back_when_the_bracket_misses(monkeypatch):
    monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 10)
    monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
    monkeypatch.setattr("captum_prune.selection._SAMPLE", 64)
    monkeypatch.setattr("captum_prune.selection._MARGIN_SDS", -1e3)  # empty bracket: misses
    fallbacks = []
    kthvalue = torch.kthvalue
    monkeypatch.setattr(
        "captum_prune.selection.torch.kthvalue",
        lambda *a, **k: fallbacks.append(1) or kthvalue(*a, **k),
    )
    scores = _rows(8, n_rows=2, n=5000)
    for r in (100, 2500, 4900):
        expected = kthvalue(scores, r + 1, dim=1).values
        assert torch.equal(order_statistics(scores, [r])[:, 0], expected)
    assert len(fallbacks) == 3


def reference_threshold_by_sort(scores, sparsity):
    return torch.tensor(
        [np.percentile(row.numpy().astype(np.float64), 100 * sparsity) for row in scores],
        dtype=torch.float64,
    )
