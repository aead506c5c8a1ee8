"""Turn records in alpaca, ShareGPT or OpenAI `messages` form into one chat sample shape.

    samples, skipped = load_samples("train.jsonl", fmt="auto", on_error="skip")

A `ChatSample` is a list of messages whose last one is the assistant answer to train on, plus that
answer's reasoning trace (from a `reasoning` / `reasoning_content` field, or a `<think>…</think>` block
inside the answer). Every problem is a `DataError` naming file, line and field.

Columns that match no format (a CSV with 指令 / 输入 / 输出 headers) are named in the error, with the
mapping that would read them (`data.columns: {instruction: 指令, input: 输入, output: 输出}`); the reader
applies such a mapping before the format is detected (see io.read_records). Other parts ask the same
questions through `detect_format`, `untrainable_reason` and `columns_problem`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from r1tune.data.io import Location, read_records
from r1tune.errors import DataError

FORMATS = ("alpaca", "sharegpt", "messages")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "bot": "assistant", "system": "system"}
MESSAGE_ROLES = ("system", "user", "assistant")
REASONING_KEYS = ("reasoning", "reasoning_content")


@dataclass
class ChatSample:
    messages: list[dict]  # {"role", "content"}; the last is the assistant answer (reasoning removed)
    reasoning: str | None = None  # the final answer's trace, None when the sample has none
    source: str = ""  # "file:line", for error messages and provenance
    meta: dict = field(default_factory=dict)  # other fields of the record (id, label, …), kept for evaluation

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt_messages(self) -> list[dict]:
        return self.messages[:-1]


# What a file's columns are often called, for the mapping an error suggests (compared in lower case).
COLUMN_NAMES = {
    "instruction": ("instruction", "指令", "问题", "提问", "问", "题目", "任务", "指示", "question", "query", "prompt",
                    "ask", "q"),
    "input": ("input", "输入", "上下文", "背景", "文本", "原文", "内容", "context", "text", "content", "document",
              "passage"),
    "output": ("output", "输出", "回答", "答案", "回复", "答", "结果", "标签", "类别", "answer", "response",
               "completion", "target", "reply", "label", "a"),
}
TABULAR = (".csv", ".tsv", ".parquet")  # one header: every record has the same columns


def detect_format(record: dict) -> str | None:
    """Which format a record is in ("alpaca", "sharegpt", "messages"), or None when its fields match none."""
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    return None


def split_think(text: str) -> tuple[str | None, str]:
    """Split an answer written as `<think>R</think>A` (or `R</think>A`) into (R, A); no `</think>` → (None, text)."""
    if "</think>" not in text:
        return None, text
    head, _, answer = text.rpartition("</think>")
    reasoning = head.split("<think>", 1)[1] if "<think>" in head else head
    return reasoning.strip("\n"), answer.lstrip("\n")


def columns_problem(columns, noun: str = "columns") -> str:
    """Why records with these columns (or fields) cannot train, and the `columns` mapping that would read
    them, guessed from common names (指令 → instruction, 回答 → output, …)."""
    columns = [str(c) for c in columns]
    mapping = {known: column for known, column in suggested_columns(columns).items() if known != column}
    if mapping:
        yaml_map = "{" + ", ".join(f"{known}: {column}" for known, column in mapping.items()) + "}"
        flag = ",".join(f"{known}={column}" for known, column in mapping.items())
    else:
        yaml_map, flag = "{instruction: COLUMN, output: COLUMN}", "instruction=COLUMN,output=COLUMN"
    return (f"{noun} {', '.join(columns) or '(none)'} match no known format (alpaca: instruction/input/output, "
            f"ShareGPT: conversations, OpenAI: messages); map them with data.columns: {yaml_map} "
            f"(`columns:` in a prepare config, or --columns {flag})")


def suggested_columns(columns: list[str]) -> dict[str, str]:
    """{instruction, input, output: the column that looks like it}; {} when no question and answer are found."""
    by_name = {c.strip().lower(): c for c in reversed(columns)}
    found = {}
    for known, names in COLUMN_NAMES.items():
        column = next((by_name[n] for n in names if n in by_name and by_name[n] not in found.values()), None)
        if column is not None:
            found[known] = column
    if "instruction" not in found and "input" in found:  # text + label: the text is the instruction
        found["instruction"] = found.pop("input")
    if "instruction" not in found or "output" not in found:
        return {}
    return {known: found[known] for known in ("instruction", "input", "output") if known in found}


def unknown_columns_error(path: str | Path, columns) -> DataError:
    """The file-level error of a file whose columns match no format."""
    return DataError(str(path), None, None, columns_problem(columns))


def untrainable_reason(record: dict, fmt: str = "auto") -> str | None:
    """Why a record cannot become a training sample ("field: problem"), or None when it can."""
    try:
        to_sample(record, Location("", 0), fmt)
    except DataError as e:
        return f"{e.field}: {e.problem}" if e.field else e.problem
    return None


def to_sample(record: dict, loc: Location, fmt: str = "auto") -> ChatSample:
    """One record → ChatSample, or a DataError naming the field that is wrong."""
    if fmt == "auto":
        fmt = detect_format(record)
        if fmt is None:
            raise loc.error(None, f"cannot tell the record format: {columns_problem(record, 'fields')}")
    if fmt not in FORMATS:
        raise loc.error(None, f"unknown data format '{fmt}' (one of {', '.join(FORMATS)})")
    messages, reasoning = {"alpaca": _alpaca, "sharegpt": _sharegpt, "messages": _messages}[fmt](record, loc)
    if not messages or messages[-1]["role"] != "assistant":
        raise loc.error("messages" if fmt != "alpaca" else "output",
                        "the last message must be the assistant's answer to train on")
    if not any(m["role"] == "user" for m in messages):
        raise loc.error("messages", "no user message")
    inline_reasoning, answer = split_think(messages[-1]["content"])
    if inline_reasoning is not None:
        if reasoning is not None and reasoning.strip() != inline_reasoning.strip():
            raise loc.error("reasoning", "both a reasoning field and a different <think> block in the answer")
        reasoning = inline_reasoning
        messages[-1] = {"role": "assistant", "content": answer}
    if not messages[-1]["content"].strip():
        raise loc.error("output" if fmt == "alpaca" else "content", "empty answer")
    known = {"alpaca": {"instruction", "input", "output", "system", "history"}, "sharegpt": {"conversations", "system"},
             "messages": {"messages"}}[fmt] | set(REASONING_KEYS)
    meta = {k: v for k, v in record.items() if k not in known}
    return ChatSample(messages=messages, reasoning=reasoning or None, source=str(loc), meta=meta)


def _text(value, loc: Location, name: str, required: bool = True) -> str:
    if value is None:
        if required:
            raise loc.error(name, "missing")
        return ""
    if isinstance(value, list):  # OpenAI content parts: the stock template fails on them, so flatten here
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise loc.error(f"{name}[{i}]", "only text content parts are supported")
        value = "".join(parts)
    if not isinstance(value, str):
        raise loc.error(name, f"wrong type: expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise loc.error(name, "empty")
    return value


def _reasoning_field(record: dict, loc: Location, prefix: str = "") -> str | None:
    for key in REASONING_KEYS:
        if record.get(key) not in (None, ""):
            return _text(record[key], loc, prefix + key)
    return None


def _alpaca(record: dict, loc: Location):
    for key in ("instruction", "output"):
        if key not in record:
            raise loc.error(key, "missing")
    instruction = _text(record["instruction"], loc, "instruction")
    extra = _text(record.get("input"), loc, "input", required=False)
    output = _text(record["output"], loc, "output")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": _text(record["system"], loc, "system")})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise loc.error("history", "wrong type: expected a list of [question, answer] pairs, "
                                   f"got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise loc.error(f"history[{i}]", "expected a [question, answer] pair")
        messages += [{"role": "user", "content": _text(pair[0], loc, f"history[{i}][0]")},
                     {"role": "assistant", "content": _text(pair[1], loc, f"history[{i}][1]")}]
    messages += [{"role": "user", "content": f"{instruction}\n{extra}" if extra.strip() else instruction},
                 {"role": "assistant", "content": output}]
    return messages, _reasoning_field(record, loc)


def _sharegpt(record: dict, loc: Location):
    if "conversations" not in record:
        raise loc.error("conversations", "missing")
    turns = record["conversations"]
    if not isinstance(turns, list):
        raise loc.error("conversations", f"wrong type: expected a list, got {type(turns).__name__}")
    if not turns:
        raise loc.error("conversations", "empty")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": _text(record["system"], loc, "system")})
    reasoning = _reasoning_field(record, loc)
    for i, turn in enumerate(turns):
        name = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise loc.error(name, f"wrong type: expected an object, got {type(turn).__name__}")
        speaker = turn.get("from", turn.get("role"))
        if speaker is None:
            raise loc.error(f"{name}.from", "missing")
        if speaker not in SHAREGPT_ROLES:
            raise loc.error(f"{name}.from", f"unknown role '{speaker}' (expected one of {sorted(SHAREGPT_ROLES)})")
        content = _text(turn.get("value", turn.get("content")), loc, f"{name}.value")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": content})
        if i == len(turns) - 1:
            reasoning = _reasoning_field(turn, loc, f"{name}.") or reasoning
    return messages, reasoning


def _messages(record: dict, loc: Location):
    if "messages" not in record:
        raise loc.error("messages", "missing")
    turns = record["messages"]
    if not isinstance(turns, list):
        raise loc.error("messages", f"wrong type: expected a list, got {type(turns).__name__}")
    if not turns:
        raise loc.error("messages", "empty")
    messages, reasoning = [], None
    for i, turn in enumerate(turns):
        name = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise loc.error(name, f"wrong type: expected an object, got {type(turn).__name__}")
        role = turn.get("role")
        if role is None:
            raise loc.error(f"{name}.role", "missing")
        if role not in MESSAGE_ROLES:
            raise loc.error(f"{name}.role", f"unknown role '{role}' (expected one of {', '.join(MESSAGE_ROLES)})")
        messages.append({"role": role, "content": _text(turn.get("content"), loc, f"{name}.content")})
        if i == len(turns) - 1:
            reasoning = _reasoning_field(turn, loc, f"{name}.")
    return messages, reasoning


def load_samples(
    path: str | Path, fmt: str = "auto", on_error: str = "stop", encoding: str | None = None,
    columns: dict[str, str] | None = None,
) -> tuple[list[ChatSample], list[DataError]]:
    """Read a data file into chat samples. With on_error="skip" bad records are returned, not raised.

    `encoding` and `columns` as in `io.read_records`. A table (CSV, Parquet) whose columns match no format,
    or a file none of whose records does, is one file-level error naming the columns, whatever `on_error`."""
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
    skipped: list[DataError] = []
    samples = []
    unknown, known = None, fmt != "auto"  # the fields of the first record in no format; a record in one seen
    tabular = Path(path).suffix.lower() in TABULAR
    for loc, record in read_records(path, on_error=on_error, skipped=skipped, encoding=encoding, columns=columns):
        if not known:
            if detect_format(record) is not None:
                known = True
            elif unknown is None:
                unknown = list(record)
                if tabular:
                    raise unknown_columns_error(path, unknown)
        try:
            samples.append(to_sample(record, loc, fmt))
        except DataError as e:
            if on_error == "stop":
                raise
            skipped.append(e)
    if not samples and not known and unknown is not None:
        raise unknown_columns_error(path, unknown)
    if not samples:
        raise DataError(str(path), None, None, f"no usable records ({len(skipped)} skipped; first: {skipped[0]})"
                        if skipped else "file is empty: no records found")
    return samples, skipped
