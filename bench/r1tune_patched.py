"""The `r1tune` command with one of bench/patches.py applied first (how the bench measures a recipe change
without editing src/):

    .venv/bin/python bench/r1tune_patched.py fused finetune --model M --data D --out O ...
"""

import sys

import patches

if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    patches.apply(sys.argv[1])
    from r1tune.cli import main

    sys.argv = ["r1tune", *sys.argv[2:]]
    sys.exit(main())
