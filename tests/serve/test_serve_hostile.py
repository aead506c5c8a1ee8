"""Hostile clients over real HTTP (the conftest server on 127.0.0.1): whatever a client sends ends in an
OpenAI-shaped 4xx (type invalid_request_error), never a 500, and the kept-alive connection answers the next
request; a non-streamed client that hangs up stops its generation; an oversize prompt is refused before
tokenizing and tokenizing never holds up the worker; a body that stops arriving times out; without a key
only loopback Host names and JSON POSTs are answered; a key with surrounding whitespace is stripped."""

import json
import socket
import threading

import httpx
import pytest

from r1tune.config import ServeConfig
from r1tune.recipes.serve import resolve_api_key
from r1tune.serve.engine import Finished, Sampling

CHAT = {"model": "tuned", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "temperature": 0}
JSON = {"content-type": "application/json"}
HEAD = '{"model": "tuned", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]'  # + "}" or ", …}"


def error_of(response, status):
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error", error
    return error


def wait_until(condition, tries=1000):
    for _ in range(tries):
        if condition():
            return
        threading.Event().wait(0.02)
    raise AssertionError("condition never became true")


def local_port(response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


# ---------------------------------------------------------------- the request parser: 400, connection kept


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_BODIES = [
    # JSON itself
    (HEAD + ', "x": ' + nested(100_000) + "}", "invalid_json"),  # deeper than json.loads can recurse
    (HEAD + ', "x": ' + nested(64) + "}", "invalid_json"),  # 65 levels: one past limits.max_json_depth
    ('{"model": "tuned", "max_tokens": 4, "messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_json"),
    ('{"model": "tuned", "max_tokens": 4, "messages": [{"role": "user", "content": "ok \\udc00"}]}', "invalid_json"),
    (HEAD + ', "\\ud83d": 1}', "invalid_json"),  # a lone surrogate in an ignored key
    ('{"model": "\\udfff", "messages": [{"role": "user", "content": "x"}]}', "invalid_json"),
    (HEAD + ', "temperature": NaN}', "invalid_json"),
    (HEAD + ', "temperature": Infinity}', "invalid_json"),
    (HEAD + ', "top_p": -Infinity}', "invalid_json"),
    (HEAD + ', "temperature": 1e999}', "invalid_json"),  # json.loads makes it inf
    (HEAD + ', "seed": ' + "9" * 5000 + "}", "invalid_json"),  # Python refuses > 4300 digits with a ValueError
    (b"\xff\xfe{}", "invalid_json"),
    ("\ufeff" + HEAD + "}", "invalid_json"),  # a UTF-8 byte-order mark
    ((HEAD + "}").encode("utf-16"), "invalid_json"),
    ("", "invalid_json"),
    ('"just a string"', "invalid_request"),
    ("null", "invalid_request"),
    # types, strictly (OpenAI answers 400 for each)
    (HEAD + ', "n": "2"}', "invalid_request"),
    (HEAD + ', "stream": "yes"}', "invalid_request"),
    (HEAD.replace('"max_tokens": 4', '"max_tokens": true') + "}", "invalid_request"),
    (HEAD.replace('"max_tokens": 4', '"max_tokens": 4.0') + "}", "invalid_request"),
    (HEAD + ', "temperature": "0.5"}', "invalid_request"),
    (HEAD + ', "top_p": true}', "invalid_request"),
    (HEAD + ', "seed": "1"}', "invalid_request"),
    (HEAD + ', "seed": 1.5}', "invalid_request"),
    (HEAD + ', "stream_options": {"include_usage": "yes"}}', "invalid_request"),
    ('{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "invalid_request"),
    ('{"model": "tuned", "messages": "hello"}', "invalid_request"),
    ('{"model": "tuned", "messages": ["hello"]}', "invalid_request"),
    ('{"model": "tuned", "messages": [{"role": "user", "content": 5}]}', "invalid_request"),
    # ranges
    (HEAD + f', "seed": {2**64}}}', "invalid_request"),  # beyond 64 bits: torch.manual_seed would fail
    (HEAD + f', "seed": {-2**63 - 1}}}', "invalid_request"),
    (HEAD + f', "seed": {10**30}}}', "invalid_request"),
    (HEAD + ', "temperature": -0.1}', "invalid_request"),
    (HEAD + ', "top_p": 1.5}', "invalid_request"),
]


@pytest.fixture(scope="module")
def kept_alive(server_url):
    with httpx.Client(base_url=server_url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("body, code", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies_are_400_and_the_connection_keeps_working(kept_alive, body, code):
    content = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    bad = kept_alive.post("/v1/chat/completions", content=content, headers=JSON)
    assert error_of(bad, 400)["code"] == code
    good = kept_alive.post("/v1/chat/completions", json=CHAT)
    assert good.status_code == 200, good.text
    assert local_port(good) == local_port(bad)  # the same connection: not reset after the error


@pytest.mark.parametrize("body", [
    HEAD + f', "seed": {2**64 - 1}}}', HEAD + f', "seed": {-2**63}}}', HEAD + ', "temperature": 1}',
    HEAD + ', "x": ' + nested(63) + "}",  # 64 levels with the body's own object
    HEAD.replace('"hello"', '"ok \\ud83d\\ude00 😀"') + "}",  # an escaped surrogate pair is one character
], ids=["seed-max", "seed-min", "int-temperature", "nested-64", "surrogate-pair"])
def test_edge_values_that_are_valid_are_served(kept_alive, body):
    r = kept_alive.post("/v1/chat/completions", content=body.encode(), headers=JSON)
    assert r.status_code == 200, r.text


def test_a_bad_request_error_names_the_field(kept_alive):
    error = error_of(kept_alive.post("/v1/chat/completions", content=HEAD + ', "n": "2"}', headers=JSON), 400)
    assert error["param"] == "n" and "integer" in error["message"]
    error = error_of(kept_alive.post("/v1/chat/completions", content=HEAD + ', "x": {"y": "\\ud800"}}',
                                     headers=JSON), 400)
    assert error["param"] == "x.y" and "surrogate" in error["message"]


def test_every_4xx_is_openai_shaped(server_url, start_server):
    with httpx.Client(base_url=server_url, timeout=60) as client:
        r = client.get("/v1/chat/completions")
        assert error_of(r, 405)["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
        assert error_of(client.get("/no/such/route"), 404)["code"] == "not_found"
        assert error_of(client.get("/v1/models/gpt-4"), 404)["code"] == "model_not_found"
        assert error_of(client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"}), 404)["param"] == "model"
        assert error_of(client.post("/v1/chat/completions", content=b"{}"), 415)["code"] == "unsupported_media_type"
        assert error_of(client.get("/v1/models", headers={"host": "evil.example"}), 400)["code"] == "invalid_host"
        assert client.get("/v1/models").status_code == 200
    with start_server(ServeConfig(api_key="k", limits={"max_body_bytes": 100})) as url:
        assert error_of(httpx.get(url + "/v1/models"), 401)["code"] == "invalid_api_key"
        big = httpx.post(url + "/v1/chat/completions", json={**CHAT, "pad": "x" * 200}, headers={"x-api-key": "k"})
        assert error_of(big, 413)["code"] == "body_too_large"


# ---------------------------------------------------------------- a non-streamed client that leaves


def raw_connection(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def post_bytes(body: dict, host: str = "127.0.0.1") -> bytes:
    content = json.dumps(body).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(content)}\r\n\r\n").encode() + content


def hold_worker(engine, model="tuned"):
    """Occupy the worker with a job whose events wait on a gate: what is submitted next queues up."""
    held, gate, events = threading.Event(), threading.Event(), []

    def hold(_i, event):
        events.append(event)
        held.set()
        gate.wait(60)

    engine.submit(model, engine.encode([{"role": "user", "content": "x"}]), Sampling(1, temperature=0), 1, hold)
    assert held.wait(60)
    return gate, events


def test_a_non_streamed_client_that_hangs_up_stops_its_generation(start_server, engine):
    with start_server(ServeConfig()) as url:
        first_gate, _ = hold_worker(engine)
        before = dict(engine.stats)
        client = raw_connection(url)  # greedy "hi" on the base model does not stop early (test_serve_engine)
        client.sendall(post_bytes({"model": "base", "messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 4000, "temperature": 0}))
        wait_until(lambda: len(engine._queue) == 1)
        # a second job for the same model joins the request's batch and holds the worker after its first token
        second_held, second_gate, second_events = threading.Event(), threading.Event(), []

        def second(_i, event):
            second_events.append(event)
            second_held.set()
            second_gate.wait(60)

        engine.submit("base", engine.encode([{"role": "user", "content": "x"}]), Sampling(3, temperature=0), 1,
                      second)
        first_gate.set()
        assert second_held.wait(60)  # the request has generated its first token; the worker is held
        client.close()
        wait_until(lambda: httpx.get(url + "/health").json()["in_flight"] == 0)  # the handler saw it leave
        second_gate.set()
        wait_until(lambda: second_events and isinstance(second_events[-1], Finished))
        assert engine.stats["cancelled_rows"] == before["cancelled_rows"] + 1
        assert engine.stats["generated_tokens"] - before["generated_tokens"] <= 1 + 3  # not 4000


# ---------------------------------------------------------------- prompt size, tokenizing, slow bodies


def test_an_oversize_prompt_is_refused_before_tokenizing(start_server, engine, monkeypatch):
    calls = []
    encode = engine.encode
    monkeypatch.setattr(engine, "encode", lambda messages: calls.append(1) or encode(messages))
    with start_server(ServeConfig(limits={"max_prompt_tokens": 32})) as url:  # 8 chars per token: 256 chars
        long = {**CHAT, "messages": [{"role": "system", "content": "s" * 100}, {"role": "user", "content": "u" * 157}]}
        error = error_of(httpx.post(url + "/v1/chat/completions", json=long), 400)
        assert error["code"] == "context_length_exceeded" and "257 characters; at most 256" in error["message"]
        assert calls == []
        history = {**CHAT, "messages": [{"role": "user", "content": "q"},  # hidden reasoning is not counted
                                        {"role": "assistant", "content": "r" * 300 + "</think>a"},
                                        {"role": "user", "content": "again"}]}
        assert httpx.post(url + "/v1/chat/completions", json=history, timeout=60).status_code == 200
        assert calls == [1]
    with start_server(ServeConfig(limits={"max_prompt_chars": 50})) as url:
        long = {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 51}]}]}
        assert "at most 50" in error_of(httpx.post(url + "/v1/chat/completions", json=long), 400)["message"]
    assert calls == [1]


def test_eight_oversize_prompts_at_once_are_all_refused_untokenized(server_url, engine, monkeypatch):
    calls = []
    encode = engine.encode
    monkeypatch.setattr(engine, "encode", lambda messages: calls.append(1) or encode(messages))
    huge = {**CHAT, "messages": [{"role": "user", "content": "金" * 70_000}]}  # default cap: 8 × 8192 chars
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        httpx.post(server_url + "/v1/chat/completions", json=huge, timeout=60))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [error_of(r, 400)["code"] for r in results] == ["context_length_exceeded"] * 8
    assert calls == []


def test_the_worker_never_waits_on_a_request_being_tokenized(engine):
    ids = engine.encode([{"role": "user", "content": "hi"}])
    events = []
    with engine._encode_lock:  # as while a request thread tokenizes a long prompt
        engine.submit("base", ids, Sampling(5, temperature=0), 1, lambda _i, e: events.append(e))
        wait_until(lambda: events and isinstance(events[-1], Finished))
    assert events[-1].reason == "length" and events[-1].completion_tokens == 5


def read_to_close(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of the one response; the server must close the connection after it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("request_bytes", [
    b"Content-Length: 200\r\n\r\n" + HEAD.encode()[:50],  # half a body, then nothing
    b"Content-Length: 200\r\n\r\n",  # headers only
    b"Transfer-Encoding: chunked\r\n\r\n10\r\n" + HEAD.encode()[:16] + b"\r\n",  # one chunk, then nothing
], ids=["half-body", "no-body", "chunked"])
def test_a_body_that_stops_arriving_times_out(start_server, request_bytes):
    with start_server(ServeConfig(limits={"body_timeout_s": 0.5})) as url:
        sock = raw_connection(url)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + request_bytes)
        status, headers, body = read_to_close(sock)
        sock.close()
        assert status == 408 and headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert error["code"] == "body_timeout" and error["type"] == "invalid_request_error"
        assert httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200


# ---------------------------------------------------------------- host, content type, key


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
                                  "localhost.", "[localhost]", "[127.0.0.1]", "::1", "127.0.0.1:80x", "0.0.0.0",
                                  "192.168.1.5:8000", "[::1]evil", ""])
def test_without_a_key_a_foreign_host_header_is_refused(server_url, host):
    for r in (httpx.get(server_url + "/v1/models", headers={"host": host}),
              httpx.post(server_url + "/v1/chat/completions", json=CHAT, headers={"host": host})):
        assert error_of(r, 400)["code"] == "invalid_host"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:{port}", "127.3.2.1:1",
                                  "[::1]", "[::1]:{port}", "localhost:{port}"])
def test_without_a_key_loopback_host_names_are_served(server_url, host):
    host = host.format(port=server_url.rsplit(":", 1)[1])
    assert httpx.get(server_url + "/v1/models", headers={"host": host}).status_code == 200


def test_a_host_header_is_not_checked_when_a_key_is_required(start_server):
    with start_server(ServeConfig(api_key="k")) as url:
        r = httpx.get(url + "/v1/models", headers={"host": "api.example.com", "authorization": "Bearer k"})
        assert r.status_code == 200
        assert error_of(httpx.get(url + "/v1/models", headers={"host": "api.example.com"}), 401)


def test_a_missing_host_header_is_refused(server_url):
    sock = raw_connection(server_url)
    sock.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host
    status, _, body = read_to_close(sock)
    sock.close()
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_host"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx", "json"])
def test_a_post_that_is_not_json_is_415(server_url, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = httpx.post(server_url + "/v1/chat/completions", content=json.dumps(CHAT), headers=headers)
    assert error_of(r, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_types_are_accepted(server_url, content_type):
    r = httpx.post(server_url + "/v1/chat/completions", content=json.dumps(CHAT),
                   headers={"content-type": content_type}, timeout=60)
    assert r.status_code == 200, r.text


def test_a_key_with_surrounding_whitespace_is_stripped_at_start(start_server, monkeypatch):
    monkeypatch.delenv("R1TUNE_API_KEY", raising=False)
    assert resolve_api_key(ServeConfig(api_key="  s3cret\n")).api_key == "s3cret"
    monkeypatch.setenv("R1TUNE_API_KEY", "s3cret\r\n")  # e.g. read from a file written on Windows
    cfg = resolve_api_key(ServeConfig())
    assert cfg.api_key == "s3cret"
    with start_server(cfg) as url:
        assert httpx.get(url + "/v1/models", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200
        error_of(httpx.get(url + "/v1/models", headers={"authorization": "Bearer s3cre"}), 401)


@pytest.mark.parametrize("key", ["a\x01b", "clé", "tab\tinside"])
def test_a_key_no_header_can_carry_is_refused_at_start(lora_run, monkeypatch, cli, key):
    monkeypatch.delenv("R1TUNE_API_KEY", raising=False)
    code, _, err = cli("serve", lora_run, "--api-key", key)
    assert code == 2 and "printable ASCII" in err
