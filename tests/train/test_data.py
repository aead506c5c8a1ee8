"""Length-grouped batches and the token cap that splits a micro-batch into pieces."""

from r1tune.model.template import TokenizedSample
from r1tune.train.data import length_grouped_batches, token_capped_pieces


def sample(n: int) -> TokenizedSample:
    return TokenizedSample(list(range(n)), [-100] * (n - 1) + [1])


def test_pieces_keep_every_sample_once_and_respect_the_cap():
    lengths = [700, 30, 1024, 512, 64, 900, 200, 1500]
    samples = [sample(n) for n in lengths]
    pieces = token_capped_pieces(samples, 2048)
    assert sorted(len(s.input_ids) for p in pieces for s in p) == sorted(lengths)
    for p in pieces:
        width = max(len(s.input_ids) for s in p)
        assert len(p) * width <= 2048 or len(p) == 1  # a row longer than the cap is a piece of its own
    assert [len(s.input_ids) for s in pieces[0]] == [1500]  # longest first: rows of a piece are alike
    assert len(pieces) < len(samples)  # short rows share a piece


def test_small_batches_and_no_cap_stay_whole():
    samples = [sample(n) for n in (10, 20, 30)]
    assert token_capped_pieces(samples, 2048) == [samples]
    assert token_capped_pieces(samples, None) == [samples]
    assert token_capped_pieces(samples, 0) == [samples]


def test_length_grouped_batches_are_a_permutation_and_reproducible():
    lengths = list(range(1, 101))
    a = length_grouped_batches(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(100))
    assert a == length_grouped_batches(lengths, 8, seed=3, epoch=1)
    assert a != length_grouped_batches(lengths, 8, seed=3, epoch=2)
