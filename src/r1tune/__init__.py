"""r1tune: raw domain data → fine-tuned, evaluated, exported and served DeepSeek-R1 (R1-Distill) models.

Stages live in one package each: data/, annotate/, train/, evaluate/, export/, serve/; model/ holds the R1
chat template, loading and the tiny test models; recipes/ holds the readable end-to-end flows the CLI calls.
"""

__version__ = "0.1.0"
