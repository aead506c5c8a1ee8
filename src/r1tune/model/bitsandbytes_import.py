"""bitsandbytes only where a quantized method needs it: QLoRA's 4-bit base, an 8-bit export or base.

    hide_bitsandbytes()              # cli.main(), before anything imports peft
    bnb = import_bitsandbytes()      # quantization_config(qlora), load_model on a bitsandbytes folder, export

peft imports bitsandbytes whenever it is installed (`peft.helpers` at import, and every LoRA layer it
creates asks whether bitsandbytes can quantize it), and importing bitsandbytes is slow and noisy: on CPUs
with AVX512-BF16 it tries to fetch a kernel from the hub and logs "Failed to load CPU gemm_4bit_forward from
kernels-community" on every run. The `r1tune` command therefore hides it (`sys.modules["bitsandbytes"] =
None`: Python's own "not importable" marker, which peft and transformers read as "not installed") until a
quantized path asks for it; `import_bitsandbytes` lifts the marker, clears the answers peft and transformers
cached while it was hidden, and imports it. A process that never called `hide_bitsandbytes`
(a notebook using r1tune as a library) is left as it is.
"""

from __future__ import annotations

import importlib
import sys

NAME = "bitsandbytes"
# functions that cache "is bitsandbytes installed?" (functools.lru_cache), by module
CACHED_CHECKS = {"peft.import_utils": ("is_bnb_available", "is_bnb_4bit_available"),
                 "transformers.utils.import_utils": ("is_bitsandbytes_available",)}


def hide_bitsandbytes() -> None:
    """Make bitsandbytes look uninstalled to every library until `import_bitsandbytes` (no-op once imported)."""
    sys.modules.setdefault(NAME, None)


def import_bitsandbytes():
    """bitsandbytes, imported (ImportError when it is not installed), and seen as installed from now on."""
    if NAME in sys.modules and sys.modules[NAME] is None:
        del sys.modules[NAME]
        for module, names in CACHED_CHECKS.items():
            for name in names:
                cache_clear = getattr(getattr(sys.modules.get(module), name, None), "cache_clear", None)
                if cache_clear:
                    cache_clear()
    bitsandbytes = importlib.import_module(NAME)
    helpers = sys.modules.get("peft.helpers")
    if helpers is not None and getattr(helpers, "bnb", bitsandbytes) is None:  # bound while hidden
        helpers.bnb = bitsandbytes
    return bitsandbytes
