"""Fixtures for the prepare-step tests: a tiny WordNet database in the real format (JSONL: tests/conftest.py)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mini_wordnet(tmp_path_factory) -> Path:
    """index.*/data.* files in WordNet's wndb format, with real byte offsets, for three synsets."""
    folder = tmp_path_factory.mktemp("wordnet")
    synsets = {
        "noun": [["revenue", "gross", "receipts"], ["rose", "rosebush"]],
        "verb": [["increase", "rise", "grow"]],
        "adj": [["significant", "important"]],
        "adv": [["quickly", "rapidly", "speedily"]],
    }
    tagged = {"increase": 9, "rise": 9, "grow": 9}
    for pos, groups in synsets.items():
        lines, index, offset = [], {}, 0
        for words in groups:
            line = f"{offset:08d} 00 {pos[0]} {len(words):02x} " + " ".join(f"{w} 0" for w in words) + " 000 | gloss  \n"
            # offsets are byte positions: pad so the written offset matches the real one
            lines.append(line)
            for w in words:
                index.setdefault(w, []).append(offset)
            offset += len(line.encode("utf-8"))
        (folder / f"data.{pos}").write_text("".join(lines), encoding="utf-8")
        (folder / f"index.{pos}").write_text("".join(
            f"{w} {pos[0]} {len(offs)} 0 {len(offs)} {tagged.get(w, 1)} " + " ".join(f"{o:08d}" for o in offs) + "  \n"
            for w, offs in sorted(index.items())), encoding="utf-8")
    (folder / "verb.exc").write_text("rose rise\n", encoding="utf-8")
    return folder
