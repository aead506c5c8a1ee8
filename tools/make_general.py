"""Write the bundled general set: short verifiable questions in Chinese and English, with exact answers.

    python tools/make_general.py   # rewrites src/r1tune/resources/datasets/general/general.jsonl

`r1tune evaluate` asks every compared model these questions next to the domain test set, so a team sees
what tuning cost outside its domain (forgetting) next to what it gained inside. Arithmetic, unit
conversion, capitals, simple logic and common facts; written for this project. Each record is alpaca form
plus `answer_type` (number: the last number in the answer must equal `output`; text: `output` or one of
`aliases` must appear in the answer and none of `distractors` may).
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/r1tune/resources/datasets/general"
ZH_SUFFIX = "请直接给出最终答案。"
EN_SUFFIX = " Give only the final answer."

# (language, kind, question, answer, aliases, distractors)
QUESTIONS = [
    # arithmetic
    ("en", "arithmetic", "What is 17 × 23?", "391", [], []),
    ("zh", "arithmetic", "计算 144 ÷ 12 等于多少？", "12", [], []),
    ("en", "arithmetic", "What is 15% of 240?", "36", [], []),
    ("zh", "arithmetic", "2 的 10 次方是多少？", "1024", [], []),
    ("en", "arithmetic", "What is 1000 − 387?", "613", [], []),
    ("zh", "arithmetic", "计算 (8 + 7) × 6。", "90", [], []),
    ("en", "arithmetic", "What is the square root of 169?", "13", [], []),
    ("zh", "arithmetic", "一个数的 3 倍是 51，这个数是多少？", "17", [], []),
    ("en", "arithmetic", "A shirt costs 80 dollars and is 25% off. What is the sale price in dollars?", "60", [], []),
    ("zh", "arithmetic", "小王有 5 个苹果，吃掉 2 个，又买了 4 个，现在有几个苹果？", "7", [], []),
    ("en", "arithmetic", "A train travels at 60 km per hour for 2.5 hours. How many km does it travel?", "150", [], []),
    ("zh", "arithmetic", "计算 3.5 + 4.25 的结果。", "7.75", [], []),
    # unit conversion
    ("en", "units", "How many centimeters are in 2.5 meters?", "250", [], []),
    ("zh", "units", "1 公斤等于多少克？", "1000", [], []),
    ("en", "units", "How many minutes are in 3.5 hours?", "210", [], []),
    ("zh", "units", "100 摄氏度等于多少华氏度？", "212", [], []),
    ("en", "units", "How many seconds are in one day?", "86400", [], []),
    ("zh", "units", "5 千米等于多少米？", "5000", [], []),
    ("en", "units", "How many inches are in 3 feet?", "36", [], []),
    ("zh", "units", "1 小时 15 分钟一共是多少分钟？", "75", [], []),
    ("en", "units", "How many grams are in 2.2 kilograms?", "2200", [], []),
    ("zh", "units", "3 平方米等于多少平方厘米？", "30000", [], []),
    # capitals
    ("en", "capitals", "What is the capital of France?", "Paris", ["巴黎"], []),
    ("zh", "capitals", "日本的首都是哪座城市？", "东京", ["Tokyo"], []),
    ("en", "capitals", "What is the capital of Australia?", "Canberra", ["堪培拉"], ["Sydney"]),
    ("zh", "capitals", "加拿大的首都是哪座城市？", "渥太华", ["Ottawa"], ["多伦多"]),
    ("en", "capitals", "What is the capital of Italy?", "Rome", ["罗马"], []),
    ("zh", "capitals", "德国的首都是哪座城市？", "柏林", ["Berlin"], []),
    ("en", "capitals", "What is the capital of Egypt?", "Cairo", ["开罗"], []),
    ("zh", "capitals", "韩国的首都是哪座城市？", "首尔", ["Seoul", "汉城"], []),
    ("en", "capitals", "What is the capital of Canada?", "Ottawa", ["渥太华"], ["Toronto"]),
    ("zh", "capitals", "英国的首都是哪座城市？", "伦敦", ["London"], []),
    # logic
    ("en", "logic", "All cats are animals and Tom is a cat. Is Tom an animal? Answer yes or no.", "yes", ["是"], ["no"]),
    ("zh", "logic", "小明比小红高，小红比小刚高。三人中谁最矮？", "小刚", [], ["小明", "小红"]),
    ("en", "logic", "What number comes next: 2, 4, 8, 16, ?", "32", [], []),
    ("zh", "logic", "今天是星期五，两天后是星期几？", "星期日", ["星期天", "周日", "Sunday"], ["星期六", "星期一"]),
    ("en", "logic", "If today is Monday, what day of the week is it in 3 days?", "Thursday", ["星期四"],
     ["Tuesday", "Wednesday", "Friday"]),
    ("zh", "logic", "9 是奇数还是偶数？", "奇数", ["odd"], ["偶数"]),
    ("en", "logic", "Which is heavier: 1 kg of iron or 1 kg of cotton? Answer iron, cotton or same.", "same",
     ["equal", "neither", "一样"], ["iron", "cotton"]),
    ("zh", "logic", "一个正方形有几条边？", "4", [], []),
    ("en", "logic", "Is 91 a prime number? Answer yes or no.", "no", ["不是"], ["yes"]),
    ("zh", "logic", "数列 1, 1, 2, 3, 5, 8 的下一个数是多少？", "13", [], []),
    # common facts
    ("en", "facts", "How many legs does a spider have?", "8", [], []),
    ("zh", "facts", "在标准大气压下，水的沸点是多少摄氏度？", "100", [], []),
    ("en", "facts", "What is the largest planet in the solar system?", "Jupiter", ["木星"], []),
    ("zh", "facts", "中国最长的河流是哪条？", "长江", ["扬子江", "Yangtze"], ["黄河"]),
    ("en", "facts", "How many continents are there on Earth?", "7", [], []),
    ("zh", "facts", "一年有多少个月？", "12", [], []),
    ("en", "facts", "What is the chemical symbol for gold?", "Au", ["金"], ["Ag"]),
    ("zh", "facts", "三角形的内角和是多少度？", "180", [], []),
    ("en", "facts", "How many days are in a leap year?", "366", [], []),
    ("zh", "facts", "一周有几天？", "7", [], []),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "general.jsonl", "w", encoding="utf-8") as f:
        for i, (lang, kind, question, answer, aliases, distractors) in enumerate(QUESTIONS):
            row = {"id": f"general-{i:03d}", "instruction": question + (ZH_SUFFIX if lang == "zh" else EN_SUFFIX),
                   "output": answer, "answer_type": "number" if answer.replace(".", "").isdigit() else "text",
                   "aliases": aliases, "distractors": distractors, "lang": lang, "kind": kind}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
