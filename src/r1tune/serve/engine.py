"""The generation backend of `r1tune serve` and `r1tune chat`: one model, named LoRA adapters, one worker.

    engine = load_engine("runs/quickstart/tuned", ServeConfig())
    for kind, text in engine.stream_chat([{"role": "user", "content": "…"}]):   # kind: reasoning | answer
        ...

torch's `generate` on one model is not safe to run from several threads at once (the active adapter is
model-wide state, and on a CPU parallel calls only fight over the same cores), so every request is queued
to a single worker thread. The worker takes the oldest request and, when others for the same model are
waiting, runs them together as one left-padded batch (up to `limits.max_batch_size` rows): each row keeps
its own temperature, top-p, max_tokens and stop, and streams its own tokens. Finished rows stop streaming
while the batch finishes the others. Request handlers never run the model: they wait on the events the
worker sends them, so the server's event loop is never blocked.

Request threads tokenize prompts (`encode`) with the tokenizer; the worker detokenises with its own copy, so
a long prompt being tokenized never holds up the tokens of running streams (HF fast tokenizers must not be
called from two threads at once, hence one lock for the request side and a separate object for the worker).

Model names: the run itself (its folder name, or `served_name`), the base model it was tuned from (`base`,
for an adapter run), and each extra adapter (`adapters: {name: path}`), all on one copy of the base weights.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from r1tune.config import ServeConfig
from r1tune.errors import R1TuneError
from r1tune.model.reasoning import ReasoningStream
from r1tune.model.runs import load_for_inference, resolve_run
from r1tune.model.template import THINK_CLOSE, resolve_template, template_hash, template_name
from r1tune.model.vision import (
    IMAGE_PAD,
    conversation_images,
    encode_image_prompt,
    is_vision_model,
    load_image_processor,
)
from r1tune.serve.prompt import encode_chat
from r1tune.train.vision_data import mm_token_types

# torchao (pulled in by peft/transformers when installed) warns on every import about CUDA-only kernels that a
# CPU torch cannot load; nothing here needs them
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

log = logging.getLogger("r1tune.serve")


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.6  # 0 = greedy
    top_p: float = 0.95
    seed: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # stop | length | cancelled | error
    completion_tokens: int
    reasoning_tokens: int
    error: str | None = None


Event = TextDelta | Finished


@dataclass
class Row:
    """One choice being generated: its prompt, sampling, and where its events go."""

    index: int
    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[int, Event], None]  # called from the worker thread
    ids: list[int] = field(default_factory=list)
    done: bool = False
    # incremental detokenisation (as vLLM does): decode a short window, emit what is new and complete
    prefix_offset: int = 0
    read_offset: int = 0


@dataclass
class Job:
    model: str
    rows: list[Row]
    seed: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    images: dict = field(default_factory=dict)  # issue 19: pixel_values + image_grid_thw of the prompt



def chat_pieces(splitter: ReasoningStream, event: Event) -> list[tuple[str, str]]:
    """What one generation event adds to a chat stream: ("reasoning" | "answer", text) pieces, then ("finish",
    reason) when it ends (`stream_chat`, and the board's async chat)."""
    reasoning, answer = splitter.feed(event.text) if isinstance(event, TextDelta) else splitter.finish()
    pieces = [(kind, text) for kind, text in (("reasoning", reasoning), ("answer", answer)) if text]
    if isinstance(event, Finished):
        if event.reason == "error":
            raise R1TuneError(f"generation failed: {event.error}")
        pieces.append(("finish", event.reason))
    return pieces

class Engine:
    """A loaded model with its tokenizer, served template and adapters, and the worker that runs it."""

    def __init__(self, model, tokenizer, template: str, models: dict[str, str | None], max_batch_size: int = 8,
                 context_length: int | None = None, image_processor=None):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.image_processor = image_processor  # issue 19: set for a vision model, which accepts images
        self.models = models  # served name → PEFT adapter name (None: the base weights)
        self.default_model = next(iter(models))
        self.max_batch_size = max_batch_size
        self.context_length = context_length or getattr(model.config, "max_position_embeddings", None) or 16384
        self.eos_id = tokenizer.eos_token_id
        self.think_close_ids = tokenizer(THINK_CLOSE, add_special_tokens=False)["input_ids"]
        self.stats = {"batches": 0, "rows": 0, "largest_batch": 0, "generated_tokens": 0, "cancelled_rows": 0}
        self._encode_lock = threading.Lock()  # request threads, one at a time, on self.tokenizer
        self._decoder = copy.deepcopy(tokenizer)  # the worker's own: never waits on a request's tokenizing
        self._queue: collections.deque[Job] = collections.deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="r1tune-generate", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- requests

    def encode(self, messages: list[dict]) -> list[int]:
        """Prompt ids; markers inside message contents stay plain text (see serve/prompt.py)."""
        with self._encode_lock:
            return encode_chat(self.tokenizer, messages, self.template)

    def encode_prompt(self, messages: list[dict]) -> tuple[list[int], dict]:
        """Prompt ids and, for messages that carry images, their pixel patches (issue 19)."""
        if self.image_processor is None or not conversation_images(messages):
            return self.encode(messages), {}
        with self._encode_lock:
            return encode_image_prompt(self.tokenizer, self.image_processor, messages, self.template)

    def submit(self, model: str, prompt_ids: list[int], sampling: Sampling, n: int,
               emit: Callable[[int, Event], None], images: dict | None = None) -> Job:
        """Queue `n` choices of one prompt; `emit(index, event)` is called from the worker thread."""
        if model not in self.models:
            raise R1TuneError(f"unknown model {model!r}; served: {', '.join(self.models)}")
        job = Job(model, [Row(i, prompt_ids, sampling, emit) for i in range(n)], sampling.seed, images=images or {})
        with self._wakeup:
            if self._closed:
                raise R1TuneError("the engine is shut down")
            self._queue.append(job)
            self._wakeup.notify()
        return job

    def stream_chat(self, messages: list[dict], sampling: Sampling | None = None,
                    model: str | None = None) -> Iterator[tuple[str, str]]:
        """("reasoning" | "answer", text) pieces as they are generated, then ("finish", reason)."""
        import queue

        events: queue.Queue = queue.Queue()
        sampling = sampling or Sampling(max_tokens=1024)
        job = self.submit(model or self.default_model, self.encode(messages), sampling, 1,
                          lambda _i, event: events.put(event))
        splitter = ReasoningStream()
        try:
            while True:
                event = events.get()
                yield from chat_pieces(splitter, event)
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()

    def close(self) -> None:
        """Stop the worker; queued requests end as cancelled (so nobody waits on them forever)."""
        with self._wakeup:
            self._closed = True
            queued, self._queue = list(self._queue), collections.deque()
            self._wakeup.notify_all()
        for job in queued:
            job.cancelled.set()
            self._finish_all(job, "cancelled")
        self._worker.join(timeout=30)

    # ---------------------------------------------------------------- the worker

    def _next_batch(self) -> list[Job] | None:
        """The oldest job, plus waiting jobs for the same model while the batch has room."""
        with self._wakeup:
            while not self._queue and not self._closed:
                self._wakeup.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch, rows = [first], len(first.rows)
            # a seeded request runs alone, so its samples are reproducible; one with images too (issue 19)
            if first.seed is None and not first.images:
                for job in list(self._queue):
                    if rows + len(job.rows) > self.max_batch_size:
                        break
                    if job.model == first.model and job.seed is None and not job.images:
                        self._queue.remove(job)
                        batch.append(job)
                        rows += len(job.rows)
            return batch

    def _work(self) -> None:
        torch.set_grad_enabled(False)  # grad mode is per thread
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [job for job in batch if not job.cancelled.is_set()]
            for job in batch:
                if job.cancelled.is_set():
                    self._finish_all(job, "cancelled")
            if not live:
                continue
            try:
                self._generate(live)
            except Exception as e:  # one bad batch must not kill the server
                log.exception("generation failed")
                for job in live:
                    self._finish_all(job, "error", f"{type(e).__name__}: {e}")

    def _finish_all(self, job: Job, reason: str, error: str | None = None) -> None:
        for row in job.rows:
            if not row.done:
                row.done = True
                self.stats["cancelled_rows"] += reason == "cancelled"
                _send(row, Finished(reason, len(row.ids), 0, error))

    def _generate(self, jobs: list[Job]) -> None:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        rows = [row for job in jobs for row in job.rows]
        cancelled = [job.cancelled for job in jobs for _ in job.rows]
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.eos_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's last prompt token is its own
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(rows))
        if jobs[0].seed is not None:
            torch.manual_seed(jobs[0].seed)
        device = next(self.model.parameters()).device
        # sampling is done per row by RowSampling; generate's own sampler only draws from what it returns
        config = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                  max_new_tokens=max(r.sampling.max_tokens for r in rows),
                                  eos_token_id=self.eos_id, pad_token_id=self.eos_id, use_cache=True)
        streamer = RowStreamer(self, rows, cancelled)
        # issue 19: a job with images runs alone; each of its n rows sees the same pictures
        images = {k: torch.cat([v] * len(rows)).to(device) for k, v in jobs[0].images.items()}
        if images:  # the image positions, from which Qwen-VL computes its 3-D rotary positions
            image_id = self._decoder.convert_tokens_to_ids(IMAGE_PAD)  # the worker's own tokenizer
            images["mm_token_type_ids"] = mm_token_types(ids, image_id).to(device)
        with self._adapter(jobs[0].model):
            self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                                **images,
                                logits_processor=LogitsProcessorList([RowSampling(rows)]),
                                stopping_criteria=StoppingCriteriaList([RowsDone(rows)]), streamer=streamer)
        streamer.end()

    def _adapter(self, model: str):
        """Make `model`'s adapter the active one (the worker is the only thread that runs the model)."""
        from contextlib import nullcontext

        adapter = self.models[model]
        if not hasattr(self.model, "peft_config"):
            return nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return nullcontext()

    def on_token(self, row: Row, token: int, cancelled: bool) -> None:
        """One new token for `row` (worker thread): detokenise the new text and send it on."""
        if row.done:
            return
        if cancelled:
            row.done = True
            self.stats["cancelled_rows"] += 1
            _send(row, Finished("cancelled", len(row.ids), self._reasoning_tokens(row.ids)))
            return
        if token == self.eos_id:
            self._finish(row, "stop")
            return
        row.ids.append(token)
        self.stats["generated_tokens"] += 1
        text = self._decode_new(row)
        if text:
            _send(row, TextDelta(text))
        if len(row.ids) >= row.sampling.max_tokens:
            self._finish(row, "length")

    def _finish(self, row: Row, reason: str) -> None:
        rest = self._decode_new(row, final=True)
        if rest:
            _send(row, TextDelta(rest))
        row.done = True
        _send(row, Finished(reason, len(row.ids) + (reason == "stop"), self._reasoning_tokens(row.ids)))

    def _decode_new(self, row: Row, final: bool = False) -> str:
        prefix = self._decoder.decode(row.ids[row.prefix_offset:row.read_offset], skip_special_tokens=True)
        text = self._decoder.decode(row.ids[row.prefix_offset:], skip_special_tokens=True)
        if len(text) > len(prefix) and (final or not text.endswith("\ufffd")):  # \ufffd: an incomplete UTF-8 char
            row.prefix_offset, row.read_offset = row.read_offset, len(row.ids)
            return text[len(prefix):]
        return ""

    def _reasoning_tokens(self, ids: list[int]) -> int:
        """Tokens before the first `</think>` (all of them when the reasoning never closed)."""
        n = len(self.think_close_ids)
        for i in range(len(ids) - n + 1):
            if ids[i:i + n] == self.think_close_ids:
                return i
        return len(ids)


