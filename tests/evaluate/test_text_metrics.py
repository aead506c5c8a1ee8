"""Generation metrics on Chinese, English and mixed text, checked against hand computations and sacrebleu."""

import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from r1tune.evaluate import text_metrics as tm


def test_rouge_on_chinese_matches_a_hand_computation():
    # characters: 患 者 头 痛 两 天 vs 患 者 头 痛 三 天 → 5 of 6 unigrams, 3 of 5 bigrams, LCS 5
    scores = tm.rouge_scores(["患者头痛两天"], ["患者头痛三天"])
    assert abs(scores["rouge1"][0] - 5 / 6) < 1e-9
    assert abs(scores["rouge2"][0] - 3 / 5) < 1e-9
    assert abs(scores["rougeL"][0] - 5 / 6) < 1e-9
    # why our tokenizer exists: rouge-score's default one keeps only [a-z0-9], so Chinese scores nothing
    assert RougeScorer(["rouge1"]).score("患者头痛三天", "患者头痛两天")["rouge1"].fmeasure == 0.0


def test_rouge_with_jieba_words_and_mixed_text():
    scores = tm.rouge_scores(["患者头痛两天"], ["患者头痛三天"], segmentation="jieba")
    assert abs(scores["rouge1"][0] - 2 / 3) < 1e-9  # 患者 / 头痛 / 两天 vs 患者 / 头痛 / 三天
    assert tm.CjkTokenizer().tokenize("Q3 营收 beats, 增长12%") == ["q3", "营", "收", "beats", "增", "长", "12"]
    mixed = tm.rouge_scores(["Knee pain 三天"], ["knee pain 三天了"])
    assert abs(mixed["rouge1"][0] - 2 * 4 / (4 + 5)) < 1e-9  # 4 shared of 4 vs 5 tokens


def test_corpus_bleu_from_per_sample_statistics_equals_sacrebleu():
    hyps = ["患者头痛三天，伴恶心", "病人发热两天", "右膝肿胀"]
    refs = ["患者头痛三天，伴有恶心", "病人发烧两天", "右膝肿胀疼痛"]
    stats, tokenize = tm.bleu_item_stats(hyps, refs)
    assert tokenize == "zh" and stats.shape == (3, 10)
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    assert abs(tm.bleu_from_stats(stats.sum(axis=0), tokenize) - expected) < 1e-9
    # without the Chinese tokenizer a whole sentence is one "word": 13a gives no credit at all
    assert sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score < 1 < expected
    english, tokenize = tm.bleu_item_stats(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert tokenize == "13a"
    assert abs(tm.bleu_from_stats(english.sum(axis=0)) - sacrebleu.corpus_bleu(["the cat sat on the mat"],
                                                                             [["the cat sat on a mat"]]).score) < 1e-9


def test_chrf_from_per_sample_statistics_equals_sacrebleu():
    hyps, refs = ["患者头痛三天", "knee pain, 3 days"], ["患者头痛三天了", "knee pain for 3 days"]
    stats = tm.chrf_item_stats(hyps, refs)
    assert abs(tm.chrf_from_stats(stats.sum(axis=0)) - sacrebleu.corpus_chrf(hyps, [refs]).score) < 1e-9


def test_bertscore_runs_offline_on_the_bundled_encoder():
    scores = tm.bertscore_f1(["the patient has a headache", "the patient has a headache", "", "stock prices fell"],
                             ["the patient has a headache", "the patient reports head pain", "anything",
                              "the patient has a headache"])
    assert scores[0] > 0.99
    assert scores[0] > scores[1] > scores[3]
    assert scores[2] == 0.0  # empty prediction: no spurious credit


def test_language_detection():
    assert tm.language_of("患者头痛三天") == "zh"
    assert tm.language_of("the patient has a headache") == "en"
    assert tm.language_of("医生，我 knee pain 已经 3 days 了") == "mixed"
    assert tm.language_of("391") == "unknown"
