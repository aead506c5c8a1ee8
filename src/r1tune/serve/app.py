"""The OpenAI-compatible HTTP API of `r1tune serve`: `/v1/chat/completions` (streamed or not) and `/v1/models`.

    r1tune serve runs/quickstart/tuned                  # http://127.0.0.1:8000/v1
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="…")
    r = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "…"}])
    r.choices[0].message.reasoning_content, r.choices[0].message.content

As DeepSeek's own API does, the reasoning comes back separately: `message.reasoning_content` (streamed:
`delta.reasoning_content`) and the answer in `content`. Sampling defaults to DeepSeek's advice for R1
(temperature 0.6, top-p 0.95). Every error is a JSON body `{"error": {"message", "type", "code", "param"}}`:

    401  missing or wrong API key (checked before anything else, on every route, in constant time)
    413  body larger than limits.max_body_bytes (Content-Length, or counted while a chunked body arrives)
    400  bad JSON or schema, prompt too long, max_tokens / n / messages over their caps, unsupported options
    404  unknown model or route
    429  more than limits.max_concurrent requests running or queued
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from r1tune.config import ServeConfig
from r1tune.model.reasoning import ReasoningStream, split_reasoning
from r1tune.serve.engine import Engine, Event, Finished, Sampling, TextDelta

# ---------------------------------------------------------------- request schema


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. an earlier turn's reasoning_content: the template drops it
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields such as `user`; they change nothing here
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # accepted only at their neutral values: anything else would be silently ignored otherwise
    stop: str | list[str] | None = None
    tools: list[Any] | None = None
    logprobs: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: dict | None = None


UNSUPPORTED = {
    "stop": lambda v: bool(v), "tools": lambda v: bool(v), "logprobs": lambda v: bool(v),
    "presence_penalty": lambda v: bool(v), "frequency_penalty": lambda v: bool(v),
    "response_format": lambda v: bool(v) and v.get("type") != "text",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None, type_: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type_ or {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                              413: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


# ---------------------------------------------------------------- auth and body size, before any parsing


class Guard:
    """ASGI middleware: API key on every route, then the body-size cap (whole body read, then replayed)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key is not None and not self._authorised(headers):
            return await _send_error(send, APIError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                                    "invalid_api_key"))
        length = headers.get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            return await _send_error(send, APIError(400, "bad Content-Length", "invalid_request"))
        too_large = APIError(413, f"request body larger than {self.max_body_bytes} bytes", "body_too_large")
        if declared is not None and declared > self.max_body_bytes:
            return await _send_error(send, too_large)
        chunks, size = [], 0
        while True:  # counted as it arrives, so a chunked body without Content-Length is capped too
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _send_error(send, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then: wait for the client to disconnect, as the server would say

        return await self.app(scope, replay, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        token = given[7:].strip() if given[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        return hmac.compare_digest(token, self.api_key)


async def _send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if error.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- the app


def create_app(engine: Engine, cfg: ServeConfig):
    """The FastAPI app for `engine`, wrapped in the auth / body-size guard."""
    limits = cfg.limits
    app = FastAPI(title="r1tune", docs_url=None, redoc_url=None, openapi_url=None)
    state = {"in_flight": 0}
    created = int(time.time())

    def error_response(error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(APIError)
    async def on_api_error(_request, error: APIError):
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def on_http_error(_request, error: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(APIError(error.status_code, str(error.detail), code))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request, error: RequestValidationError):
        return error_response(APIError(400, str(error), "invalid_request"))

    @app.exception_handler(Exception)
    async def on_unexpected(_request, error: Exception):
        return error_response(APIError(500, f"internal error: {type(error).__name__}", "internal_error"))

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "r1tune"}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card(name) for name in engine.models]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str):
        if name not in engine.models:
            raise APIError(404, f"model {name!r} does not exist; served: {', '.join(engine.models)}",
                           "model_not_found", "model")
        return model_card(name)

    @app.get("/health")
    async def health():
        return {"status": "ok", "in_flight": state["in_flight"], **engine.stats}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        if state["in_flight"] >= limits.max_concurrent:
            return JSONResponse(APIError(429, f"too many requests at once (limit {limits.max_concurrent}); retry "
                                         "shortly", "too_many_requests").body(), status_code=429,
                                headers={"retry-after": "1"})
        state["in_flight"] += 1
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                state["in_flight"] -= 1

        try:
            req = parse_request(await request.body())
            prompt_ids, sampling = await asyncio.to_thread(prepare, req)
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()
            job = engine.submit(req.model, prompt_ids, sampling, req.n,
                                lambda i, event: loop.call_soon_threadsafe(events.put_nowait, (i, event)))
        except BaseException:
            release()
            raise
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not req.stream:
            try:
                return await complete(req, job, events, len(prompt_ids), completion_id)
            finally:
                job.cancelled.set()  # a client that went away stops its rows
                release()

        async def sse():
            try:
                async for chunk in stream(req, job, events, len(prompt_ids), completion_id):
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled.set()
                release()

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    def parse_request(body: bytes) -> ChatRequest:
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"the body is not valid JSON: {e}", "invalid_json") from None
        if not isinstance(raw, dict):
            raise APIError(400, "the body must be a JSON object", "invalid_request")
        try:
            req = ChatRequest.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise APIError(400, f"{where}: {first['msg']}", "invalid_request", where) from None
        for name, is_set in UNSUPPORTED.items():
            if is_set(getattr(req, name)):
                raise APIError(400, f"'{name}' is not supported by this server", "unsupported_parameter", name)
        if req.model not in engine.models:
            raise APIError(404, f"model {req.model!r} does not exist; served: {', '.join(engine.models)}",
                           "model_not_found", "model")
        if len(req.messages) > limits.max_messages:
            raise APIError(400, f"{len(req.messages)} messages; at most {limits.max_messages}", "too_many_messages",
                           "messages")
        if req.messages[-1].role != "user":
            raise APIError(400, "the last message must be the user's", "invalid_request", "messages")
        if req.n > limits.max_n:
            raise APIError(400, f"n={req.n}; at most {limits.max_n}", "n_too_large", "n")
        max_tokens = req.max_completion_tokens or req.max_tokens
        if max_tokens is not None and max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens={max_tokens}; at most {limits.max_tokens}", "max_tokens_too_large",
                           "max_tokens")
        return req

    def prepare(req: ChatRequest) -> tuple[list[int], Sampling]:
        """Tokenize (off the event loop) and check the prompt length."""
        messages = [{"role": m.role, "content": m.content if not isinstance(m.content, list)
                     else "".join(p.text for p in m.content)} for m in req.messages]
        prompt_ids = engine.encode(messages)
        if len(prompt_ids) > limits.max_prompt_tokens:
            raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; at most {limits.max_prompt_tokens}",
                           "context_length_exceeded", "messages")
        max_tokens = req.max_completion_tokens or req.max_tokens or limits.default_max_tokens
        room = engine.context_length - len(prompt_ids)
        if req.max_completion_tokens or req.max_tokens:
            if max_tokens > room:
                raise APIError(400, f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceed the "
                               f"model's context of {engine.context_length}", "context_length_exceeded", "max_tokens")
        else:
            max_tokens = min(max_tokens, room)
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=cfg.sampling.temperature if req.temperature is None else req.temperature,
            top_p=cfg.sampling.top_p if req.top_p is None else req.top_p,
            seed=req.seed)
        return prompt_ids, sampling

    return Guard(app, cfg.api_key, limits.max_body_bytes)


