"""Write the bundled quickstart dataset: financial news sentiment in Chinese, English and both.

    python tools/make_finsent.py   # rewrites src/r1tune/resources/datasets/finsent/{train,test}.jsonl

Written for this project (no third-party text). Each record is alpaca form with a `label`; about 40% carry
a short reasoning trace, the way a team that distilled traces from a bigger model would have them.
Deterministic: the same files every time.
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/r1tune/resources/datasets/finsent"
COMPANIES_ZH = ["贵州茅台", "宁德时代", "招商银行", "中国平安", "比亚迪", "隆基绿能", "恒瑞医药", "美的集团",
                "万科A", "中信证券", "海天味业", "药明康德", "紫金矿业", "京东方", "格力电器", "长江电力"]
COMPANIES_EN = ["Apple", "Tesla", "JPMorgan", "Nvidia", "Pfizer", "Boeing", "Alibaba", "Tencent", "HSBC",
                "Siemens", "Toyota", "Shell", "Intel", "Moderna", "Walmart", "Netflix"]
TEMPLATES = {
    "positive": [
        "{zh}一季度净利润同比增长{p}%，超出市场预期", "{zh}获得{n}亿元大额订单，订单储备创新高",
        "{zh}宣布回购{n}亿元股份，彰显发展信心", "分析师上调{zh}评级至买入，目标价上调{p}%",
        "{zh}营收3.{d}亿元，同比增长{p}.5%，毛利率提升", "{en} beats earnings estimates as revenue jumps {p}%",
        "{en} raises full-year guidance after strong quarter", "{en} wins ${n} billion government contract",
        "{en} shares surge {p}% on record profit", "{en} Q3 营收同比增长 {p}%, beats consensus",
        "{en} 上调全年业绩指引, margin expands", "{zh} reports record profit, 利润大增 {p}%",
    ],
    "negative": [
        "{zh}一季度净利润同比下降{p}%，低于预期", "{zh}因信息披露违规遭证监会立案调查",
        "{zh}亏损扩大至{n}亿元，现金流承压", "分析师下调{zh}评级至卖出", "{zh}大股东减持{p}%股份，股价跌停",
        "{en} misses estimates as sales fall {p}%", "{en} cuts guidance amid weak demand",
        "{en} recalls {n} million vehicles over safety defect", "{en} shares plunge {p}% after profit warning",
        "{en} 净利润同比下滑 {p}%, misses forecasts", "{en} 遭监管调查, stock tumbles", "{zh} posts loss, 业绩大幅下滑 {p}%",
    ],
    "neutral": [
        "{zh}将于{m}月{d}日召开年度股东大会", "{zh}发布董事会换届公告", "{zh}披露{m}月经营数据，与上月持平",
        "{zh}更换会计师事务所，审计机构变更", "{zh}召开业绩说明会，介绍公司经营情况",
        "{en} to hold annual shareholder meeting on {m}/{d}", "{en} appoints new chief financial officer",
        "{en} schedules earnings call for next week", "{en} completes previously announced name change",
        "{en} 将于{m}月{d}日发布季度报告, no guidance change", "{en} 召开投资者交流会, business as usual",
        "{zh} files routine annual report, 经营稳定",
    ],
}
TRACES = {
    "positive": ["新闻提到业绩增长或利好事件，对股价是正面信号。", "Good news: growth or upgrade, so the tone is positive."],
    "negative": ["新闻提到业绩下滑或监管风险，对股价是负面信号。", "Bad news: decline or risk, so the tone is negative."],
    "neutral": ["新闻只是例行公告，没有明显利好或利空。", "Routine announcement, no clear good or bad news."],
}
INSTRUCTION = "判断这条财经新闻的情感倾向，只回答 positive、negative 或 neutral。"


def make(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("positive", "negative", "neutral")[i % 3]
        text = rng.choice(TEMPLATES[label]).format(
            zh=rng.choice(COMPANIES_ZH), en=rng.choice(COMPANIES_EN), p=rng.randint(3, 80), n=rng.randint(2, 90),
            m=rng.randint(1, 12), d=rng.randint(1, 28))
        row = {"id": f"finsent-{seed}-{i:04d}", "instruction": INSTRUCTION, "input": text, "output": label, "label": label}
        if rng.random() < 0.4:
            row["reasoning"] = rng.choice(TRACES[label])
        rows.append(row)
    rng.shuffle(rows)
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 900, 1), ("test", 150, 2)):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in make(n, seed):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
