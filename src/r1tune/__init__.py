"""r1tune: raw domain data → fine-tuned, evaluated, exported and served DeepSeek-R1 (R1-Distill) models.

Stages live in one package each: data/, annotate/, train/, evaluate/, export/, serve/; model/ holds the R1
chat template, loading and the tiny test models; recipes/ holds the readable end-to-end flows the CLI calls.
"""

import logging

# peft imports torchao when it is installed (INT8 export uses it); on torch 2.13 torchao registers pytree
# enums that torch now warns about at every import. The warning is torch's, not actionable for users.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
# torchao's wheel carries CUDA-only kernels; on a CPU it reports each one it cannot load. Not an error here.
logging.getLogger("torchao").setLevel(logging.ERROR)

__version__ = "0.1.0"
