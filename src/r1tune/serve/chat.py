"""The terminal chat loop behind `r1tune chat RUN` (the flow is recipes/chat.py): read a line, stream the
reply — the reasoning dimmed, then the answer.

Commands: `/reset` forgets the conversation, `/exit` (or Ctrl-D) leaves. Earlier turns are sent back as
their answers only, as the R1 template does with history. The model runs in this process through the same
engine as `r1tune serve` (same template check, same marker handling, same sampling defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rich.console import Console

REASONING_STYLE = "dim italic"
ANSWER_STYLE = "bold"

StreamChat = Callable[[list[dict]], Iterator[tuple[str, str]]]


def chat_loop(stream_chat: StreamChat, read_line: Callable[[], str | None], console: Console,
              show_reasoning: bool = True) -> int:
    """Read a line, stream the reply, repeat; returns the number of answered turns. `read_line` → None ends."""
    history: list[dict] = []
    turns = 0
    while True:
        line = read_line()
        if line is None or line.strip() in ("/exit", "/quit"):
            return turns
        line = line.strip()
        if not line:
            continue
        if line == "/reset":
            history.clear()
            console.print("(conversation cleared)", style="dim", highlight=False)
            continue
        history.append({"role": "user", "content": line})
        reply = stream_chat(history)
        try:
            answer = show_reply(reply, console, show_reasoning)
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the chat
            console.print("\n(stopped)", style="yellow", highlight=False)
            answer = ""
        finally:
            reply.close()  # cancels the generation if it is still running
        history.append({"role": "assistant", "content": answer})
        turns += 1


def show_reply(pieces: Iterator[tuple[str, str]], console: Console, show_reasoning: bool) -> str:
    """Print ("reasoning" | "answer" | "finish", text) pieces as they come; returns the answer."""
    answer, state = "", "start"
    for kind, text in pieces:
        if kind == "reasoning":
            if show_reasoning:
                if state == "start":
                    console.print("thinking: ", style=REASONING_STYLE, end="")
                console.print(text, style=REASONING_STYLE, end="", markup=False, highlight=False)
            state = "reasoning"
        elif kind == "answer":
            if state != "answer":
                console.print("\n" if state == "reasoning" and show_reasoning else "", end="")
                console.print("answer: ", style=ANSWER_STYLE, end="")
            console.print(text, end="", markup=False, highlight=False)
            answer += text
            state = "answer"
        elif kind == "finish" and text == "length":
            console.print("\n(cut off at max tokens)", style="yellow", end="", highlight=False)
    console.print()
    return answer
