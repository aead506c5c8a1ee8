"""The OpenAI-compatible HTTP API of `r1tune serve`: `/v1/chat/completions` (streamed or not) and `/v1/models`.

    r1tune serve runs/quickstart/tuned                  # http://127.0.0.1:8000/v1
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="…")
    r = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "…"}])
    r.choices[0].message.reasoning_content, r.choices[0].message.content

As DeepSeek's own API does, the reasoning comes back separately: `message.reasoning_content` (streamed:
`delta.reasoning_content`) and the answer in `content`. Sampling defaults to DeepSeek's advice for R1
(temperature 0.6, top-p 0.95).

Whatever a client sends ends in a 4xx, never a 500, and a kept-alive connection stays usable after a 400.
Every error is a JSON body `{"error": {"message", "type", "param", "code"}}`, type `invalid_request_error`
for a 4xx (as OpenAI answers) and `server_error` for a 5xx. The guard (middleware, every route) answers:

    400  Host not a loopback name (localhost, 127.x.x.x, [::1]) when no API key is set: DNS rebinding
    401  missing or wrong API key (checked in constant time)
    415  a POST whose Content-Type is not application/json (a browser's cross-site "simple" request)
    413  body larger than limits.max_body_bytes (Content-Length, or counted while a chunked body arrives)
    408  body not arrived in full within limits.body_timeout_s (then the connection is closed)

then the request parser (`parse_json_body`, `ChatRequest` in strict mode):

    400  not UTF-8 JSON, NaN / Infinity / out-of-range numbers, a lone UTF-16 surrogate, nesting deeper than
         limits.max_json_depth; wrong types (`n: "2"`, `stream: "yes"`, `max_tokens: true`), seed outside
         64 bits, temperature / top_p out of range; prompt over limits.max_prompt_chars (counted before
         tokenizing) or max_prompt_tokens; max_tokens / n / messages over their caps; unsupported options
    404  unknown model or route;  405  wrong method
    429  more than limits.max_concurrent requests running or queued

A non-streamed request whose client hangs up stops its generation, as a streamed one does.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from r1tune.config import ServeConfig, ServeLimits
from r1tune.model.reasoning import ReasoningStream, split_reasoning
from r1tune.serve.engine import Engine, Event, Finished, Sampling, TextDelta
from r1tune.serve.hosts import is_loopback_host
from r1tune.serve.images import ImageRequestError, request_messages
from r1tune.serve.prompt import prompt_chars

# ---------------------------------------------------------------- request schema

# strict: a JSON string is not a number nor a boolean (`n: "2"`, `stream: "yes"` are 400, as OpenAI answers);
# extra fields are ignored: clients send fields such as `user` that change nothing here
STRICT = ConfigDict(extra="ignore", strict=True)
SEED_RANGE = (-2**63, 2**64 - 1)  # what torch.manual_seed accepts


class TextPart(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = STRICT
    url: str
    detail: str | None = None


class ImagePart(BaseModel):  # issue 19: vision models (serve/images.py)
    model_config = STRICT
    type: Literal["image_url"]
    image_url: ImageURL


class Message(BaseModel):
    model_config = STRICT  # e.g. an earlier turn's reasoning_content is ignored: the template drops it
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart | ImagePart] | None = None


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = STRICT
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
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
    """An error answer: status, OpenAI-shaped body, and the headers it needs (Allow, Retry-After …)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}
        self.type = "invalid_request_error" if status < 500 else "server_error"

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


CLOSE = {"connection": "close"}  # the rest of the body is not worth reading: drop the connection

# ---------------------------------------------------------------- the request body as JSON

LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads turns "\ud800" into a str no encoder accepts
MAX_INT_DIGITS = 100  # far past any count or seed; Python would parse up to 4300 digits, slowly


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:30]}")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a {len(text)}-digit integer")
    return int(text)


