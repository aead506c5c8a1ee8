"""Annotation round trip with Label Studio for the three-layer scheme (entities, relations, intents).

    schema.py       the YAML schema of the three layers
    labelstudio.py  labeling config XML and import tasks (with pre-annotations)
    predict.py      pre-annotations from a model: prompts out, spans at offsets back
    prompts.py      the question / answer format shared by import and pre-annotation
    export.py       reading a Label Studio JSON export, with a reason for every problem
    importer.py     export → entities / relations / intents samples + problems.jsonl
    agreement.py    Cohen's / Fleiss' kappa, span F1, the review list

The commands are `r1tune annotate config | tasks | import | agreement` (src/r1tune/recipes/annotate.py).
"""
