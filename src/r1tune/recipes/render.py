"""`r1tune render`: show exactly what the model sees — the text, or token ids with the label mask.

    r1tune render --model DIR --messages chat.json            # inference text (generation prompt added)
    r1tune render --model DIR --messages chat.json --train    # training text: prompt | target
    r1tune render --model DIR --messages chat.json --train --ids

The messages file holds a list of messages, or one record in any supported data format.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.config import ModelConfig
from r1tune.data.formats import to_sample
from r1tune.data.io import Location
from r1tune.errors import R1TuneError
from r1tune.model.load import load_tokenizer
from r1tune.model.template import IGNORE, render_chat, render_training, tokenize_training


def read_conversation(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise R1TuneError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise R1TuneError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    return {"messages": value} if isinstance(value, list) else value


def render(model: str, messages: Path, train: bool = False, ids: bool = False, reasoning: str = "keep",
           max_length: int = 4096) -> str:
    tokenizer = load_tokenizer(ModelConfig(name_or_path=model))
    record = read_conversation(messages)
    if not train:
        convo = record.get("messages")
        if not isinstance(convo, list):
            raise R1TuneError(f"{messages}: expected a list of messages or a record with 'messages'")
        text = render_chat(tokenizer, convo, add_generation_prompt=bool(convo) and convo[-1].get("role") == "user")
        if not ids:
            return text
        token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return _id_table(tokenizer, token_ids, [IGNORE] * len(token_ids))
    sample = to_sample(record, Location(str(messages), 1))
    parts = render_training(tokenizer, sample.messages, sample.reasoning, reasoning)
    if not ids:
        return (f"{parts.prompt}{parts.bridge}{parts.target}{tokenizer.eos_token}\n"
                f"--- prompt ({len(parts.prompt)} chars, identical to inference) | "
                f"untrained context: {parts.bridge!r} | trained: target + eos ---\n")
    tok = tokenize_training(tokenizer, parts, max_length, source=str(messages))
    return _id_table(tokenizer, tok.input_ids, tok.labels)


def _id_table(tokenizer, token_ids: list[int], labels: list[int]) -> str:
    lines = ["pos\tid\tlabel\ttoken"]
    for pos, (i, lab) in enumerate(zip(token_ids, labels)):
        lines.append(f"{pos}\t{i}\t{'1' if lab != IGNORE else '0'}\t{tokenizer.convert_ids_to_tokens(i)!r}"
                     f" {tokenizer.decode([i])!r}")
    trained = sum(1 for x in labels if x != IGNORE)
    lines.append(f"# {len(token_ids)} tokens, {trained} trained (label 1), bos count "
                 f"{token_ids.count(tokenizer.bos_token_id)}")
    return "\n".join(lines) + "\n"
