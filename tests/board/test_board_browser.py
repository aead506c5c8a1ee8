"""`r1tune board` driven in a real headless Chromium (Debian's /usr/bin/chromium through Playwright).

One walk through the board, as a user would make it: upload a data file and preview it, start a tiny run
from the Train form, watch the loss curve get points, stop the board while the run trains and start it
again (the run goes on, detached, and is listed by the new board, in Chinese this time), see it finish, then
chat with it and get an answer with its reasoning folded apart. Screenshots of each screen are kept in the
test's tmp folder (and copied to docs/ when R1TUNE_BOARD_SHOTS=1, for the README).

    .venv/bin/python -m pytest tests/board/test_board_browser.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PROMPT = "Is the market up? 市场涨了吗"
REASONING, ANSWER = "The index rose", "Yes up"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Board:
    """`r1tune board` as its own process (as a user starts it), stopped with SIGTERM like Ctrl-C would."""

    def __init__(self, runs: Path, model: Path, log: Path):
        self.runs, self.model, self.log = runs, model, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = None

    def start(self) -> float:
        started = time.perf_counter()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "r1tune.cli", "board", "--runs", str(self.runs),
                                             "--port", str(self.port), "--model", str(self.model)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the board did not answer within 90 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("the board test needs Debian's chromium: run scripts/install-test-deps.sh "
                    "(apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def test_board_trains_survives_a_restart_and_chats(browser, tiny_model_dir, tmp_path):
    from playwright.sync_api import expect

    runs, shots = tmp_path / "runs", tmp_path / "screenshots"
    shots.mkdir()
    data = tmp_path / "echo.jsonl"
    data.write_text("".join(json.dumps({"instruction": PROMPT, "output": ANSWER, "reasoning": REASONING},
                                       ensure_ascii=False) + "\n" for _ in range(16)), encoding="utf-8")
    board = Board(runs, tiny_model_dir, tmp_path / "board.log")
    t0 = time.perf_counter()
    timings = {"first_start_s": board.start()}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # ---- Data: upload through the page, preview the records
        page.goto(board.url)
        expect(page.locator("#tab-train")).to_have_text("Train")
        page.set_input_files("#data-upload", str(data))
        expect(page.locator("#data-file")).to_have_value("uploads/echo.jsonl")
        expect(page.locator("#data-records pre")).to_have_count(16)
        assert REASONING in page.locator("#data-records pre").first.inner_text()
        page.screenshot(path=shots / "1-data.png", full_page=True)

        # ---- Train: a tiny full fine-tune that learns the one reply, launched as a detached job
        page.click("#tab-train")
        form = page.locator("#train-form")
        form.locator("[name=name]").fill("echo")
        form.locator("[name=model]").select_option(str(tiny_model_dir))
        form.locator("[name=data]").select_option("uploads/echo.jsonl")
        form.locator("[name=method]").select_option("full")
        for field, value in {"max_steps": "30", "batch_size": "4", "lr": "3e-3", "save_every": "1000"}.items():
            form.locator(f"[name={field}]").fill(value)
        form.locator("[name=extra]").fill("train.warmup_steps=0\ntrain.min_lr_ratio=1.0")  # a constant lr
        page.click("#train-preview")
        expect(page.locator("#train-yaml")).to_contain_text("max_steps: 30")
        page.screenshot(path=shots / "2-train.png", full_page=True)
        page.click("#train-launch")

        # ---- Runs: the curve gets points while the job runs
        expect(page.locator("#run-name")).to_have_text("echo")
        chart = page.locator("#chart-loss")
        # points arrive one by one while the job runs (server-sent events as metrics.jsonl grows)
        # (polled from here: the page's CSP forbids the eval that page.wait_for_function would need)
        assert wait_for(lambda: int(chart.get_attribute("data-points")) >= 3, 90), "no live points"
        expect(chart.locator("path.series.train")).to_have_count(1)
        job = json.loads((runs / "echo" / "job.json").read_text(encoding="utf-8"))
        page.screenshot(path=shots / "3-runs-live.png", full_page=True)
        timings["three_live_points_s"] = time.perf_counter() - t0

        # ---- restart the board while the job trains: the job goes on and the new board lists it
        board.stop()
        assert _alive(job["pid"]) or (runs / "echo" / "final").is_dir(), "stopping the board stopped the job"
        timings["restart_s"] = board.start()
        page.goto(board.url + "?restarted#runs")  # a new document (not a jump to #runs within the old one)
        expect(page.locator("#tab-runs")).to_have_text("Runs")
        page.click("#lang-switch")  # the page comes back in Chinese
        expect(page.locator("#tab-runs")).to_have_text("运行")
        row = page.locator("#runs-table tbody tr[data-run=echo]")
        expect(row).to_have_count(1)
        row.locator("button").click()
        expect(page.locator("#run-status")).to_have_attribute("data-status", "finished", timeout=120_000)
        # every step's loss (and the eval point), read again by the new board; the status can come from
        # GET /api/run before the event stream has delivered the rows
        assert wait_for(lambda: int(chart.get_attribute("data-points")) >= 30, 30), chart.get_attribute("data-points")
        expect(row.locator("td.status")).to_have_text("已完成")
        page.screenshot(path=shots / "4-runs-finished-zh.png", full_page=True)
        timings["run_finished_s"] = time.perf_counter() - t0
        assert not _alive(job["pid"])

        # ---- Chat (back in English): the answer streamed, its reasoning folded apart
        page.click("#lang-switch")
        expect(page.locator("#tab-runs")).to_have_text("Runs")
        page.click("#tab-chat")
        page.locator("#chat-run").select_option("echo")
        page.locator("#chat-temperature").fill("0")
        page.locator("#chat-max-tokens").fill("48")
        page.locator("#chat-input").fill(PROMPT)
        page.click("#chat-send")
        reply = page.locator(".message.assistant").last
        expect(reply).to_have_attribute("data-finish", "stop", timeout=90_000)
        expect(reply.locator(".answer")).to_contain_text(ANSWER)
        details = reply.locator("details.reasoning")
        assert details.get_attribute("open") is None  # folded until the user opens it
        details.locator("summary").click()
        expect(details.locator(".reasoning-text")).to_have_text(REASONING)
        page.screenshot(path=shots / "5-chat.png", full_page=True)
        timings["chat_answered_s"] = time.perf_counter() - t0
        assert errors == []
    finally:
        context.close()
        board.stop()
    print("board timings:", {k: round(v, 1) for k, v in timings.items()})
    print(f"screenshots: {shots}")
    if os.environ.get("R1TUNE_BOARD_SHOTS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        for name, target in (("4-runs-finished-zh.png", "board-runs.png"), ("5-chat.png", "board-chat.png")):
            shutil.copy(shots / name, ROOT / "docs" / target)


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
