"""`python -m r1tune …` — the same as the `r1tune` command (used by `accelerate launch -m r1tune` and --nproc)."""

from r1tune.cli import main

main()
