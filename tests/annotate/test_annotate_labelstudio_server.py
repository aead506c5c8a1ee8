"""The real round trip: a Label Studio server, our config and tasks in, annotations posted, export → samples.

The fixture installs the `label-studio` package into its own environment, `.venv-labelstudio/` at the repo
root (git-ignored; reused when already installed: about a minute on a fresh machine, 1 GB), starts the server
on loopback with a fresh data directory and a user whose API token is set on the command line, and stops it
afterwards. The test talks to it only over HTTP, as a team's scripts would.

    .venv/bin/python -m pytest tests/annotate/test_annotate_labelstudio_server.py -q
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from annotate_builders import choice, cli, read_jsonl, region, relation

from r1tune.annotate import prompts
from r1tune.annotate.labelstudio import make_tasks, write_json
from r1tune.annotate.predict import llm_predictor
from r1tune.annotate.schema import load_schema
from r1tune.model.reasoning import split_reasoning

pytestmark = pytest.mark.slow

LABEL_STUDIO_VERSION = "1.23.2"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-labelstudio"
TOKEN = "r1tune-test-token-0123456789"  # set as the admin's API token on the server's command line
INSTALL_TIMEOUT_S, START_TIMEOUT_S = 600, 240


def label_studio_venv() -> Path:
    """The `label-studio` executable of its own environment, installed on first use."""
    exe = VENV / "bin" / "label-studio"
    stamp = VENV / f".installed-{LABEL_STUDIO_VERSION}"
    if exe.exists() and stamp.exists():
        return exe
    # a half-made environment (an interrupted install) is rebuilt, not trusted
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=120)
    started = time.time()
    install = subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"label-studio=={LABEL_STUDIO_VERSION}"],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert install.returncode == 0, f"installing label-studio failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
    stamp.write_text(f"installed in {time.time() - started:.0f} s\n")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    """A running server and the few API calls the test needs (Token auth, JSON bodies)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None, expect=(200, 201)):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode("utf-8"),
                                         headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        assert status in expect, f"{method} {path} → {status}: {raw[:2000].decode('utf-8', 'replace')}"
        return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    exe = label_studio_venv()
    data_dir = tmp_path_factory.mktemp("label-studio-data")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "HOME": str(data_dir),
           # no calls home: no version check against PyPI, no analytics, no error reporting
           "LABEL_STUDIO_LATEST_VERSION_CHECK": "false", "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
           "LABEL_STUDIO_SENTRY_DSN": "", "LABEL_STUDIO_FRONTEND_SENTRY_DSN": ""}
    log = open(data_dir / "server.log", "w")
    server = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--username", "lead@r1tune.test", "--password", "r1tune-pass-1",
         "--user-token", TOKEN, "--enable-legacy-api-token"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + START_TIMEOUT_S
    try:
        while True:
            assert server.poll() is None, f"label-studio exited:\n{(data_dir / 'server.log').read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"label-studio not up in {START_TIMEOUT_S} s:\n" \
                                           f"{(data_dir / 'server.log').read_text()[-4000:]}"
            time.sleep(1)
        yield LabelStudio(url)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the processes it started, nothing else
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


TEXTS = {
    "agree": "腾讯控股（00700）控股腾讯音乐，维持买入评级。",
    "truth": "阿里巴巴控股蚂蚁集团，短期估值承压，建议持有。",
    "skipped": "今日两市成交额不足八千亿。",
    "bad": "中国平安（601318）控股平安银行，维持买入。",
    "predicted": "贵州茅台（600519）渠道库存偏高，下调至卖出。",
    "untouched": "比亚迪海外销量有望翻倍。",
}


def scripted_model(conversations):
    """Stands in for a fine-tuned model: answers from a fixed table, in R1 output form."""
    outs = []
    for conv in conversations:
        question = conv[-1]["content"]
        if question.startswith("从下面的文本中抽取实体。"):
            answer = prompts.entity_answer([("贵州茅台", "公司"), ("600519", "股票代码")] if "茅台" in question else [])
        elif question.startswith("从下面的文本中抽取实体之间的关系"):
            answer = prompts.relation_answer([("贵州茅台", "上市代码", "600519")] if "茅台" in question else [])
        else:
            answer = "持有建议" if "茅台" in question else "???"
        outs.append(split_reasoning("看一下。\n</think>\n\n" + answer))
    return outs


