"""The board's security, through its real app (FastAPI's test client; no model is loaded, no job started).

Loopback Host only without a key; the key (bearer or the sign-in cookie) with one; X-CSRF-Token on every
change; the sign-in form only from the board's own origin; no path outside the runs folder (`..`, absolute,
a symlink that leads out), no file of a run but its reports; uploads never replace a file; a form is
checked by the same schema as the command line.
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from r1tune.board.app import create_app
from r1tune.board.guard import CSRF_HEADER, SESSION_COOKIE
from r1tune.config import BoardConfig

HOST = "http://127.0.0.1"


def token_of(page: str) -> str:
    boot = json.loads(re.search(r'<script type="application/json" id="boot">(.*?)</script>', page, re.S).group(1))
    return boot["csrf"]


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    (runs / "done" / "final").mkdir(parents=True)
    (runs / "done" / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 2.5}\n', encoding="utf-8")
    (runs / "done" / "report.md").write_text("# fine\n", encoding="utf-8")
    (runs / "done" / "secret.txt").write_text("not a report\n", encoding="utf-8")
    (tmp_path / "outside.jsonl").write_text('{"instruction": "x", "output": "y"}\n', encoding="utf-8")
    (runs / "leak").symlink_to(tmp_path)
    return runs


def test_loopback_csrf_paths_uploads_and_forms(runs, tmp_path):
    base = tmp_path / "base-model"  # offered with --model; a form can name it, and no other folder outside runs
    client = TestClient(create_app(BoardConfig(runs=str(runs), models=[str(base)], max_upload_bytes=64)),
                        base_url=HOST)
    page = client.get("/")
    assert page.status_code == 200 and "content-security-policy" in page.headers
    token = token_of(page.text)
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding

    # every change needs the page's token; a cross-site form cannot send it
    assert client.post("/api/train", json={}).status_code == 403
    assert client.post("/api/train", json={}, headers={CSRF_HEADER.decode(): "0" * 64}).status_code == 403
    csrf = {CSRF_HEADER.decode(): token}

    # uploads land in uploads/, never replace a file, and keep to the size limit and known suffixes
    first = client.put("/api/upload?name=../../train.jsonl", content=b'{"instruction": "a", "output": "b"}\n',
                       headers=csrf)
    second = client.put("/api/upload?name=train.jsonl", content=b'{"instruction": "c", "output": "d"}\n', headers=csrf)
    assert (first.json()["file"], second.json()["file"]) == ("uploads/train.jsonl", "uploads/train-2.jsonl")
    assert client.put("/api/upload?name=x.sh", content=b"echo", headers=csrf).status_code == 400
    assert client.put("/api/upload?name=big.jsonl", content=b"x" * 65, headers=csrf).status_code == 413
    assert client.get("/api/files").json()["data"][:2] == ["uploads/train-2.jsonl", "uploads/train.jsonl"]
    assert client.get("/api/preview?file=uploads/train.jsonl").json()["records"] == [
        {"instruction": "a", "output": "b"}]

    # nothing outside the runs folder: '..', absolute paths, symlinks leading out; only a run's reports
    for name in ("../outside.jsonl", "/etc/passwd", "leak/outside.jsonl"):
        assert client.get(f"/api/preview?file={name}").status_code == 403, name
    assert client.get("/api/run?name=leak").status_code == 403
    assert client.get("/api/run/file?name=done&file=report.md").text == "# fine\n"
    assert client.get("/api/run/file?name=done&file=secret.txt").status_code == 404
    assert client.get("/api/run?name=uploads").status_code == 404
    assert [r["name"] for r in client.get("/api/runs").json()["runs"]] == ["done"]

    # a form is the command line's schema: bad values are one line; a taken name is 409; a model outside is 403
    form = {"name": "r1", "model": str(base), "data": "uploads/train.jsonl", "method": "lora",
            "max_steps": "3"}
    preview = client.post("/api/train/preview", json=form, headers=csrf)
    assert preview.status_code == 200 and "max_steps: 3" in preview.json()["yaml"]
    assert "lr" in client.post("/api/train/preview", json={**form, "lr": "fast"}, headers=csrf).json()["error"]
    assert client.post("/api/train", json={**form, "name": "done"}, headers=csrf).status_code == 409
    assert client.post("/api/train", json={**form, "model": "/etc"}, headers=csrf).status_code == 403
    assert client.post("/api/train/preview", json={**form, "extra": "data.train=/etc/passwd"},
                       headers=csrf).status_code == 400
    assert not (runs / "r1").exists()


def test_api_key_sign_in(runs):
    client = TestClient(create_app(BoardConfig(runs=str(runs), api_key="s3cret", host="0.0.0.0")),
                        base_url="http://board.example:7860", follow_redirects=False)
    assert client.get("/", headers={"accept": "text/html"}).headers["location"] == "/login"
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"authorization": "Bearer s3cret"}).status_code == 200
    own = {"origin": "http://board.example:7860", "content-type": "application/x-www-form-urlencoded"}
    assert client.post("/login", content="key=nope", headers=own).headers["location"] == "/login?wrong=1"
    assert client.post("/login", content="key=s3cret", headers={**own, "origin": "http://evil.example"}
                       ).status_code == 403
    signed = client.post("/login", content="key=s3cret", headers=own)
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    assert "s3cret" not in signed.headers["set-cookie"]
    assert client.cookies.get(SESSION_COOKIE)
    assert client.get("/api/runs").status_code == 200


def test_board_refuses_an_open_address_without_a_key(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("R1TUNE_API_KEY", raising=False)
    code, _, err = cli("board", "--host", "0.0.0.0", "--runs", tmp_path / "runs")
    assert code == 2 and "without an API key" in err and len(err.strip().splitlines()) == 1
