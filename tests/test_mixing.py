"""The mixer's logic on in-memory rows (no TensorFlow)."""

import json

import numpy as np
import pytest

from data.mixing import Mixer, ReplayStream, validate_weights

L = 8
NAMES = ["a", "b", "c"]


def _rows(domain: int, process: int, n: int = 50) -> list[dict]:
    """Rows whose first input token encodes (process, domain, index): all distinct."""
    out = []
    for i in range(n):
        tok = np.full(L, 1000 * process + 100 * domain + i, np.int32)
        out.append({"inputs": tok, "targets": tok + 1, "segment_ids": np.ones(L, np.int32),
                    "positions": np.arange(L, dtype=np.int32),
                    "loss_mask": np.ones(L, np.float32)})
    return out


def _mixer(weights=(1, 1, 1), seed=0, process=0, processes=1, batch=12) -> Mixer:
    rows = {n: _rows(d, process) for d, n in enumerate(NAMES)}
    return Mixer.from_rows(rows, global_batch=batch, weights=weights, seed=seed,
                           process_index=process, process_count=processes)


def _domain_of(batch) -> np.ndarray:
    return (batch["inputs"][:, 0] % 1000) // 100


def test_batch_format():
    b = next(_mixer())
    assert b["inputs"].shape == (12, L) and b["inputs"].dtype == np.int32
    assert b["loss_mask"].dtype == np.float32
    assert b["domain_id"].shape == (12,) and b["domain_id"].dtype == np.int32


@pytest.mark.parametrize("k", [0, 1, 2])
def test_one_hot_weights_give_one_domain(k):
    w = np.eye(3)[k]
    for b in [next(m) for m in [_mixer(w)] for _ in range(5)]:
        assert (b["domain_id"] == k).all()
        assert (_domain_of(b) == k).all()


def test_rows_come_from_the_drawn_domain():
    m = _mixer((1, 2, 3))
    for _ in range(20):
        b = next(m)
        np.testing.assert_array_equal(_domain_of(b), b["domain_id"])


def test_weight_change_applies_from_next_batch():
    m = _mixer((1, 0, 0))
    assert (next(m)["domain_id"] == 0).all()
    m.set_weights({"c": 1.0})
    assert (next(m)["domain_id"] == 2).all()
    m.set_weights([0, 5, 0])
    assert (next(m)["domain_id"] == 1).all()


def test_resume_gives_identical_batches():
    m = _mixer((1, 2, 3), seed=7)
    for _ in range(5):
        next(m)
    m.set_weights((3, 1, 1))
    state = json.loads(json.dumps(m.get_state()))
    expected = [next(m) for _ in range(6)]
    fresh = _mixer((1, 1, 1), seed=123)
    fresh.set_state(state)
    for e, g in zip(expected, [next(fresh) for _ in range(6)]):
        for k in e:
            np.testing.assert_array_equal(e[k], g[k])


def test_processes_draw_alike_and_split_rows():
    whole = _mixer((1, 2, 3), seed=3)
    parts = [_mixer((1, 2, 3), seed=3, process=p, processes=2) for p in range(2)]
    seen = set()
    for _ in range(10):
        b0, b1 = next(parts[0]), next(parts[1])
        assert b0["inputs"].shape[0] == b1["inputs"].shape[0] == 6
        np.testing.assert_array_equal(
            np.concatenate([b0["domain_id"], b1["domain_id"]]), next(whole)["domain_id"])
        ids = np.concatenate([b0["inputs"][:, 0], b1["inputs"][:, 0]]).tolist()
        assert len(set(ids)) == 12 and not seen & set(ids)  # no row twice, ever
        seen |= set(ids)


@pytest.mark.parametrize("weights, match", [
    ((1, -1, 1), ">= 0"),
    ((0, 0, 0), "all be zero"),
    ((1, float("nan"), 1), "finite"),
    ((1, float("inf"), 1), "finite"),
    ((1, 1), "one entry per domain"),
    ({"a": 1, "zz": 2}, r"unknown domain.*\['zz'\].*\['a', 'b', 'c'\]"),
])
def test_bad_weights_are_rejected(weights, match):
    with pytest.raises(ValueError, match=match):
        validate_weights(weights, NAMES)
    m = _mixer()
    with pytest.raises(ValueError, match=match):
        m.set_weights(weights)


def test_mapping_weights_fill_missing_with_zero():
    np.testing.assert_allclose(validate_weights({"b": 3, "c": 1}, NAMES), [0, 0.75, 0.25])


def test_state_from_another_layout_is_rejected():
    state = _mixer(process=0, processes=2).get_state()
    with pytest.raises(ValueError, match="does not fit"):
        _mixer(process=1, processes=2).set_state(state)


def test_bad_layout_is_rejected():
    with pytest.raises(ValueError, match="multiple of the process count"):
        _mixer(batch=7, processes=2)


def test_replay_stream_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        next(ReplayStream([]))
