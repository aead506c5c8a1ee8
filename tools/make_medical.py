"""Write the bundled medical-records dataset: symptom descriptions → structured record text.

    python tools/make_medical.py   # rewrites src/r1tune/resources/datasets/medical/{train,test}.jsonl

Written for this project (no third-party or patient text; every description is generated from the tables
below). A patient describes a complaint in Chinese, English or a mix of both, colloquially and in several
phrasings; the answer is a one-line record with five fields, in Chinese for Chinese and mixed input and in
English for English input:

    主诉：头痛；部位：前额；持续时间：3天；伴随症状：恶心、失眠；初步建议：神经内科就诊，注意休息
    Chief complaint: headache; Location: forehead; Duration: 3 days; Associated symptoms: nausea; Advice: …

Everything but the advice is in the description; the advice follows from the complaint, so a model has
to learn it. 90% of the records carry a short reasoning trace. Deterministic: the same files every
time. The records are synthetic teaching data, not medical advice.
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/r1tune/resources/datasets/medical"

INSTRUCTION_ZH = "根据患者的症状描述，整理成结构化病历记录（主诉；部位；持续时间；伴随症状；初步建议）。"
INSTRUCTION_EN = ("Turn the patient's symptom description into a structured record "
                  "(chief complaint; location; duration; associated symptoms; advice).")

# complaint: (zh name, en name, zh colloquial phrase, en colloquial noun phrase, [(zh location, en location)],
#             [(zh associated, en associated)], (zh advice, en advice))
COMPLAINTS = [
    ("头痛", "headache", "头疼", "a headache",
     [("前额", "forehead"), ("双侧太阳穴", "both temples"), ("后脑勺", "back of the head")],
     [("恶心", "nausea"), ("畏光", "sensitivity to light"), ("失眠", "poor sleep")],
     ("神经内科就诊，注意休息", "neurology clinic, rest")),
    ("咽痛", "sore throat", "嗓子疼", "a sore throat",
     [("咽喉", "throat")],
     [("发热", "fever"), ("咳嗽", "cough"), ("吞咽困难", "difficulty swallowing")],
     ("耳鼻喉科就诊，多喝水", "ENT clinic, drink plenty of fluids")),
    ("胸痛", "chest pain", "胸口疼", "chest pain",
     [("胸骨后", "behind the breastbone"), ("左胸", "left chest")],
     [("气短", "shortness of breath"), ("出汗", "sweating"), ("心悸", "palpitations")],
     ("心内科急诊，立即就医", "cardiology emergency, seek care now")),
    ("腹痛", "abdominal pain", "肚子疼", "stomach pain",
     [("上腹部", "upper abdomen"), ("右下腹", "lower right abdomen"), ("脐周", "around the navel")],
     [("腹泻", "diarrhea"), ("呕吐", "vomiting"), ("食欲下降", "poor appetite")],
     ("消化内科就诊，清淡饮食", "gastroenterology clinic, light diet")),
    ("咳嗽", "cough", "咳嗽", "a bad cough",
     [("胸部", "chest")],
     [("咳痰", "phlegm"), ("发热", "fever"), ("气喘", "wheezing")],
     ("呼吸内科就诊，避免受凉", "respiratory clinic, keep warm")),
    ("腰痛", "low back pain", "腰疼", "low back pain",
     [("腰部", "lower back"), ("左侧腰部", "left lower back")],
     [("下肢麻木", "leg numbness"), ("活动受限", "limited movement")],
     ("骨科就诊，避免久坐", "orthopedics clinic, avoid long sitting")),
    ("皮疹", "rash", "起疹子", "a rash",
     [("手臂", "arms"), ("背部", "back"), ("面部", "face")],
     [("瘙痒", "itching"), ("发红", "redness"), ("脱皮", "peeling")],
     ("皮肤科就诊，避免抓挠", "dermatology clinic, avoid scratching")),
    ("膝关节痛", "knee pain", "膝盖疼", "knee pain",
     [("左膝", "left knee"), ("右膝", "right knee")],
     [("肿胀", "swelling"), ("活动受限", "limited movement")],
     ("骨科就诊，减少爬楼", "orthopedics clinic, fewer stairs")),
    ("头晕", "dizziness", "头晕", "dizzy spells",
     [("头部", "head")],
     [("耳鸣", "ringing in the ears"), ("乏力", "fatigue"), ("恶心", "nausea")],
     ("神经内科就诊，起身放慢", "neurology clinic, stand up slowly")),
    ("发热", "fever", "发烧", "a fever",
     [("全身", "whole body")],
     [("寒战", "chills"), ("乏力", "fatigue"), ("肌肉酸痛", "muscle aches")],
     ("发热门诊就诊，多喝水", "fever clinic, drink plenty of fluids")),
    ("牙痛", "toothache", "牙疼", "a toothache",
     [("右下磨牙", "lower right molar"), ("左上牙", "upper left tooth")],
     [("牙龈肿胀", "swollen gums"), ("冷刺激痛", "pain with cold drinks")],
     ("口腔科就诊，保持口腔清洁", "dental clinic, keep the mouth clean")),
    ("眼痛", "eye pain", "眼睛疼", "eye pain",
     [("左眼", "left eye"), ("右眼", "right eye")],
     [("流泪", "tearing"), ("视物模糊", "blurred vision"), ("发红", "redness")],
     ("眼科就诊，避免揉眼", "eye clinic, do not rub the eyes")),
]
# Most records carry a short reasoning trace, as data distilled from a bigger R1 would: the model learns to
# think, close the think block and answer (trace-less samples do not train the closing tag, see README).
TRACE_SHARE = 0.9
UNITS = [("天", "day"), ("周", "week"), ("个月", "month"), ("小时", "hour")]

ZH_TEMPLATES = [
    "医生您好，我{loc}{verb}已经{dur}了，还有点{assoc}。",
    "最近{dur}一直{verb}，主要在{loc}，同时{assoc}。",
    "我{verb}，位置在{loc}，大概持续{dur}，伴有{assoc}。",
    "{loc}{verb}{dur}了，另外感觉{assoc}，怎么办？",
    "这{dur}{loc}老是{verb}，而且{assoc}，很难受。",
]
EN_TEMPLATES = [
    "Hi doctor, I have had {phrase} in my {loc} for {dur}, and also {assoc}.",
    "For the past {dur} I've had {phrase}, mostly in the {loc}, with {assoc}.",
    "I've had {phrase} ({loc}) for about {dur}. There is also {assoc}.",
    "{Phrase} in the {loc} for {dur}, plus {assoc}. What should I do?",
]
MIXED_TEMPLATES = [
    "医生，我 {en_verb} 已经 {en_dur} 了，主要在{loc}，还有点{assoc}。",
    "Doctor 您好，最近{dur}一直{verb}, mostly in the {en_loc}，同时{assoc}。",
    "我{loc}{verb}, about {en_dur}，also {en_assoc}，需要看哪个科？",
]


def duration(rng: random.Random) -> tuple[str, str, str]:
    """(zh text, en text, record value zh) e.g. ('3天', '3 days', '3天')."""
    zh_unit, en_unit = rng.choice(UNITS)
    n = rng.randint(2, 12) if zh_unit == "小时" else rng.randint(1, 6)
    en = f"{n} {en_unit}{'s' if n > 1 else ''}"
    return f"{n}{zh_unit}", en, f"{n}{zh_unit}"


def make_record(rng: random.Random, i: int, seed: int, lang: str) -> dict:
    zh_name, en_name, zh_verb, en_phrase, locations, associated, advice = rng.choice(COMPLAINTS)
    loc_zh, loc_en = rng.choice(locations)
    assoc = rng.sample(associated, k=rng.randint(1, min(2, len(associated))))
    dur_zh, dur_en, _ = duration(rng)
    assoc_zh, assoc_en = "、".join(a[0] for a in assoc), ", ".join(a[1] for a in assoc)
    if lang == "en":
        text = rng.choice(EN_TEMPLATES).format(phrase=en_phrase, Phrase=en_phrase[0].upper() + en_phrase[1:],
                                                loc=loc_en, dur=dur_en, assoc=" and ".join(a[1] for a in assoc))
        output = (f"Chief complaint: {en_name}; Location: {loc_en}; Duration: {dur_en}; "
                  f"Associated symptoms: {assoc_en}; Advice: {advice[1]}")
        instruction = INSTRUCTION_EN
        trace = f"{en_name}, {dur_en}, with {assoc_en}: {advice[1].split(',')[0]}."
    else:
        if lang == "zh":
            text = rng.choice(ZH_TEMPLATES).format(verb=zh_verb, loc=loc_zh, dur=dur_zh, assoc=assoc_zh)
        else:
            text = rng.choice(MIXED_TEMPLATES).format(
                verb=zh_verb, loc=loc_zh, dur=dur_zh, assoc=assoc_zh, en_verb=en_name, en_dur=dur_en,
                en_loc=loc_en, en_assoc=" and ".join(a[1] for a in assoc))
        output = f"主诉：{zh_name}；部位：{loc_zh}；持续时间：{dur_zh}；伴随症状：{assoc_zh}；初步建议：{advice[0]}"
        instruction = INSTRUCTION_ZH
        trace = f"{zh_name}，{dur_zh}，伴{assoc_zh}：{advice[0].split('，')[0]}。"
    row = {"id": f"medical-{seed}-{i:04d}", "instruction": instruction, "input": text, "output": output,
           "lang": lang, "complaint": en_name}
    if rng.random() < TRACE_SHARE:
        row["reasoning"] = trace
    return row


def make(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    langs = ["zh", "zh", "en", "en", "mixed"]  # 40% Chinese, 40% English, 20% mixed
    rows = [make_record(rng, i, seed, langs[i % len(langs)]) for i in range(n)]
    rng.shuffle(rows)
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 420, 1), ("test", 80, 2)):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in make(n, seed):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
