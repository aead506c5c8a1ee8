"""`r1tune serve`, `r1tune board` and the exports (merge, INT8, GGUF)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from r1tune.config.base import Section

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
