"""Export fixtures: a tiny LoRA run (a few seconds) and a small labelled test set from the bundled finsent data.

Everything runs with one torch thread: on a 2-core machine shared with other work, two threads spin against
each other (generation measured 10x slower), and the tiny model gains nothing from a second one."""

import pytest

from r1tune.config import FinetuneConfig


@pytest.fixture(scope="session")
def export_run(tiny_model_dir, finsent_file, tmp_path_factory):
    from r1tune.recipes.finetune import finetune

    data = finsent_file(80)
    out = tmp_path_factory.mktemp("export") / "tuned"
    finetune(FinetuneConfig(model={"name_or_path": str(tiny_model_dir)},
                            data={"train": str(data), "val_split": 0.2, "max_length": 128},
                            method={"name": "lora", "lora_r": 8, "lora_alpha": 16},
                            train=dict(max_steps=8, batch_size=8, lr=5e-3, eval_every=100, save_every=100, seed=7,
                                       threads=1), out=str(out)))
    return out


@pytest.fixture(scope="session")
def finsent_test(finsent_file):
    return finsent_file(40, "test")
