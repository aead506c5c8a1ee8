"""GRPO's verifiable rewards: plain functions over a batch of completions, a registry, and weights.

    rewards = build_rewards(cfg.rewards, cfg.grpo, prompts.samples)   # checked before anything is generated
    table = score(rewards, completions, samples)                      # (completions, rewards), NaN = not scored
    total = weighted_total(table, rewards)

Each reward is `f(completions, samples) -> [float | None]`, one value per completion (None: this reward cannot
score it; it is left out of that reward's mean and of the total, and a completion no reward scores gets no
advantage). A completion starts inside the reasoning: the prompt pre-fills `<think>\\n`
(`encode_generation_prompt`), so `format` judges prompt + completion — the one `<think>` is the prompt's, and
the completion must close it once.

- format: one closed think block (the completion holds no `<think>` and exactly one `</think>`), a non-empty
  answer after it, no role or think marker in the answer, and the completion finished (eos, not the length cap).
- accuracy: the answer against the reference — label (the declared label the answer names, aliases counted),
  number (the boxed value or the answer's last number, `3.5亿` = 350000000, within a relative tolerance) or
  exact (normalised text; JSON by value). `auto` picks one for the whole data set, once.
- json_schema: the answer is JSON valid against the schema (or, without one, a JSON object or array).
- field_f1: F1 of the (type, value) fields and relations the answer states against the reference record's.
- language: the answer is in the expected language — the reference's when there is one (a Chinese prompt may ask
  for an English label), else the prompt's.
- length: DAPO's soft overlong punishment: 0 up to max_completion_length − buffer, then down to −1 at the cap;
  a completion cut at the cap gets −1.
- your own: 'module:function' or 'file.py:function', called once per batch as f(answers, samples) with one dict
  per completion (id, prompt, reference, completion, reasoning, truncated and the record's fields). It runs
  your code, so it needs rewards.allow_code, like evaluate's business checks (`evaluate/business.py`).

A reward that needs a reference (accuracy, field_f1) on data some of whose prompts have none is an error
before generation, naming the prompts and the fields looked at.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from r1tune.data.numbers import parse_number
from r1tune.errors import R1TuneError
from r1tune.evaluate.business import load_callable
from r1tune.evaluate.extraction import match_counts, parse_structure
from r1tune.evaluate.reasoning_format import check_format
from r1tune.evaluate.structured import exact_match, json_valid, normalise_text, schema_valid
from r1tune.evaluate.verifiable import BOXED
from r1tune.model.template import ASSISTANT, BOS, THINK_CLOSE, THINK_OPEN, USER
from r1tune.train.prompts import REFERENCE_FIELDS, PromptSample
from r1tune.train.rollout import Completion

ROLE_MARKERS = (USER, ASSISTANT, BOS)
# a number as an answer writes it: sign, digits with thousands commas, decimals, a Chinese / English scale or %
NUMBER_TEXT = re.compile(r"[-−]?\s*[¥$€£]?\s*\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s*"
                         r"(?:万亿|千亿|百亿|十亿|亿|千万|百万|十万|万|trillion|billion|bn|million|mn|thousand|%|‰)?",
                         re.I)


RewardFn = Callable[[list[Completion], list[PromptSample]], list[float | None]]


@dataclass
class Reward:
    name: str
    fn: RewardFn
    weight: float = 1.0


# ---------------------------------------------------------------- the built-in rewards

def format_ok(c: Completion) -> bool:
    """One closed think block (the prompt's `<think>` + one `</think>`), an answer, no stray marker, finished."""
    if c.truncated or THINK_OPEN in c.text or c.text.count(THINK_CLOSE) != 1:
        return False
    checked = check_format(c.parsed, prompt="")
    return checked["well_formed"] and not any(m in c.text for m in ROLE_MARKERS)


def format_reward(completions: list[Completion], samples: list[PromptSample]) -> list[float]:
    return [float(format_ok(c)) for c in completions]


def answer_number(answer: str) -> float | None:
    """The boxed value, else the last number the answer writes (3.5亿 → 350000000.0)."""
    text = unicodedata.normalize("NFKC", answer)
    boxed = BOXED.findall(text)
    found = NUMBER_TEXT.findall(boxed[-1] if boxed else text) or NUMBER_TEXT.findall(text)
    for candidate in reversed(found):
        value = parse_number(re.sub(r"\s+", "", candidate).replace("−", "-"))
        if value is not None:
            return value
    return None


def named_label(answer: str, names: dict[str, list[str]]) -> str | None:
    """The label an answer names: one whose name (or alias) is the whole answer, else the only one it contains."""
    boxed = BOXED.findall(answer)
    text = normalise_text(boxed[-1] if boxed else answer)
    exact = [label for label, aliases in names.items() if text in (normalise_text(a) for a in aliases)]
    if len(exact) == 1:
        return exact[0]
    found = [label for label, aliases in names.items() if any(normalise_text(a) in text for a in aliases if a)]
    return found[0] if len(found) == 1 else None


def accuracy_mode(cfg, samples: list[PromptSample]) -> str:
    """`rewards.accuracy` with auto decided over the data, once."""
    if cfg.accuracy != "auto":
        return cfg.accuracy
    references = [s.reference for s in samples if s.reference is not None]
    if references and all(parse_number(r) is not None for r in references):
        return "number"
    if cfg.labels or any(s.reference_field == "label" for s in samples):
        return "label"
    return "exact"


def make_accuracy(cfg, samples: list[PromptSample]) -> RewardFn:
    mode = accuracy_mode(cfg, samples)
    if mode == "number":
        def number(completions, batch):
            out = []
            for c, s in zip(completions, batch):
                value, target = answer_number(c.parsed.answer), parse_number(s.reference)
                out.append(float(value is not None and target is not None and math.isclose(
                    value, target, rel_tol=cfg.number_tolerance, abs_tol=1e-9)))
            return out
        return number
    if mode == "label":
        labels = cfg.labels or sorted({s.reference for s in samples if s.reference is not None})
        unknown = sorted({s.reference for s in samples if s.reference is not None} - set(labels))
        if unknown:
            raise R1TuneError(f"accuracy: reference label(s) {', '.join(map(repr, unknown[:5]))} are not in "
                              f"rewards.labels ({', '.join(labels)})")
        extra = sorted(set(cfg.aliases) - set(labels))
        if extra:
            raise R1TuneError(f"rewards.aliases names {', '.join(extra)}, not a label ({', '.join(labels)})")
        names = {label: [label, *cfg.aliases.get(label, [])] for label in labels}
        return lambda completions, batch: [float(named_label(c.parsed.answer, names) == s.reference)
                                           for c, s in zip(completions, batch)]

    def exact(completions, batch):
        return [float(bool(c.parsed.answer.strip()) and exact_match(c.parsed.answer, s.reference))
                for c, s in zip(completions, batch)]
    return exact


def make_json_schema(cfg) -> RewardFn:
    if cfg.json_schema is None:
        return lambda completions, batch: [float(json_valid(c.parsed.answer)) for c in completions]
    schema = cfg.json_schema
    if not isinstance(schema, dict):
        try:
            schema = json.loads(Path(schema).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise R1TuneError(f"rewards.json_schema '{cfg.json_schema}': {e}") from None
    return lambda completions, batch: [float(schema_valid(c.parsed.answer, schema)) for c in completions]


def field_f1(answer: str, reference: str) -> float:
    """F1 of the entities and relations the answer states against the reference's; both empty: 1."""
    pred_e, pred_r = parse_structure(answer)
    gold_e, gold_r = parse_structure(reference)
    tp, fp, fn = (a + b for a, b in zip(match_counts(pred_e, gold_e), match_counts(pred_r, gold_r)))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def field_f1_reward(completions: list[Completion], samples: list[PromptSample]) -> list[float]:
    return [field_f1(c.parsed.answer, s.reference) if c.parsed.answer.strip() else 0.0
            for c, s in zip(completions, samples)]


def language_reward(completions: list[Completion], samples: list[PromptSample]) -> list[float]:
    return [float(bool(c.parsed.answer.strip()) and
                  check_format(c.parsed, s.prompt_text, s.reference)["answer_language_consistent"])
            for c, s in zip(completions, samples)]


def make_length(max_completion_length: int, buffer: int | None) -> RewardFn:
    buffer = min(buffer or max(1, max_completion_length // 4), max_completion_length)
    free = max_completion_length - buffer

    def length(completions, batch):
        return [-1.0 if c.truncated else min(0.0, (free - c.n_tokens) / buffer) for c in completions]
    return length


def runs(spec: str) -> str:
    """'checks.py:f' → 'runs the file checks.py and calls f(answers, samples)', for the refusal message."""
    target, _, name = spec.rpartition(":")
    return f"{'runs the file' if target.endswith('.py') else 'imports'} {target} and calls {name}(answers, samples)"


def make_user_reward(spec: str) -> RewardFn:
    function = load_callable(spec)

    def call(completions: list[Completion], batch: list[PromptSample]) -> list[float | None]:
        answers = [c.parsed.answer for c in completions]
        records = [{**s.meta, "id": s.meta.get("id", s.source), "prompt": s.prompt_text, "reference": s.reference,
                    "completion": c.text, "reasoning": c.parsed.reasoning, "truncated": c.truncated}
                   for c, s in zip(completions, batch)]
        try:
            values = list(function(answers, records))
        except Exception as e:  # noqa: BLE001  (the user's function: one line naming it)
            lines = str(e).strip().splitlines()
            raise R1TuneError(f"reward {spec} raised {type(e).__name__}: {lines[0] if lines else ''}") from None
        if len(values) != len(answers):
            raise R1TuneError(f"reward {spec} returned {len(values)} values for {len(answers)} answers: return one "
                              "number (or None) per answer")
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                                      or not math.isfinite(v))]
        if bad:
            raise R1TuneError(f"reward {spec} returned {bad[0]!r}: rewards are finite numbers (or None: not scored)")
        return [None if v is None else float(v) for v in values]
    return call


NEEDS_REFERENCE = ("accuracy", "field_f1")


def build_rewards(cfg, grpo, samples: list[PromptSample], reference_field: str | None = None) -> list[Reward]:
    """The configured rewards, each checked against the data before anything is generated. `cfg` is a
    RewardsConfig, `grpo` the GrpoSettings, `reference_field` the data's (for the message)."""
    names = [spec.rpartition(":")[2] for spec in cfg.use]
    unknown = sorted(set(cfg.weights) - set(names))
    if unknown:
        raise R1TuneError(f"rewards.weights names {', '.join(unknown)}, not a reward in use ({', '.join(names)})")
    user = [spec for spec in cfg.use if ":" in spec]
    if user and not cfg.allow_code:
        what = "; ".join(f"reward '{spec.rpartition(':')[2]}' {runs(spec)}" for spec in user)
        raise R1TuneError(f"rewards run Python code ({what}), with your permissions: pass --allow-code (or set "
                          "rewards.allow_code: true) if you trust it")
    lacking = [s for s in samples if s.reference is None]
    for name in (n for n in cfg.use if n in NEEDS_REFERENCE and lacking):
        fields = (f"field '{reference_field}'" if reference_field else
                  f"fields {', '.join(REFERENCE_FIELDS)}, then the record's answer")
        raise R1TuneError(f"reward '{name}' needs a reference to check answers against, and {len(lacking)} of "
                          f"{len(samples)} prompts have none (looked at: {fields}; first: {lacking[0].source}): "
                          "add it, point data.reference_field at the field that holds it, or drop the reward")
    built = []
    for spec, name in zip(cfg.use, names):
        if spec == "format":
            fn: RewardFn = format_reward
        elif spec == "accuracy":
            fn = make_accuracy(cfg, samples)
        elif spec == "json_schema":
            fn = make_json_schema(cfg)
        elif spec == "field_f1":
            fn = field_f1_reward
        elif spec == "language":
            fn = language_reward
        elif spec == "length":
            fn = make_length(grpo.max_completion_length, cfg.overlong_buffer)
        else:
            fn = make_user_reward(spec)
        built.append(Reward(name, fn, cfg.weights.get(name, 1.0)))
    return built


def score(rewards: list[Reward], completions: list[Completion], samples: list[PromptSample]) -> torch.Tensor:
    """(completions, rewards) float32, NaN where a reward returned None. `samples[i]` is completion i's prompt."""
    table = torch.full((len(completions), len(rewards)), float("nan"))
    for k, reward in enumerate(rewards):
        values = reward.fn(completions, samples)
        table[:, k] = torch.tensor([float("nan") if v is None else float(v) for v in values])
    return table


def weighted_total(table: torch.Tensor, rewards: list[Reward]) -> torch.Tensor:
    """Σ weight × reward per completion, unscored rewards left out; NaN when no reward scored it."""
    weights = torch.tensor([r.weight for r in rewards], dtype=table.dtype)
    total = (table * weights).nansum(dim=1)
    return torch.where(torch.isnan(table).all(dim=1), torch.full_like(total, float("nan")), total)
