"""What the clean rules' regex scans cost in Python's engine alone, on the bench_prepare input.

    .venv/bin/python bench/regex_scans.py

Each pattern the default clean rules, the personal-data finder and the language filter use is run once over
the whole text of the synthetic 20 MB file (instruction, input and output of every record, joined), with its
matches iterated. The sum is a rough floor for a cleaner built on the `re` module, whatever its Python
overhead: it is to be compared with the 1.0 CPU-s that 20 MB/s per core allows for clean + check together.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import orjson
from bench_prepare import write_synthetic

from r1tune.data import clean, lang, pii


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.jsonl"
        write_synthetic(raw, 20)
        size_mb = raw.stat().st_size / 2**20
        texts = []
        with open(raw, "rb") as f:
            for line in f:
                record = orjson.loads(line)
                texts += [record["instruction"], record["input"], record["output"]]
    text = "\n".join(texts)
    scans = {"html hint": clean._HTML_HINT, "control": clean._CONTROL_OR_LINE_SEP,
             "nfkc protected": clean._protected_pattern(), "symbol noise": clean._NOISE,
             "repeated punctuation": clean._REPEATED_PUNCT, "spaces": clean._SPACES,
             "space at cjk punctuation": clean._SPACE_AT_CJK_PUNCT, "long number": pii._HAS_LONG_NUMBER,
             "phone": pii.PHONE, "id card": pii.ID_CARD, "bank card": pii.BANK_CARD, "email": pii.EMAIL,
             "han runs": lang.HAN_RUN, "latin words": lang.LATIN_WORD, "other scripts": lang._ANY_OTHER}
    seconds = {}
    for name, pattern in scans.items():
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for _ in pattern.finditer(text):
                pass
            best = min(best, time.process_time() - start)
        seconds[name] = round(best, 3)
    print(json.dumps({"input_mb": round(size_mb, 1), "characters": len(text), "cpu_s_per_scan": seconds,
                      "cpu_s_all_scans": round(sum(seconds.values()), 2),
                      "cpu_s_allowed_at_20_mb_per_s": round(size_mb / 20, 2)}, indent=1))


if __name__ == "__main__":
    main()