def test_round_trip_through_a_real_label_studio(label_studio, schema_file, tmp_path):
    schema = load_schema(schema_file)
    ls = label_studio
    assert ls.call("GET", "/api/version")["release"] == LABEL_STUDIO_VERSION

    # 1. our labeling config is accepted as a project
    assert cli("annotate", "config", schema_file, "--out", tmp_path / "config.xml") == 0
    project = ls.call("POST", "/api/projects", {"title": "r1tune finance",
                                                "label_config": (tmp_path / "config.xml").read_text(encoding="utf-8")})
    controls = project["parsed_label_config"]
    assert set(controls) == {"entity", "intent"}
    assert controls["entity"]["type"] == "Labels" and controls["entity"]["labels"] == schema.entities
    assert controls["intent"]["type"] == "Choices" and controls["intent"]["labels"] == schema.intents
    pid = project["id"]

    # 2. our tasks import, pre-annotations included
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"key": k, "text": t}, ensure_ascii=False) + "\n" for k, t in TEXTS.items()),
                    encoding="utf-8")
    tasks, stats = make_tasks(data, schema, predictor=llm_predictor(scripted_model, schema), model_version="r1tune:test")
    assert stats["with_predictions"] == 1
    write_json(tmp_path / "tasks.json", tasks)
    imported = ls.call("POST", f"/api/projects/{pid}/import",
                       json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8")))
    assert imported["task_count"] == len(TEXTS) and imported["prediction_count"] == 1
    listed = ls.call("GET", f"/api/tasks?project={pid}&page_size=100")["tasks"]
    ids = {t["data"]["key"]: t["id"] for t in listed}
    assert set(ids) == set(TEXTS)

    # 3. two annotators label; one skips a task; one uses a label that is not in the schema
    second = ls.call("POST", "/api/users", {"email": "second@r1tune.test", "username": "second",
                                            "password": "r1tune-pass-2"})["id"]
    first = ls.call("GET", "/api/current-user/whoami")["id"]

    def annotate(key, result, by, **extra):
        return ls.call("POST", f"/api/tasks/{ids[key]}/annotations",
                       {"result": result, "completed_by": by, "lead_time": 5.0, **extra})["id"]

    t = TEXTS["agree"]
    agreed = [region("a", t, "腾讯控股", "公司"), region("b", t, "00700", "股票代码"), region("c", t, "腾讯音乐", "公司"),
              relation("a", "c", "控股"), relation("a", "b", "上市代码"), choice("买入建议")]
    annotate("agree", agreed, first)
    annotate("agree", agreed, second)
    t = TEXTS["truth"]
    truth = [region("a", t, "阿里巴巴", "公司"), region("b", t, "蚂蚁集团", "公司"), relation("a", "b", "控股")]
    annotate("truth", truth + [choice("持有建议")], first, ground_truth=True)
    annotate("truth", truth + [choice("卖出建议")], second)
    annotate("skipped", [], first, was_cancelled=True)
    t = TEXTS["bad"]
    bad_id = annotate("bad", [region("a", t, "中国平安", "集团"), choice("买入建议")], first)
    # the annotator corrects the pre-annotation: keeps the spans, changes the intent
    predicted = next(x for x in listed if x["data"]["key"] == "predicted")
    prediction = ls.call("GET", f"/api/predictions?task={predicted['id']}")[0]["result"]
    corrected = [r for r in prediction if r["type"] != "choices"] + [choice("卖出建议")]
    annotate("predicted", corrected, second)

    # 4. export, and import the export
    export = tmp_path / "export.json"
    with urllib.request.urlopen(urllib.request.Request(f"{ls.url}/api/projects/{pid}/export?exportType=JSON",
                                                       headers={"Authorization": f"Token {TOKEN}"}), timeout=60) as r:
        export.write_bytes(r.read())
    exported = json.loads(export.read_text(encoding="utf-8"))
    by_key = {x["data"]["key"]: x for x in exported}
    assert set(by_key) == set(TEXTS) - {"untouched"}  # the default export leaves out tasks nobody opened
    assert [a["completed_by"] for a in by_key["agree"]["annotations"]] == [first, second]
    assert by_key["skipped"]["annotations"][0]["was_cancelled"] is True
    assert len(by_key["predicted"]["predictions"]) == 1  # exported as prediction ids; import ignores them

    out = tmp_path / "samples"
    assert cli("annotate", "import", export, "--schema", schema_file, "--out", out) == 0
    entities = {s["task_id"]: json.loads(s["messages"][1]["content"]) for s in read_jsonl(out / "entities.jsonl")}
    relations = {s["task_id"]: json.loads(s["messages"][1]["content"]) for s in read_jsonl(out / "relations.jsonl")}
    intents = {s["task_id"]: s["label"] for s in read_jsonl(out / "intents.jsonl")}
    assert entities == {
        ids["agree"]: [{"text": "腾讯控股", "label": "公司"}, {"text": "00700", "label": "股票代码"},
                       {"text": "腾讯音乐", "label": "公司"}],
        ids["truth"]: [{"text": "阿里巴巴", "label": "公司"}, {"text": "蚂蚁集团", "label": "公司"}],
        ids["predicted"]: [{"text": "贵州茅台", "label": "公司"}, {"text": "600519", "label": "股票代码"}]}
    assert relations == {
        ids["agree"]: [{"head": "腾讯控股", "relation": "上市代码", "tail": "00700"},
                       {"head": "腾讯控股", "relation": "控股", "tail": "腾讯音乐"}],
        ids["truth"]: [{"head": "阿里巴巴", "relation": "控股", "tail": "蚂蚁集团"}],
        ids["predicted"]: [{"head": "贵州茅台", "relation": "上市代码", "tail": "600519"}]}
    assert intents == {ids["agree"]: "买入建议", ids["truth"]: "持有建议", ids["predicted"]: "卖出建议"}
    assert read_jsonl(out / "problems.jsonl") == [{
        "task_id": ids["bad"], "annotation_id": bad_id,
        "reason": "region a ('中国平安'): entity label '集团' is not in the schema (entities: 公司, 股票代码, 人物)"}]
    sample = read_jsonl(out / "entities.jsonl")[0]
    assert sample["messages"][0]["content"] == prompts.entity_prompt(schema, TEXTS["agree"])

    # 5. agreement on the same export: the ground-truth task is the one to review
    report = tmp_path / "agreement.json"
    assert cli("annotate", "agreement", export, "--schema", schema_file, "--out", report) == 0
    review = json.loads(report.read_text(encoding="utf-8"))["review"]
    assert [(r["task_id"], r["layers"]) for r in review] == [(ids["truth"], ["intents"])]
