"""`r1tune render`: show exactly what the model sees — the text, or token ids with the label mask.

    r1tune render --model DIR --messages chat.json            # inference text (generation prompt added)
    r1tune render --model DIR --messages chat.json --train    # training text: prompt | target
    r1tune render --model DIR --messages chat.json --train --ids
    r1tune render --model DIR --messages long.json --train --ids --max-length 512 --truncate left

The messages file holds a list of messages, or one record in any supported data format. The ids are the ones
training, evaluation and serving use: a marker typed inside a message (`</think>`, `<｜Assistant｜>`) shows as
plain-text pieces, never as the marker's id.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.config import ModelConfig
from r1tune.data.formats import to_sample
from r1tune.data.io import Location
from r1tune.errors import R1TuneError
from r1tune.model.load import load_tokenizer
from r1tune.model.template import IGNORE, encode_chat_text, render_chat, render_training, tokenize_training


def read_conversation(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise R1TuneError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise R1TuneError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise R1TuneError(f"{path}: nested too deeply to be a conversation") from None
    except UnicodeDecodeError as e:
        raise R1TuneError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if isinstance(value, list):
        return {"messages": value}
    if not isinstance(value, dict):
        raise R1TuneError(f"{path}: expected a list of messages or a record, not {type(value).__name__}")
    return value


def checked_messages(convo, path: Path) -> list[dict]:
    """The conversation to render: messages with a known role and text content (a list of text parts is text;
    none is empty)."""
    if not isinstance(convo, list):
        raise R1TuneError(f"{path}: expected a list of messages or a record with 'messages'")
    for i, m in enumerate(convo):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise R1TuneError(f"{path}: messages[{i}]: expected an object with a role (system, user or assistant) "
                              "and a content")
        content = m.get("content")
        if not (content is None or isinstance(content, str) or (isinstance(content, list) and all(
                isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("text", ""), str)) for p in content))):
            raise R1TuneError(f"{path}: messages[{i}].content: expected text or a list of text parts")
    return convo


def render(model: str, messages: Path, train: bool = False, ids: bool = False, reasoning: str = "keep",
           max_length: int = 4096, truncate: str = "skip") -> str:
    tokenizer = load_tokenizer(ModelConfig(name_or_path=model))
    record = read_conversation(messages)
    if not train:
        convo = checked_messages(record.get("messages"), messages)
        generation_prompt = bool(convo) and convo[-1].get("role") == "user"
        if not ids:
            return render_chat(tokenizer, convo, add_generation_prompt=generation_prompt)
        token_ids = encode_chat_text(tokenizer, convo, generation_prompt)
        return _id_table(tokenizer, token_ids, [IGNORE] * len(token_ids))
    sample = to_sample(record, Location(str(messages), 1))
    parts = render_training(tokenizer, sample.messages, sample.reasoning, reasoning)
    if not ids:
        return (f"{parts.prompt}{parts.bridge}{parts.target}{tokenizer.eos_token}\n"
                f"--- prompt ({len(parts.prompt)} chars, identical to inference) | "
                f"untrained context: {parts.bridge!r} | trained: target + eos ---\n")
    tok = tokenize_training(tokenizer, parts, max_length, source=str(messages), truncate=truncate)
    note = "; ".join(n for n, on in (("prompt cut from the left", tok.prompt_cut),
                                     ("target cut at max_length", tok.truncated)) if on)
    return _id_table(tokenizer, tok.input_ids, tok.labels, note)


def _id_table(tokenizer, token_ids: list[int], labels: list[int], note: str = "") -> str:
    lines = ["pos\tid\tlabel\ttoken"]
    for pos, (i, lab) in enumerate(zip(token_ids, labels)):
        lines.append(f"{pos}\t{i}\t{'1' if lab != IGNORE else '0'}\t{tokenizer.convert_ids_to_tokens(i)!r}"
                     f" {tokenizer.decode([i])!r}")
    trained = sum(1 for x in labels if x != IGNORE)
    lines.append(f"# {len(token_ids)} tokens, {trained} trained (label 1), bos count "
                 f"{token_ids.count(tokenizer.bos_token_id)}" + (f"; {note}" if note else ""))
    return "\n".join(lines) + "\n"
