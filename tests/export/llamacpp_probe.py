"""Runs inside .venv-llamacpp (llama-cpp-python), never in the test environment: what llama.cpp makes of a GGUF.

    .venv-llamacpp/bin/python tests/export/llamacpp_probe.py request.json > answer.json

request: {"gguf": path, "prompts": [rendered prompt text, …], "max_new_tokens": n}
answer:  {"metadata": {key: value} as llama.cpp read it, "n_vocab": …, "bos": …, "eos": …, "add_bos": …,
          "prompts": [{"ids": llama.cpp's tokens of the text, "generated": greedy token ids,
                       "logits": [the logits before each generated token, as lists]}]}

The text is tokenized as a chat client sends a rendered template: special tokens parsed, no bos added (the
R1 template writes its own). Generation is plain greedy (argmax of llama.cpp's logits, no sampler), stopping
at eos, so it can be compared token by token with transformers.
"""

import json
import sys

import llama_cpp
import numpy as np


def main(request: dict) -> dict:
    # logits_all: llama-cpp-python keeps the logits (llm.scores) only then
    llm = llama_cpp.Llama(model_path=request["gguf"], n_ctx=512, n_batch=512, n_threads=1, n_threads_batch=1,
                          logits_all=True, seed=0, verbose=False)
    eos = llm.token_eos()
    answer = {"metadata": dict(llm.metadata), "n_vocab": llm.n_vocab(), "bos": llm.token_bos(), "eos": eos,
              "add_bos": bool(llm._model.add_bos_token()), "prompts": []}
    for text in request["prompts"]:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        generated, logits = [], []
        for _ in range(request["max_new_tokens"]):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            token = int(row.argmax())
            generated.append(token)
            logits.append(row.tolist())
            if token == eos:
                break
            llm.eval([token])
        answer["prompts"].append({"ids": ids, "generated": generated, "logits": logits})
    return answer


if __name__ == "__main__":
    print(json.dumps(main(json.loads(open(sys.argv[1], encoding="utf-8").read()))))