def parse_json_body(body: bytes, max_depth: int) -> Any:
    """The body as JSON, strictly: UTF-8, no NaN / Infinity / out-of-range number, no lone UTF-16 surrogate
    (`"\\ud800"`), arrays / objects nested at most `max_depth` deep. APIError 400 otherwise."""
    too_deep = f"the JSON is nested deeper than {max_depth} levels"
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float,
                           parse_int=_bounded_int)
    except RecursionError:
        raise APIError(400, too_deep, "invalid_json") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError and the hooks above
        raise APIError(400, f"the body is not valid JSON: {e}", "invalid_json") from None
    check_surrogates = b"\\u" in body  # raw UTF-8 cannot encode a surrogate: only an escape makes one
    stack = [(value, 1, ())]
    while stack:  # iterative: a deep body must not recurse here either
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            if check_surrogates and isinstance(item, str) and LONE_SURROGATE.search(item):
                raise APIError(400, f"{_dotted(path) or 'the body'}: a lone UTF-16 surrogate (e.g. \\ud800) is "
                               "not text", "invalid_json", _dotted(path) or None)
            continue
        if depth > max_depth:
            raise APIError(400, too_deep, "invalid_json", _dotted(path) or None)
        for key, child in children:
            if check_surrogates and isinstance(key, str) and LONE_SURROGATE.search(key):
                raise APIError(400, f"{_dotted(path) or 'the body'}: a key holds a lone UTF-16 surrogate",
                               "invalid_json", _dotted(path) or None)
            stack.append((child, depth + 1, (*path, key)))
    return value


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


# ---------------------------------------------------------------- host, auth, content type, body: before parsing


class ClientGone(Exception):
    """The client disconnected: there is nobody to answer."""


def is_json_content_type(value: bytes) -> bool:
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


