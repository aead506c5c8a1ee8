"""The board's chat: one run loaded at a time through the engine of `r1tune serve`, streamed in pieces.

    chats = ChatEngines(threads=1)
    async for kind, text in chats.reply(model_folder, messages, temperature=0.6, top_p=0.95, max_tokens=512):
        ...   # kind: "reasoning" | "answer" | "finish" (text: stop | length | cancelled)

The engine (serve/engine.py) is loaded on the first message to a run, in a worker thread, and kept until a
message names another run (then the old one is closed: one model's memory at a time). Replies stream as
the engine's events arrive and are split into reasoning and answer as `r1tune serve` splits them
(model/reasoning.py); a reply whose client went away is cancelled at its next token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from r1tune.config import ServeConfig
from r1tune.errors import R1TuneError
from r1tune.model.reasoning import ReasoningStream


class ChatEngines:
    """The loaded engine (at most one) and the lock that keeps two loads from racing."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.folder: Path | None = None
        self.engine = None
        self._lock = threading.Lock()

    def _load(self, folder: Path):
        with self._lock:
            if self.folder == folder and self.engine is not None:
                return self.engine
            from r1tune.serve.engine import load_engine  # torch: only when someone chats

            if self.engine is not None:
                self.engine.close()
                self.engine, self.folder = None, None
            self.engine = load_engine(folder, ServeConfig(threads=self.threads))
            self.folder = folder
            return self.engine

    async def reply(self, folder: Path, messages: list[dict], temperature: float, top_p: float,
                    max_tokens: int) -> AsyncIterator[tuple[str, str]]:
        from r1tune.serve.engine import Finished, Sampling, chat_pieces

        engine = await asyncio.to_thread(self._load, folder)
        prompt_ids = await asyncio.to_thread(engine.encode, messages)
        room = engine.context_length - len(prompt_ids)
        if room <= 0:
            raise R1TuneError(f"the conversation is {len(prompt_ids)} tokens, the model's context "
                              f"{engine.context_length}: start a new chat")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        sampling = Sampling(max_tokens=min(max_tokens, room), temperature=temperature, top_p=top_p)
        job = engine.submit(engine.default_model, prompt_ids, sampling, 1,
                            lambda _i, event: loop.call_soon_threadsafe(events.put_nowait, event))
        splitter = ReasoningStream()
        try:
            while True:
                event = await events.get()
                for piece in chat_pieces(splitter, event):
                    yield piece
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()

    def close(self) -> None:
        with self._lock:
            if self.engine is not None:
                self.engine.close()
            self.engine, self.folder = None, None
