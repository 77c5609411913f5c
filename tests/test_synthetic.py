"""The synthetic source: packed rows, provenance, resumable state, consistent process split."""

import numpy as np
import pytest

from data.synthetic import EOS, SyntheticMixture


def _mix(**kw):
    args = dict(num_domains=3, vocab_size=64, seq_len=32, global_batch=8, seed=1)
    return SyntheticMixture(**{**args, **kw})


def test_rows_are_packed_consistently():
    b = next(_mix())
    for inp, tgt, seg, pos in zip(b["inputs"], b["targets"], b["segment_ids"], b["positions"]):
        starts = pos == 0
        assert (np.diff(seg)[~starts[1:]] == 0).all() and (np.diff(seg)[starts[1:]] == 1).all()
        assert (inp[starts] == 0).all() and (inp[~starts] == tgt[np.nonzero(~starts)[0] - 1]).all()
        ends = np.nonzero(starts)[0][1:] - 1
        assert (tgt[ends] == EOS).all()


def test_one_hot_weights_give_one_domain_and_changes_apply_next_batch():
    m = _mix(weights=[0, 1, 0])
    assert (next(m)["domain_id"] == 1).all()
    m.set_weights("0,0,1")
    assert (next(m)["domain_id"] == 2).all()


def test_resume_gives_identical_batches():
    a = _mix()
    for _ in range(3):
        next(a)
    state = a.get_state()
    expected = [next(a) for _ in range(2)]
    b = _mix()
    b.set_state(state)
    for want, got in zip(expected, [next(b) for _ in range(2)]):
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])


def test_processes_agree_and_split_the_batch():
    whole = next(_mix())
    parts = [next(_mix(process_index=p, process_count=2)) for p in range(2)]
    for k in whole:
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))


@pytest.mark.parametrize("w", [[1, 1], [-1, 1, 1], [0, 0, 0], [float("nan"), 1, 1]])
def test_bad_weights_are_rejected(w):
    with pytest.raises(ValueError, match="weights must"):
        _mix(weights=w)


def test_eval_rows_are_padded_and_domain_tagged():
    sets = _mix().eval_batches(rows_per_domain=3)
    assert list(sets) == ["synthetic_0", "synthetic_1", "synthetic_2"]
    for d, batches in enumerate(sets.values()):
        (b,) = batches
        assert (b["domain_id"] == d).all() and list(b["loss_mask"].sum(-1) > 0) == [True] * 3 + [False] * 5
