"""Fine-tuning methods: each is a way of wrapping the model and of saving it, never a new recipe.

    model = apply_method(model, MethodConfig(name="dora", layers="top:8"))
    save_trained(model, out_dir)   # the adapter for PEFT methods, the whole model otherwise

lora / dora / qlora — PEFT LoRA (DoRA: magnitude-decomposed; QLoRA: on a 4-bit NF4 base, see
                      `quantization_config`) on every linear layer but the LM head, or `target_modules`.
ia3                 — PEFT (IA)³: learned scaling vectors on k/v/down projections.
prefix / prompt / ptuning — PEFT prompt learning: trained key/value prefixes, a soft prompt, or a soft prompt
                      produced by a small MLP encoder (P-tuning). Nothing to merge; the adapter travels.
full                — every parameter trains.
freeze              — only the top `trainable_layers` (or `layers`) decoder layers train: the "middle and top
                      layers" domain adaptation mostly needs, at a fraction of full's memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from r1tune.config import MethodConfig
from r1tune.errors import R1TuneError
from r1tune.model.bitsandbytes_import import import_bitsandbytes
from r1tune.model.load import cpu_has_native_bf16
from r1tune.model.vision import is_vision_model, set_vision_trainable, vision_lora_targets, vision_modules_to_save

PEFT_METHODS = ("lora", "dora", "qlora", "ia3", "prefix", "prompt", "ptuning")
PROMPT_METHODS = ("prefix", "prompt", "ptuning")
MERGEABLE_METHODS = ("lora", "dora", "qlora", "ia3")
# methods whose base weights stay frozen and un-quantised: on a CPU with native bf16 the base is stored in bf16
FROZEN_BF16_BASE = ("lora", "dora", "ia3")


def bf16_base_on_cpu(method: str) -> bool:
    """Whether a CPU run of `method` keeps its frozen base in bf16 under bf16 autocast (the finetune recipe's
    `auto` precision, and so what the advisor estimates): LoRA-family methods on CPUs with native bf16."""
    return method in FROZEN_BF16_BASE and cpu_has_native_bf16()


LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def decoder_layers(model) -> torch.nn.ModuleList:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None and is_vision_model(base):  # issue 19: Qwen2-VL / 2.5-VL keep theirs in the language model
        layers = base.model.language_model.layers
    if layers is None:
        raise R1TuneError(f"cannot find the decoder layers of {type(base).__name__}")
    return layers


def resolve_layers(spec: str, n_layers: int) -> list[int]:
    """'top:4' → the top four; '8-15' → 8…15; '0,5,7' → those. Indices are 0-based and checked."""
    spec = spec.strip()
    try:
        if spec.startswith("top:"):
            n = int(spec[4:])
            layers = list(range(n_layers - n, n_layers))
        elif re.fullmatch(r"\d+-\d+", spec):
            a, b = map(int, spec.split("-"))
            layers = list(range(a, b + 1))
        else:
            layers = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise R1TuneError(f"method.layers: cannot read {spec!r} (use 'top:N', 'A-B' or 'i,j,k')") from None
    if not layers or min(layers) < 0 or max(layers) >= n_layers:
        raise R1TuneError(f"method.layers={spec!r} selects layers outside 0…{n_layers - 1}")
    return layers


def quantization_config(cfg: MethodConfig):
    """The 4-bit base of QLoRA (bitsandbytes; runs on CPUs as well as GPUs), or None for other methods."""
    if cfg.name != "qlora":
        return None
    import_bitsandbytes()  # hidden by the `r1tune` command until a quantized method asks for it
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type,
                              bnb_4bit_use_double_quant=cfg.double_quant, bnb_4bit_compute_dtype=compute)


def layer_linear_names(model) -> list[str]:
    """Names of the linear sub-modules inside a decoder layer (q_proj … down_proj)."""
    layer = decoder_layers(model)[0]
    return sorted({n.rsplit(".", 1)[-1] for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)})


def in_layers(names: list[str], layers: list[int]) -> str:
    """A PEFT target regex: these module names, only inside these decoder layers."""
    return r".*\.layers\.(" + "|".join(map(str, layers)) + r")\.(.*\.)?(" + "|".join(names) + ")$"


def peft_config(cfg: MethodConfig, n_layers: int, linear_names: list[str], tokenizer_path: str | None = None):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    layers = resolve_layers(cfg.layers, n_layers) if cfg.layers else None
    if cfg.name in ("lora", "dora", "qlora"):
        targets = cfg.target_modules
        if layers:  # PEFT's layers_to_transform cannot be combined with "all-linear": spell it out
            targets = in_layers(linear_names if targets == "all-linear" else targets, layers)
        return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, use_dora=cfg.name == "dora", bias="none", task_type="CAUSAL_LM")
    if cfg.name == "ia3":
        # (IA)^3 scales keys, values and the MLP input of down_proj (the paper's choice for decoders)
        names = ["k_proj", "v_proj", "down_proj"] if cfg.target_modules == "all-linear" else cfg.target_modules
        ff = [n for n in names if n in ("down_proj", "fc2", "w2")]
        chosen = layers or list(range(n_layers))
        return IA3Config(target_modules=in_layers(names, chosen),
                         feedforward_modules=in_layers(ff, chosen) if ff else [], task_type="CAUSAL_LM")
    if layers:
        raise R1TuneError(f"method.layers does not apply to {cfg.name}: prompt learning adds tokens, not layers")
    if cfg.name == "prefix":
        return PrefixTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM")
    if cfg.name == "prompt":
        init = dict(prompt_tuning_init="TEXT", prompt_tuning_init_text=cfg.prompt_init_text,
                    tokenizer_name_or_path=tokenizer_path) if cfg.prompt_init_text else {}
        return PromptTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM", **init)
    if cfg.name == "ptuning":
        return PromptEncoderConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM",
                                   encoder_hidden_size=cfg.encoder_hidden_size)
    raise R1TuneError(f"{cfg.name} is not a PEFT method")


def apply_method(model, cfg: MethodConfig, gradient_checkpointing: bool = False, tokenizer_path: str | None = None):
    """Wrap (or freeze) `model` for the method; only the parameters the method trains require grad."""
    if is_vision_model(model):  # issue 19: the method wraps the language model; vision parts train only if asked
        model = _apply_method(model, cfg, gradient_checkpointing, tokenizer_path)
        set_vision_trainable(model, cfg)
        return model
    return _apply_method(model, cfg, gradient_checkpointing, tokenizer_path)


def _apply_method(model, cfg: MethodConfig, gradient_checkpointing: bool, tokenizer_path: str | None):
    if cfg.name == "prefix" and gradient_checkpointing:
        raise R1TuneError("prefix tuning cannot run with gradient checkpointing (its key/value prefixes travel as "
                          "a cache, which checkpointing disables): set train.gradient_checkpointing=false, or use "
                          "method prompt / ptuning")
    n_layers = len(decoder_layers(model))
    if cfg.name in PEFT_METHODS:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if cfg.name == "qlora":
            if not getattr(model, "is_loaded_in_4bit", False):
                raise R1TuneError("qlora needs the base loaded in 4 bit (load_model with quantization_config)")
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        config = peft_config(cfg, n_layers, layer_linear_names(model), tokenizer_path)
        if is_vision_model(model):
            if cfg.name in ("lora", "dora", "qlora") and not cfg.layers:  # method.layers already names LM layers
                names = layer_linear_names(model) if cfg.target_modules == "all-linear" else cfg.target_modules
                config.target_modules = vision_lora_targets(names)
            config.modules_to_save = vision_modules_to_save(cfg)
        return get_peft_model(model, config)
    if cfg.name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.name == "freeze":
        if cfg.layers:
            chosen = resolve_layers(cfg.layers, n_layers)
        elif cfg.trainable_layers > n_layers:
            raise R1TuneError(f"method.trainable_layers={cfg.trainable_layers} but the model has {n_layers} layers")
        else:
            chosen = list(range(n_layers - cfg.trainable_layers, n_layers))
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        for i in chosen:
            for p in layers[i].parameters():
                p.requires_grad_(True)
        if cfg.train_lm_head:
            for module in (model.model.norm, model.get_output_embeddings()):
                for p in module.parameters():
                    p.requires_grad_(True)
        return model
    raise R1TuneError(f"unknown method {cfg.name!r}")


def merge_adapter(model):
    """Fold a LoRA / DoRA / IA3 adapter into the base weights, which must be in full (or half) precision.

    Prompt-learning adapters have nothing to fold. Merging into an 8/4-bit base would round the merged weights
    to the quantisation grid: reload the base in full precision, merge, and quantize afterwards.
    """
    config = getattr(model, "active_peft_config", None)
    if config is None:
        raise R1TuneError("nothing to merge: the model has no adapter")
    if config.is_prompt_learning:
        raise R1TuneError(f"a {config.peft_type.value.lower()} adapter cannot be merged into the weights: "
                          "serve or load the adapter itself")
    base = model.get_base_model()
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        raise R1TuneError("refusing a lossy merge into an 8/4-bit base: load the base in full precision "
                          "(fp32/bf16), merge there, then quantize the merged model")
    return model.merge_and_unload()


def merge_if_possible(model):
    """(model, merged?): a LoRA-type adapter folded in as an exported model has it (the same outputs up to
    rounding, at the base model's speed); prompt-learning adapters and quantized bases stay as they are."""
    if getattr(model, "active_peft_config", None) is None:
        return model, False
    try:
        return merge_adapter(model).eval(), True
    except R1TuneError:
        return model, False


def add_hidden_dropout(model, p: float) -> list:
    """Dropout on every decoder layer's output, active only in training mode (Qwen2/Llama have none built in)."""
    def hook(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (torch.nn.functional.dropout(output[0], p, True),) + output[1:]
        return torch.nn.functional.dropout(output, p, True)

    return [layer.register_forward_hook(hook) for layer in decoder_layers(model)]


def layer_of(name: str) -> int | None:
    m = LAYER_INDEX.search("." + name)
    return int(m.group(1)) if m else None


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Parameters that train, by name: what a checkpoint must hold besides the optimizer."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise R1TuneError(f"checkpoint does not match the model: unknown parameters {missing[:3]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def save_trained(model, out: Path) -> None:
    """PEFT models save their adapter (loadable by peft); full/freeze save the whole model (transformers)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
