"""Serving a lineage folder (issue 15): the newest promoted run, swapped for a newly promoted one under load.

The two session LoRA runs of the serve tests stand in for two increments: m1 (finsent answers) and m2 (taught
to answer "不确定"), each given the lineage.json a continual run writes. Clients keep calling one model name
through the swap; none fails, requests before it are answered by m1's engine and after it by m2's.
"""

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from r1tune.config import ServeConfig
from r1tune.train.lineage import write_lineage

KEY = "lineage-test-key"
PROMPT = [{"role": "user", "content": "判断这条财经新闻的情感倾向：公司营收同比增长12%"}]


def increment(name, promoted=True):
    return {"name": name, "promoted": promoted}


def test_lineage_folder_swaps_to_the_newly_promoted_run_under_load(lora_run, other_run, tmp_path):
    import openai

    from r1tune.serve.app import create_app
    from r1tune.serve.engine import load_engine
    from r1tune.serve.lineage import LineageEngine, add_reload_route, is_lineage_folder
    from serve.conftest import live_server

    folder = tmp_path / "monthly"
    shutil.copytree(lora_run, folder / "m1")
    write_lineage(folder / "m1", {"increments": [increment("m1")]})
    assert is_lineage_folder(folder)
    cfg = ServeConfig(threads=1, api_key=KEY, watch_s=0)
    named = cfg.model_copy(update={"served_name": "monthly"})
    engine = LineageEngine(folder, lambda run: load_engine(run, named))
    first = engine.current
    app = create_app(engine, cfg)
    add_reload_route(app, engine)
    auth = {"Authorization": f"Bearer {KEY}"}
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)

        def ask(max_tokens=24, stream=False):
            kwargs = dict(model="monthly", max_tokens=max_tokens, temperature=0, messages=PROMPT)
            if stream:
                chunks = list(client.chat.completions.create(stream=True, **kwargs))
                assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason][0] in (
                    "stop", "length")
                return "".join((getattr(c.delta, "reasoning_content", None) or "") + (c.delta.content or "")
                               for chunk in chunks for c in chunk.choices)
            r = client.chat.completions.create(**kwargs)
            assert r.choices[0].finish_reason in ("stop", "length")
            message = r.choices[0].message
            return (getattr(message, "reasoning_content", None) or "") + message.content

        before = ask()
        # a newer run whose gate failed is not served, and reloading needs the API key
        shutil.copytree(other_run, folder / "m3")
        write_lineage(folder / "m3", {"increments": [increment("m1"), increment("m2"), increment("m3", False)]})
        assert httpx.post(url + "/admin/reload", json={}).status_code == 401
        assert httpx.post(url + "/admin/reload", json={}, headers=auth).json()["changed"] is False

        shutil.copytree(other_run, folder / "m2")
        write_lineage(folder / "m2", {"increments": [increment("m1"), increment("m2")]})
        results, errors, stop = [], [], threading.Event()

        def client_loop(i):
            while not stop.is_set():
                try:
                    results.append(ask(max_tokens=16, stream=bool(i % 2)))
                except Exception as e:  # any failure during the swap fails the test
                    errors.append(repr(e))
                    return

        with ThreadPoolExecutor(max_workers=8) as pool:
            loops = [pool.submit(client_loop, i) for i in range(8)]
            deadline = time.monotonic() + 60
            while first.stats["rows"] < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            reply = httpx.post(url + "/admin/reload", json={}, headers=auth, timeout=120).json()
            swapped_at = len(results)
            while len(results) < swapped_at + 16 and time.monotonic() < deadline and not errors:
                time.sleep(0.05)
            stop.set()
            for loop in loops:
                loop.result()
        assert not errors, errors[:3]
        assert reply["changed"] and reply["serving"].endswith("m2") and engine.run.name == "m2"
        second = engine.current
        assert second is not first and first.stats["rows"] >= 10 and second.stats["rows"] >= 16
        after = ask()
        assert after != before  # m2's weights answer now, under the same model name
        assert [m.id for m in client.models.list().data] == ["monthly", "base"]
        deadline = time.monotonic() + 10  # the old engine closes once its last row has finished
        while first._worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first._worker.is_alive()
    engine.close()


def test_serve_command_on_a_lineage_folder_without_a_promoted_run(lora_run, tmp_path, cli):
    folder = tmp_path / "monthly"
    shutil.copytree(lora_run, folder / "m1")
    write_lineage(folder / "m1", {"increments": [increment("m1", promoted=False)]})
    code, _, err = cli("serve", folder, "--set", "watch_s=0")
    assert code == 2 and "no promoted run to serve" in err
