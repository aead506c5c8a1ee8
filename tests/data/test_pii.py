"""Planted personal data in Chinese, English and mixed records is found, verified and masked consistently."""

import re

from r1tune.config import CheckConfig, CleanConfig, PiiConfig, PiiPattern
from r1tune.data.clean import build_plan, clean_record
from r1tune.data.pii import Masker, compile_patterns, find_pii, id_card_valid, luhn_valid
from r1tune.data.quality import check_file

VALID_ID = "11010519491231002X"  # checksum character X is correct for these 17 digits
VALID_ID_2 = "44030419900307123X"
CARD = "6222021234567890128"  # 19-digit UnionPay-style number that passes Luhn
VISA = "4111111111111111"


def kinds(text, **kw):
    return [(m.kind, m.value) for m in find_pii(text, **kw)]


def test_resident_id_checksum_and_birth_date_are_verified():
    assert id_card_valid(VALID_ID) and id_card_valid(VALID_ID.lower()) and id_card_valid(VALID_ID_2)
    assert not id_card_valid(VALID_ID[:-1] + "5")  # wrong check character
    assert not id_card_valid("110105194913310027")  # month 13
    assert not id_card_valid("110105194902300020")  # 30 February
    assert not id_card_valid(VALID_ID[:17])


def test_luhn():
    assert luhn_valid(CARD) and luhn_valid(VISA)
    assert not luhn_valid(CARD[:-1] + "9")
    assert not luhn_valid("0000000000000000")


def test_each_kind_is_found_in_chinese_english_and_mixed_text():
    assert kinds(f"患者身份证号{VALID_ID}，联系电话13812345678。") == [("id_card", VALID_ID), ("phone", "13812345678")]
    assert kinds(f"Card {VISA} was charged; email jane.doe@example.co.uk or call +44 20 7946 0958.") == [
        ("bank_card", VISA), ("email", "jane.doe@example.co.uk"), ("phone", "+44 20 7946 0958")]
    assert kinds("客户的银行卡6222 0212 3456 7890 128已冻结，call (415) 555-0132") == [
        ("bank_card", "6222 0212 3456 7890 128"), ("phone", "(415) 555-0132")]
    assert kinds("座机010-62751234，手机+86 139 1234 5678") == [("phone", "010-62751234"), ("phone", "+86 139 1234 5678")]


def test_numbers_that_fail_verification_are_left_alone():
    text = ("营收1476900000000元，订单号123456789012345678，金额1234567890123456.78元，"
            f"身份证校验错误{VALID_ID[:-1]}5，卡号{CARD[:-1]}9，增长12.3%")
    assert find_pii(text) == []


def test_masking_is_consistent_within_a_record_across_formats_and_fields():
    plan = build_plan(CleanConfig())
    record = {"instruction": "客户13812345678投诉，请回拨138-1234-5678或+86 13812345678。",
              "input": "另一号码13987654321；邮箱 Zhang@Example.com 与 zhang@example.com",
              "output": "已回拨13812345678。"}
    result = clean_record(record, plan)
    r = result.record
    assert r["instruction"] == "客户[PHONE_1]投诉，请回拨[PHONE_1]或[PHONE_1]。"
    assert r["input"] == "另一号码[PHONE_2]；邮箱 [EMAIL_1] 与 [EMAIL_1]"
    assert r["output"] == "已回拨[PHONE_1]。"
    assert result.pii == {"phone": 5, "email": 2}
    # the next record starts its own numbering
    again = clean_record({"text": "请拨13987654321"}, plan)
    assert again.record["text"] == "请拨[PHONE_1]"


def test_names_from_a_declared_field_and_user_patterns_are_masked_everywhere():
    cfg = CleanConfig(pii=PiiConfig(name_fields=["patient"], patterns=[PiiPattern(name="account_id", pattern=r"ACC\d{8}")]))
    result = clean_record({"patient": "王小明", "text": "王小明（账户ACC20240001）复诊，王小明自述好转；ACC20240002为家属账户。"},
                          build_plan(cfg))
    assert result.record["patient"] == "[NAME_1]"
    assert result.record["text"] == "[NAME_1]（账户[ACCOUNT_ID_1]）复诊，[NAME_1]自述好转；[ACCOUNT_ID_2]为家属账户。"
    assert result.pii == {"name": 3, "account_id": 2}


def test_masker_placeholder_numbering_and_kinds_filter():
    masker = Masker(kinds=["email"])
    assert masker.mask("a@x.com b@y.org a@x.com 13812345678") == "[EMAIL_1] [EMAIL_2] [EMAIL_1] 13812345678"
    assert kinds("13812345678 a@x.com", kinds=["phone"]) == [("phone", "13812345678")]
    assert kinds("ACC12345678", patterns=compile_patterns({"account_id": r"ACC\d{8}"})) == [("account_id", "ACC12345678")]


def test_counts_per_kind_go_into_the_quality_report(tmp_path, jsonl):
    data = jsonl(tmp_path / "d.jsonl", [
        {"instruction": f"核实身份证{VALID_ID}", "output": "好的，已核实。"},
        {"instruction": "请回电13812345678或13987654321", "output": "好的，稍后回电。"},
        {"instruction": f"Refund card {VISA}", "output": "Done, refunded."},
        {"instruction": "无个人信息的问题？", "output": "没有个人信息。"},
    ])
    report = check_file(data, tmp_path / "report", CheckConfig(thresholds={"pii": 0.0}))
    assert report["personal_data"] == {"phone": 2, "id_card": 1, "bank_card": 1}
    assert report["sections"]["personal data"]["pii"]["count"] == 3
    assert report["passed"] is False
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert re.search(r"\| phone \| 2 \|", markdown) and "| bank_card | 1 |" in markdown
