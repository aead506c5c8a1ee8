"""The `r1tune serve` command: loopback by default, no public address without a key, a real server process
answering the openai client, and the `--engine vllm` handoff (a stand-in `vllm` records what it is given)."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest

from r1tune.config import ServeConfig
from r1tune.errors import R1TuneError
from r1tune.recipes.serve import is_loopback, resolve_api_key, serve
from r1tune.serve.vllm import vllm_command

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_loopback_by_default_and_no_public_address_without_a_key(monkeypatch):
    monkeypatch.delenv("R1TUNE_API_KEY", raising=False)
    assert ServeConfig().host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(R1TuneError, match="without an API key"):
        resolve_api_key(ServeConfig(host="0.0.0.0"))
    assert resolve_api_key(ServeConfig(host="0.0.0.0", api_key="k")).api_key == "k"
    monkeypatch.setenv("R1TUNE_API_KEY", "from-env")
    assert resolve_api_key(ServeConfig(host="0.0.0.0")).api_key == "from-env"
    with pytest.raises(R1TuneError, match="empty"):
        resolve_api_key(ServeConfig(api_key=" "))


def test_serve_command_refuses_public_bind_without_key(lora_run, monkeypatch, cli):
    monkeypatch.delenv("R1TUNE_API_KEY", raising=False)
    code, _, err = cli("serve", lora_run, "--host", "0.0.0.0")
    assert code == 2 and "without an API key" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_runs_a_server_the_openai_client_can_use(lora_run):
    import openai

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "r1tune.cli", "serve", str(lora_run), "--port", str(port),
                             "--set", "limits.max_n=2", "--set", "threads=1"], env={**ENV, "R1TUNE_API_KEY": "cli-key"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/v1/models", headers={"Authorization": "Bearer cli-key"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        assert httpx.get(url + "/v1/models").status_code == 401
        client = openai.OpenAI(base_url=url + "/v1", api_key="cli-key", max_retries=0)
        r = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "hi"}], max_tokens=6)
        assert r.choices[0].message.role == "assistant"
        with pytest.raises(openai.BadRequestError):  # --set reached the limits
            client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "hi"}], n=3)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert f"http://127.0.0.1:{port}/v1" in out and "API key required" in out


def fake_vllm(folder):
    """A `vllm` on PATH that records its arguments and the key it got from the environment."""
    folder.mkdir(exist_ok=True)
    script = folder / "vllm"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$VLLM_RECORD"\nprintf "%s" "$VLLM_API_KEY" > "$VLLM_RECORD.key"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_engine_vllm_hands_over_the_merged_model(lora_run, tmp_path):
    record = tmp_path / "argv.txt"
    env = {**ENV, "PATH": f"{fake_vllm(tmp_path / 'bin')}:{ENV['PATH']}", "VLLM_RECORD": str(record),
           "R1TUNE_API_KEY": "vllm-key"}
    run = subprocess.run([sys.executable, "-m", "r1tune.cli", "serve", str(lora_run), "--engine", "vllm",
                          "--port", "8123"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    argv = record.read_text().splitlines()
    assert argv[:2] == ["serve", str(lora_run / "merged")]
    assert (lora_run / "merged" / "merge_report.json").exists()  # merged first, for vLLM
    flags = dict(zip(argv[2::1], argv[3::1]))
    assert flags["--reasoning-parser"] == "deepseek_r1" and flags["--served-model-name"] == "tuned"
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123" and flags["--generation-config"] == "auto"
    assert "vllm-key" not in argv and (tmp_path / "argv.txt.key").read_text() == "vllm-key"  # env, not argv


def test_vllm_with_extra_adapters_serves_the_base_with_lora_modules(lora_run, other_run, tiny_model_dir):
    cmd = vllm_command(lora_run, ServeConfig(adapters={"other": str(other_run)}))
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)]
    modules = cmd[cmd.index("--lora-modules") + 1:]
    assert modules == [f"tuned={lora_run / 'final'}", f"other={other_run / 'final'}"]
    assert "--enable-lora" in cmd and cmd[cmd.index("--served-model-name") + 1] == "base"
    with pytest.raises(R1TuneError, match="allow-template-mismatch"):
        vllm_command(lora_run, ServeConfig(template="r1-2025-01"))


def test_engine_vllm_without_vllm_installed_says_so(lora_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(R1TuneError, match="vLLM is not installed"):
        serve(lora_run, ServeConfig(engine="vllm"))
