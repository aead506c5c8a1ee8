"""Fine-tuning runs: model, data, method, train, continual; and GRPO runs (issue 14)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
)

from r1tune.config.base import COLUMNS_HELP, ENCODING_HELP, ColumnMap, Encoding, Section


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
