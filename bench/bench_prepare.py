"""Throughput of `r1tune prepare` on clean + check + exact dedupe, per core, streaming.

    .venv/bin/python bench/bench_prepare.py            # 20 MB synthetic file, about half a minute
    .venv/bin/python bench/bench_prepare.py --mb 2000  # the 2 GB case: memory stays flat
    .venv/bin/python bench/bench_prepare.py --workers 4  # clean and check also on 4 processes (default: every core)
    .venv/bin/python bench/bench_prepare.py --no-plain   # skip the plain per-record path (R1TUNE_PREP_REFERENCE=1)
    .venv/bin/python bench/bench_prepare.py --repeat 5   # and the best of 5 interleaved runs of each path
    .venv/bin/python bench/bench_prepare.py --input data.jsonl   # a file of your own instead of the synthetic one

Generates a synthetic JSONL of Chinese, English and mixed finance / medical records (with HTML
remnants, full-width characters, symbol noise, personal data and 5% duplicates) in a temporary folder,
then times each step as a single process (one core) and prints one JSON object: records/s and MB/s of
input per CPU-second (= per core; wall time is shown too) per step and for clean + check together,
plus the peak resident memory, which does not grow with the file size (the exact-dedupe and
conflict indexes grow by a few bytes per distinct record, not with the text). The steps run as the CLI runs them:
records read in batches, vectorised RE2 scans choosing where the Python rules run (data/clean_scan.py), the
one-off costs (pyarrow's import, the Unicode tables) counted in the first step. `plain_path` then times clean and
check again on the same file with the scans off (the per-record reference path), and says whether the files match.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

ZH = ["公司{y}年实现营业收入{a}亿元，同比增长{p}%，净利润{b}万元。",
      "患者主诉头痛、发热3天，体温{t}℃，血压{bp}/80mmHg。",
      "董事会审议通过了2023年度利润分配预案，每10股派发现金红利{d}元（含税）。",
      "经营活动现金流量净额为{a}亿元，较上年同期下降{p}%。",
      "<p>本季度毛利率为{p}%&nbsp;，环比提升{q}个百分点。</p>",
      "★★★重磅！公司中标{a}亿元项目★★★",
      "客户电话13812345678，请尽快回访。"]
EN = ["Revenue rose {p}% year on year to RMB {a} billion, while net profit reached {b} million.",
      "The patient reported fever of {t} °C and a blood pressure of {bp}/80 mmHg.",
      "Operating cash flow fell {p}% to ＵＳＤ {a} million in Q{q}.",
      "Contact the analyst at analyst{q}@example.com for details."]
MIX = ["公司Q{q}的EBITDA为{a}亿元，EBITDA margin达到{p}%。",
       "What does 同比增长{p}% mean for the company's valuation?",
       "患者的HbA1c为{t}%，建议调整metformin剂量。"]


def synthetic_record(rng: random.Random) -> dict:
    def fill(template: str) -> str:
        return template.format(y=rng.randint(2015, 2024), a=round(rng.uniform(0.5, 999), 1), b=rng.randint(100, 99999),
                               p=round(rng.uniform(-30, 60), 1), q=rng.randint(1, 4), t=round(rng.uniform(36, 40), 1),
                               bp=rng.randint(100, 180), d=round(rng.uniform(0.1, 9), 2))
    pool = rng.choice([ZH, ZH, EN, MIX])
    text = "".join(fill(rng.choice(pool)) for _ in range(rng.randint(2, 6)))
    label = rng.choice(["正面", "负面", "中性"])
    return {"instruction": rng.choice(["判断以下文本的情绪。", "Classify the sentiment of the text.", "总结要点。"]),
            "input": text, "output": label, "label": label}


def write_synthetic(path: Path, megabytes: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    written = records = 0
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            if recent and rng.random() < 0.05:  # planted exact duplicates
                line = rng.choice(recent)
            else:
                line = json.dumps(synthetic_record(rng), ensure_ascii=False) + "\n"
                recent = (recent + [line])[-1000:]
            f.write(line)
            written += len(line.encode("utf-8"))
            records += 1
    return records


def peak_rss_mb() -> float:
    """This process image's own peak (VmHWM): getrusage's ru_maxrss survives execve, so when `make bench`
    starts this script after loading a model in-process, ru_maxrss would report that model's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20, help="Size of the synthetic input in MB (default 20).")
    parser.add_argument("--keep", help="Write the files here instead of a temporary folder.")
    parser.add_argument("--workers", type=int, default=0,
                        help="Also time clean and check on this many processes (default 0: every core; 1: skip).")
    parser.add_argument("--no-plain", action="store_true", help="Do not time the plain per-record path.")
    parser.add_argument("--input", help="Time this JSONL file instead of a synthetic one.")
    parser.add_argument("--repeat", type=int, default=0,
                        help="Also time clean and check on both paths this many times, interleaved, and report the "
                             "best of each (per-record work alone, robust to other load on the machine).")
    args = parser.parse_args()

    from r1tune.data import scan
    from r1tune.data.clean import clean_file
    from r1tune.data.dedup import dedupe_file
    from r1tune.data.parallel import resolve_workers
    from r1tune.data.quality import check_file

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / "raw.jsonl"
        if args.input:  # the user's file (or the clean output of an earlier run: most records need nothing)
            raw.write_bytes(Path(args.input).read_bytes())
            records = raw.read_bytes().count(b"\n")
        else:
            records = write_synthetic(raw, args.mb)
        size_mb = raw.stat().st_size / 1024 / 1024
        timings, cpu = {}, {}
        rss_after = {}

        start, start_cpu = time.perf_counter(), time.process_time()
        clean = clean_file(raw, folder / "clean.jsonl")
        timings["clean"] = time.perf_counter() - start
        cpu["clean"] = time.process_time() - start_cpu
        rss_after["clean"] = peak_rss_mb()

        start, start_cpu = time.perf_counter(), time.process_time()
        report = check_file(folder / "clean.jsonl", folder / "report")
        timings["check"] = time.perf_counter() - start
        cpu["check"] = time.process_time() - start_cpu
        rss_after["check"] = peak_rss_mb()

        start, start_cpu = time.perf_counter(), time.process_time()
        dedupe = dedupe_file(folder / "clean.jsonl", folder / "dedupe.jsonl")
        timings["dedupe_exact"] = time.perf_counter() - start
        cpu["dedupe_exact"] = time.process_time() - start_cpu
        rss_after["dedupe_exact"] = peak_rss_mb()

        same = lambda a, b: (folder / a).read_bytes() == (folder / b).read_bytes()  # noqa: E731
        plain = None
        if not args.no_plain:  # the same two steps on the plain per-record path, same file, same run
            vectorised, scan.VECTORISED = scan.VECTORISED, False
            try:
                start_cpu = time.process_time()
                clean_file(raw, folder / "clean-plain.jsonl")
                clean_cpu = time.process_time() - start_cpu
                start_cpu = time.process_time()
                check_file(folder / "clean.jsonl", folder / "report-plain")
                check_cpu = time.process_time() - start_cpu
            finally:
                scan.VECTORISED = vectorised
            plain = {"clean": {"cpu_s": round(clean_cpu, 2), "mb_per_s_per_core": round(size_mb / clean_cpu, 2),
                               "vectorised_speedup": round(clean_cpu / cpu["clean"], 2)},
                     "check": {"cpu_s": round(check_cpu, 2), "mb_per_s_per_core": round(size_mb / check_cpu, 2),
                               "vectorised_speedup": round(check_cpu / cpu["check"], 2)},
                     "clean_plus_check": {"mb_per_s_per_core": round(size_mb / (clean_cpu + check_cpu), 2),
                                          "vectorised_speedup": round((clean_cpu + check_cpu) /
                                                                      (cpu["clean"] + cpu["check"]), 2)},
                     "files_identical": same("clean-plain.jsonl", "clean.jsonl")
                     and same("clean-plain.log.jsonl", "clean.log.jsonl")
                     and same("report-plain/problems.jsonl", "report/problems.jsonl")}
            if args.repeat:  # per-record work alone (one-off costs paid above), best of interleaved repeats
                best: dict = {}
                for _ in range(args.repeat):
                    for on in (False, True):
                        scan.VECTORISED = on
                        try:
                            for step, run in (("clean", lambda: clean_file(raw, folder / "clean-again.jsonl")),
                                              ("check", lambda: check_file(folder / "clean.jsonl",
                                                                           folder / "report-again"))):
                                start_cpu = time.process_time()
                                run()
                                key = (step, on)
                                best[key] = min(best.get(key, float("inf")), time.process_time() - start_cpu)
                        finally:
                            scan.VECTORISED = vectorised
                plain["best_of_repeats"] = {
                    "repeats": args.repeat,
                    **{step: {"cpu_s_plain": round(best[(step, False)], 2),
                              "cpu_s_vectorised": round(best[(step, True)], 2),
                              "vectorised_speedup": round(best[(step, False)] / best[(step, True)], 2)}
                       for step in ("clean", "check")}}

        # Clean and check on several processes: wall-clock rate, the CPU of parent and workers together, and
        # whether the files are the same as one process wrote.
        workers = resolve_workers(args.workers)
        parallel = None
        if workers > 1:
            def timed(fn, *fn_args) -> tuple[float, float]:
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                start, start_cpu = time.perf_counter(), time.process_time()
                fn(*fn_args, workers=workers)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                return time.perf_counter() - start, time.process_time() - start_cpu + \
                    (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)

            parallel = {"workers": workers}
            wall, cpu_all = timed(clean_file, raw, folder / "clean-parallel.jsonl")
            parallel["clean"] = {"wall_s": round(wall, 2), "mb_per_s_wall": round(size_mb / wall, 2),
                                 "speedup_vs_one_process_wall": round(timings["clean"] / wall, 2),
                                 "cpu_s_all_processes": round(cpu_all, 2),
                                 "output_and_log_identical": same("clean-parallel.jsonl", "clean.jsonl")
                                 and same("clean-parallel.log.jsonl", "clean.log.jsonl")}
            wall, cpu_all = timed(check_file, folder / "clean.jsonl", folder / "report-parallel")
            parallel["check"] = {"wall_s": round(wall, 2), "mb_per_s_wall": round(size_mb / wall, 2),
                                 "speedup_vs_one_process_wall": round(timings["check"] / wall, 2),
                                 "cpu_s_all_processes": round(cpu_all, 2),
                                 "problems_log_identical": same("report-parallel/problems.jsonl",
                                                                "report/problems.jsonl")}
            both = parallel["clean"]["wall_s"] + parallel["check"]["wall_s"]
            parallel["clean_plus_check"] = {"wall_s": round(both, 2), "mb_per_s_wall": round(size_mb / both, 2)}

    def rate(names: list[str]) -> dict:
        wall, cpu_s = sum(timings[n] for n in names), sum(cpu[n] for n in names)
        # per core = per CPU-second of this single-threaded process: robust to other load on the machine
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu_s, 2), "records_per_s": round(records / cpu_s),
                "mb_per_s_per_core": round(size_mb / cpu_s, 2)}

    print(json.dumps({
        "input": {"mb": round(size_mb, 1), "records": records},
        "cores_used": 1, "cpu_count": os.cpu_count(),
        "steps": {name: rate([name]) for name in timings},
        "clean_plus_check": rate(["clean", "check"]),
        "clean_plus_check_plus_dedupe": rate(list(timings)),
        "plain_path": plain,
        "on_several_processes": parallel,
        "peak_rss_mb_after": {k: round(v) for k, v in rss_after.items()},
        "counts": {"clean_dropped": clean["dropped"], "clean_changed": clean["changed"],
                   "pii_masked": clean["pii"]["found"], "check_records_with_problems": report["records_with_problems"],
                   "exact_duplicates": dedupe["dropped_by_rule"].get("exact_duplicate", 0)},
    }, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