# ---------------------------------------------------------------- responses


def usage(prompt_tokens: int, finishes: list[Finished]) -> dict:
    completion = sum(f.completion_tokens for f in finishes)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "completion_tokens_details": {"reasoning_tokens": sum(f.reasoning_tokens for f in finishes)}}


def _check_finished(finish: Finished) -> None:
    if finish.reason == "error":
        raise APIError(500, f"generation failed: {finish.error}", "generation_failed")


async def complete(req: ChatRequest, job, events: asyncio.Queue, prompt_tokens: int, completion_id: str) -> dict:
    texts = [""] * req.n
    finishes: list[Finished | None] = [None] * req.n
    while any(f is None for f in finishes):
        index, event = await events.get()
        if isinstance(event, TextDelta):
            texts[index] += event.text
        else:
            finishes[index] = event
    choices = []
    for index, (text, finish) in enumerate(zip(texts, finishes)):
        _check_finished(finish)
        parsed = split_reasoning(text, started_in_think=True)
        choices.append({"index": index, "finish_reason": finish.reason, "logprobs": None,
                        "message": {"role": "assistant", "content": parsed.answer,
                                    "reasoning_content": parsed.reasoning}})
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": choices, "usage": usage(prompt_tokens, finishes)}


async def stream(req: ChatRequest, job, events: asyncio.Queue, prompt_tokens: int, completion_id: str):
    created = int(time.time())

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    splitters = [ReasoningStream() for _ in range(req.n)]
    finishes: list[Finished | None] = [None] * req.n
    for index in range(req.n):
        yield chunk(index, {"role": "assistant", "content": ""})
    while any(f is None for f in finishes):
        index, event = await events.get()
        event: Event
        if isinstance(event, TextDelta):
            reasoning, answer = splitters[index].feed(event.text)
        else:
            reasoning, answer = splitters[index].finish()
        if reasoning:
            yield chunk(index, {"reasoning_content": reasoning, "content": None})
        if answer:
            yield chunk(index, {"content": answer})
        if isinstance(event, Finished):
            finishes[index] = event
            if event.reason == "error":
                yield {"error": APIError(500, f"generation failed: {event.error}", "generation_failed").body()["error"]}
                return
            yield chunk(index, {}, event.reason)
    if req.stream_options and req.stream_options.include_usage:
        yield {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": req.model,
               "choices": [], "usage": usage(prompt_tokens, finishes)}