class Guard:
    """ASGI middleware, on every route: without an API key a loopback Host only, else the key; a POST must be
    JSON; then the body-size cap and deadline (the whole body is read here, then replayed to the app)."""

    def __init__(self, app, api_key: str | None, limits: ServeLimits):
        self.app, self.limits = app, limits
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            self._check_headers(scope, headers)
            body = await self._read_body(receive)
        except APIError as error:
            return await _send_error(send, error, body_unread=_has_body(headers))
        except ClientGone:
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then: wait for the client to disconnect, as the server would say

        return await self.app(scope, replay, send)

    def _check_headers(self, scope, headers: dict[bytes, bytes]) -> None:
        if self.api_key is None and not is_loopback_host(headers.get(b"host", b"")):
            # without a key only this machine may call: a web page whose name resolves to 127.0.0.1 sends
            # its own name as Host (DNS rebinding) and must not reach the model
            raise APIError(400, "without an API key this server answers only Host: localhost, 127.0.0.1 or [::1]",
                           "invalid_host")
        if self.api_key is not None and not self._authorised(headers):
            raise APIError(401, "missing or wrong API key (Authorization: Bearer KEY)", "invalid_api_key",
                           headers={"www-authenticate": "Bearer"})
        if scope["method"] == "POST" and not is_json_content_type(headers.get(b"content-type", b"")):
            raise APIError(415, "the body must be JSON, sent with Content-Type: application/json",
                           "unsupported_media_type")
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            raise APIError(400, "bad Content-Length", "invalid_request")
        if length is not None and int(length) > self.limits.max_body_bytes:
            raise APIError(413, f"request body larger than {self.limits.max_body_bytes} bytes", "body_too_large",
                           headers=CLOSE)

    async def _read_body(self, receive) -> bytes:
        """The whole body, counted as it arrives (a chunked body has no Content-Length), within the deadline."""
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise APIError(413, f"request body larger than {self.limits.max_body_bytes} bytes",
                                       "body_too_large", headers=CLOSE)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise APIError(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s",
                           "body_timeout", headers=CLOSE) from None

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        token = given[7:].strip() if given[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        return hmac.compare_digest(token, self.api_key)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


async def _send_error(send, error: APIError, body_unread: bool) -> None:
    """An error answered before the app runs; a body left unread is not drained: the connection closes."""
    response = JSONResponse(error.body(), status_code=error.status,
                            headers={**error.headers, **(CLOSE if body_unread else {})})
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def _until_disconnected(receive) -> None:
    """Returns when the client hangs up (the body was read already: the next message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work) -> Any:
    """Await the coroutine `work`; if the client disconnects first, cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        gone.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    raise ClientGone


# ---------------------------------------------------------------- the app


def create_app(engine: Engine, cfg: ServeConfig):
    """The FastAPI app for `engine`, wrapped in the host / auth / content-type / body guard."""
    limits = cfg.limits
    max_prompt_chars = limits.prompt_chars_cap(engine.context_length)
    app = FastAPI(title="r1tune", docs_url=None, redoc_url=None, openapi_url=None)
    state = {"in_flight": 0}
    created = int(time.time())

    @app.exception_handler(APIError)
    async def on_api_error(_request, error: APIError):
        return error.response()

    @app.exception_handler(HTTPException)
    async def on_http_error(_request, error: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return APIError(error.status_code, str(error.detail), code, headers=error.headers).response()

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request, error: RequestValidationError):
        return APIError(400, str(error), "invalid_request").response()

    @app.exception_handler(Exception)
    async def on_unexpected(_request, error: Exception):
        return APIError(500, f"internal error: {type(error).__name__}", "internal_error").response()

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
            raise APIError(429, f"too many requests at once (limit {limits.max_concurrent}); retry shortly",
                           "too_many_requests", headers={"retry-after": "1"})
        state["in_flight"] += 1
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                state["in_flight"] -= 1

        try:
            req, messages = parse_request(await request.body())
            # tokenized here, on a request thread: the worker never waits on it
            prompt_ids, sampling, images = await asyncio.to_thread(prepare, req, messages)
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()
            job = engine.submit(req.model, prompt_ids, sampling, req.n,
                                lambda i, event: loop.call_soon_threadsafe(events.put_nowait, (i, event)), images)
        except BaseException:
            release()
            raise
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not req.stream:
            try:
                return await unless_client_leaves(request, complete(req, job, events, len(prompt_ids),
                                                                    completion_id))
            except ClientGone:  # nobody to answer; the status is only for the record
                return APIError(499, "the client closed the connection", "client_closed_request").response()
            finally:
                job.cancelled.set()  # a client that went away stops its rows at their next token
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

    def parse_request(body: bytes) -> tuple[ChatRequest, list[dict]]:
        """The checked request and its messages as plain text; everything here is cheap (no tokenizing)."""
        raw = parse_json_body(body, limits.max_json_depth)
        if not isinstance(raw, dict):
            raise APIError(400, "the body must be a JSON object", "invalid_request")
        try:
            req = ChatRequest.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = _dotted(first["loc"])
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
        try:  # issue 19: image parts decoded and checked here; text-only requests as before
            messages = request_messages([m.model_dump() for m in req.messages], engine.image_processor is not None,
                                        limits)
        except ImageRequestError as e:
            raise APIError(400, e.message, e.code, e.param) from None
        chars = prompt_chars(messages)
        if chars > max_prompt_chars:  # before tokenizing: a huge prompt costs the tokenizer seconds
            raise APIError(400, f"the prompt is {chars} characters; at most {max_prompt_chars} "
                           "(limits.max_prompt_chars)", "context_length_exceeded", "messages")
        return req, messages

    def prepare(req: ChatRequest, messages: list[dict]) -> tuple[list[int], Sampling, dict]:
        """Tokenize (a request thread, off the event loop) and check the prompt length."""
        prompt_ids, images = engine.encode_prompt(messages)
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
        return prompt_ids, sampling, images

    return Guard(app, cfg.api_key, limits)


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
