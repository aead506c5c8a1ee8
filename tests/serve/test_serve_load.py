"""Load: 50 concurrent requests (half streamed, three models) through the official client, none failing.

The concurrency cap (64 by default) is above 50, so every request is admitted and queued; the worker runs
them in batches. The figures are printed (pytest -s) and kept in the test for the record.
"""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor


def test_fifty_concurrent_requests_all_succeed(server_url, engine):
    import openai

    client = openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    models = ["tuned", "base", "other"]
    before = dict(engine.stats)

    def one(i):
        t0 = time.perf_counter()
        kwargs = dict(model=models[i % 3], max_tokens=8, temperature=0.6,
                      messages=[{"role": "user", "content": f"第{i}条：公司营收同比增长{i}% — good or bad?"}])
        if i % 2:
            chunks = list(client.chat.completions.create(stream=True, **kwargs))
            finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
            assert finish and finish[0] in ("stop", "length")
        else:
            r = client.chat.completions.create(**kwargs)
            assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 8
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        latencies = list(pool.map(one, range(50)))
    wall = time.perf_counter() - t0
    batches = engine.stats["batches"] - before["batches"]
    print(f"\n50 concurrent requests: wall {wall:.2f}s, latency p50 {statistics.median(latencies):.2f}s "
          f"max {max(latencies):.2f}s, {batches} batches (largest {engine.stats['largest_batch']} rows)")
    assert engine.stats["rows"] - before["rows"] >= 50  # every request was generated, none refused or lost
    assert max(latencies) <= wall
    assert batches < 50  # concurrent requests for the same model were batched
