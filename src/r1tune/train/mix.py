"""data.mix: several training sources sampled into every batch with fixed shares (issue 15).

    sources = load_mix(cfg.data, tokenizer, template, data.reasoning, skipped)    # [MixSource(name, samples, share)]
    stream = MixedStream(data.train, sources, global_batch=16, seed=42)          # same interface as BatchStream
    print(mix_line(stream, micro_batches=total_steps * grad_accum))

Every slot of global micro-batch k draws its source with probability = the source's share (data.train gets
what the others leave), from a generator seeded by (seed, k); each source then hands out its samples in a
shuffled order, reshuffled (seeded) every time it runs out. Batch k is a pure function of (seed, k), so a
resumed run rebuilds the same batches. Replay of earlier increments (`continual.replay`) is a mix source like
any other. Unlike BatchStream, mixed batches are not length-grouped.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from r1tune.data.formats import load_samples
from r1tune.errors import R1TuneError
from r1tune.model.template import TokenizedSample
from r1tune.train.data import tokenize_samples


@dataclass
class MixSource:
    name: str
    samples: list[TokenizedSample]
    share: float


def load_mix(cfg, tokenizer, template: str, plan: dict, skipped: list[dict]) -> list[MixSource]:
    """The `data.mix` sources of DataConfig `cfg`, tokenized as data.train was (same reasoning plan)."""
    sources = []
    for spec in cfg.mix:
        samples, bad = load_samples(spec.path, cfg.format, cfg.on_error, cfg.encoding, cfg.columns)
        skipped += [e.as_dict() for e in bad]
        tokenized, _ = tokenize_samples(samples, tokenizer, template, cfg, skipped, plan)
        name = spec.name or Path(spec.path).stem
        if not tokenized:
            raise R1TuneError(f"{spec.path}: data.mix source {name!r} has no trainable samples")
        sources.append(MixSource(name, tokenized, spec.share))
    return sources


class MixedStream:
    """Global micro-batches drawn from data.train and the mix sources; `batch(k)` as in BatchStream."""

    def __init__(self, train: list[TokenizedSample], sources: list[MixSource], global_batch: int, seed: int):
        main_share = 1.0 - sum(s.share for s in sources)
        self.sources = [MixSource("train", train, main_share), *sources]
        self.global_batch, self.seed = global_batch, seed
        # an "epoch" is one expected pass over data.train
        self.per_epoch = max(1, math.ceil(len(train) / (global_batch * main_share)))
        self._cumulative = [0.0]
        for s in self.sources:
            self._cumulative.append(self._cumulative[-1] + s.share)
        self._drawn: list[list[int]] = []  # micro-batch k → source index of each slot (memoised, built in order)
        self._used: list[list[int]] = [[0] * len(self.sources)]  # k → samples each source gave before batch k
        self._orders: dict[tuple[int, int], list[int]] = {}

    def slots(self, k: int) -> list[int]:
        while len(self._drawn) <= k:
            rng = random.Random(self.seed * 1_000_003 + len(self._drawn))
            drawn = [self._source_of(rng.random()) for _ in range(self.global_batch)]
            used = list(self._used[-1])
            for s in drawn:
                used[s] += 1
            self._drawn.append(drawn)
            self._used.append(used)
        return self._drawn[k]

    def _source_of(self, u: float) -> int:
        for i in range(len(self.sources)):
            if u < self._cumulative[i + 1]:
                return i
        return 0  # rounding at the top end: data.train

    def _order(self, source: int, round_: int) -> list[int]:
        """Sample order of `source`'s pass number `round_` (seeded)."""
        key = (source, round_)
        if key not in self._orders:
            order = list(range(len(self.sources[source].samples)))
            random.Random((self.seed * 7_919 + source) * 1_000_003 + round_).shuffle(order)
            self._orders = {k: v for k, v in self._orders.items() if k[0] != source or k[1] >= round_ - 1}
            self._orders[key] = order
        return self._orders[key]

    def batch(self, k: int) -> list[TokenizedSample]:
        slots = self.slots(k)
        used = list(self._used[k])
        out = []
        for s in slots:
            n = len(self.sources[s].samples)
            round_, position = divmod(used[s], n)
            out.append(self.sources[s].samples[self._order(s, round_)[position]])
            used[s] += 1
        return out

    def counts(self, micro_batches: int) -> list[int]:
        """Samples each source contributes over the first `micro_batches` global micro-batches."""
        if micro_batches:
            self.slots(micro_batches - 1)
        return list(self._used[micro_batches])


def mix_line(stream: MixedStream, micro_batches: int) -> str:
    """The start line's account of the mix: how many samples of each source the run will see."""
    counts = stream.counts(micro_batches)
    total = sum(counts) or 1
    parts = [f"{s.name} {n} ({n / total:.0%} of {total}; {len(s.samples)} available)"
             for s, n in zip(stream.sources, counts)]
    return "data.mix: " + ", ".join(parts)
