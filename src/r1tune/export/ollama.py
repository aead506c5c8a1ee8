"""The Ollama Modelfile written next to an exported GGUF: `ollama create NAME -f Modelfile`.

    text = modelfile("model-q8_0.gguf", template=run_template, temperature=0.6, top_p=0.95, num_ctx=8192)

Ollama does not run the GGUF's Jinja chat template: it renders its own Go template (TEMPLATE), and a wrong
one is the usual cause of "the model got worse in Ollama" (lost `<think>`, missing stop tokens). This
TEMPLATE renders what the R1 template renders, for the conversations Ollama sends it:

    bos (added by Ollama: add_bos_token is set in the GGUF) + the last system message, raw
    + per turn: <｜User｜>text  |  <｜Assistant｜>answer<｜end▁of▁sentence｜>
    + after a final user turn: <｜Assistant｜><think>\\n

The prompt ends in `<think>\\n` whichever R1 template the run used: r1tune trains and serves with it after
the 2025-01 template too (DeepSeek's advice, model/template.py `encode_generation_prompt`), so this is the
prompt the model learned. History turns carry only their answer (Ollama keeps the reasoning in a message's
`thinking`, which the R1 template drops for earlier turns too). A final assistant turn is a prefill that the
model continues, as in Ollama's own templates, so it gets no end-of-sentence. The `.Thinking` block there is
what lets Ollama find the `<think>` / `</think>` tags and split the reasoning from the answer when a request
sets `think`; the prompt already ends in `<think>\\n`, which Ollama recognises as reasoning under way.
Ollama merges two consecutive messages of the same role into one before rendering (the R1 template would
print both); tool turns are not rendered (R1-Distill models were not trained for tools).
"""

from __future__ import annotations

from r1tune.model.template import ASSISTANT, BOS, EOS, FORCED_PREFIX, USER, template_name

STOP = (BOS, EOS, USER, ASSISTANT)


def go_template() -> str:
    """The Go template for Ollama that renders the prompts r1tune renders with the R1 chat template."""
    return (
        '{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{- $system = .Content }}{{- end }}'
        "{{- end }}{{ $system }}\n"
        "{{- range $i, $_ := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        f'{{{{- if eq .Role "user" }}}}{USER}{{{{ .Content }}}}\n'
        f'{{{{- else if eq .Role "assistant" }}}}{ASSISTANT}\n'
        "{{- if and $last .Thinking }}<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}{{ .Content }}\n"
        f"{{{{- if not $last }}}}{EOS}{{{{ end }}}}\n"
        "{{- end }}\n"
        f'{{{{- if and $last (ne .Role "assistant") }}}}{ASSISTANT}{FORCED_PREFIX}{{{{ end }}}}\n'
        "{{- end }}"
    )


def modelfile(gguf_name: str, template: str, temperature: float, top_p: float, num_ctx: int) -> str:
    """The Modelfile text: FROM the GGUF beside it, the TEMPLATE, R1's stop markers and sampling defaults."""
    name = template_name(template)
    note = (f"the R1 chat template ({name})" if name != "custom" else
            "a custom chat template: this TEMPLATE follows the R1 structure — check it against the run's template")
    lines = [
        "# Ollama Modelfile written by `r1tune export gguf`. Load it with:",
        "#   ollama create MODEL-NAME -f Modelfile",
        f"# TEMPLATE: {note}, in Ollama's Go template syntax.",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{go_template()}"""',
        *[f'PARAMETER stop "{marker}"' for marker in STOP],
        f"PARAMETER temperature {temperature:g}",
        f"PARAMETER top_p {top_p:g}",
        f"PARAMETER num_ctx {num_ctx}",
        "",
    ]
    return "\n".join(lines)