def _send(row: Row, event: Event) -> None:
    """Hand an event to the request (worker thread); a receiver that is gone must not stop the worker."""
    try:
        row.emit(row.index, event)
    except Exception:  # e.g. the request's event loop has shut down
        log.warning("dropped an event for a request that is gone", exc_info=True)
        row.done = True


class RowStreamer:
    """transformers streamer that hands each row's new token to the engine (generate calls put() per step)."""

    def __init__(self, engine: Engine, rows: list[Row], cancelled: list[threading.Event]):
        self.engine, self.rows, self.cancelled = engine, rows, cancelled
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompts
            self._prompt_seen = True
            return
        for row, token, cancelled in zip(self.rows, value.view(-1).tolist(), self.cancelled):
            self.engine.on_token(row, token, cancelled.is_set())

    def end(self) -> None:
        for row in self.rows:  # a batch that stopped early (every row done) leaves nothing open
            if not row.done:
                self.engine._finish(row, "length")


class RowSampling:
    """Per-row temperature and top-p (a batch mixes requests); temperature 0 makes a row greedy."""

    def __init__(self, rows: list[Row]):
        self.temperature = torch.tensor([max(r.sampling.temperature, 1e-5) for r in rows]).unsqueeze(1)
        self.top_p = torch.tensor([r.sampling.top_p for r in rows]).unsqueeze(1)
        self.greedy = torch.tensor([r.sampling.temperature == 0 for r in rows])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature.to(scores.device)
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # drop a token once the tokens before it already cover top_p (the most likely one always stays)
        drop_sorted = (cumulative - sorted_scores.softmax(dim=-1)) >= self.top_p.to(scores.device)
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
        greedy = self.greedy.to(scores.device)
        if greedy.any():
            best = scores.argmax(dim=-1, keepdim=True)
            only_best = torch.full_like(scores, float("-inf")).scatter(1, best, 0.0)
            scores = torch.where(greedy.unsqueeze(1), only_best, scores)
        return scores


class RowsDone:
    """Stopping criterion per row: the engine marks a row done at eos, max_tokens or cancellation."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor([r.done for r in self.rows], device=input_ids.device)


# ---------------------------------------------------------------- loading


def check_template(provenance: dict, served: str, what: str, allow_mismatch: bool) -> str | None:
    """An error message when `what` was trained with another template than the one served (None: fine)."""
    trained = provenance.get("template_hash")
    if not trained or trained == template_hash(served):
        return None
    message = (f"{what} was fine-tuned with chat template {provenance.get('template', '?')} (hash {trained}) but "
               f"would be served with {template_name(served)} (hash {template_hash(served)}): its answers would "
               f"start wrongly")
    if allow_mismatch:
        log.warning("%s; serving anyway (--allow-template-mismatch)", message)
        return None
    return message + ". Serve with the training template (--template r1 | r1-2025-01) or pass --allow-template-mismatch"


def load_engine(run: str | Path, cfg: ServeConfig) -> Engine:
    """Load RUN (a finetune run, a merged or int8 export, or a model folder) and its adapters for serving."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    served = resolve_run(run)
    model, tokenizer = load_for_inference(served, dtype=cfg.dtype)
    template = resolve_template(tokenizer, cfg.template)
    run_name = cfg.served_name or _default_name(Path(run))
    problem = check_template(served.provenance, template, f"run {run}", cfg.allow_template_mismatch)
    if problem:
        raise R1TuneError(problem)
    is_adapter_run = hasattr(model, "peft_config")
    models: dict[str, str | None] = {run_name: "default" if is_adapter_run else None}
    if is_adapter_run:
        models[cfg.base_name] = None
    for i, (name, path) in enumerate(cfg.adapters.items()):
        if name in models:
            raise R1TuneError(f"adapter name {name!r} is already taken (served: {', '.join(models)})")
        adapter = resolve_run(path)
        adapter_folder = adapter.folder
        if adapter.kind != "adapter":
            raise R1TuneError(f"adapter {name!r}: {adapter_folder} holds no PEFT adapter (adapter_config.json)")
        problem = check_template(adapter.provenance, template, f"adapter {name!r}",
                                 cfg.allow_template_mismatch)
        if problem:
            raise R1TuneError(problem)
        internal = f"adapter_{i}"
        if hasattr(model, "peft_config"):
            model.load_adapter(str(adapter_folder), adapter_name=internal)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_folder), adapter_name=internal)
        models[name] = internal
    model.eval()
    image_processor = load_image_processor(tokenizer.name_or_path) if is_vision_model(model) else None
    return Engine(model, tokenizer, template, models, max_batch_size=cfg.limits.max_batch_size,
                  image_processor=image_processor)


def _default_name(run: Path) -> str:
    """The run's folder name (runs/quickstart/tuned → tuned; RUN/final → RUN's name)."""
    run = run.resolve()
    return run.parent.name if run.name == "final" else run.name

