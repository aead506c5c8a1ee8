"""Watching a run: metrics log (JSONL + TensorBoard), early stopping, and plots at the end.

Early stopping has two rules, both on validation loss:
- patience: no new best for `patience` evaluations in a row;
- rising: the loss rose in `rising` consecutive evaluations (K rises need K+1 evaluations to observe).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from r1tune.files import write_text


class MetricsLog:
    """Appends one JSON line per record to metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, out: Path, tensorboard: bool = True):
        self.path = out / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.writer is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{record.get('split', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget lines logged after the checkpoint (they will be logged again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in keep))  # a crash here must not lose the lines kept


@dataclass
class EarlyStopping:
    patience: int | None = None
    rising: int = 10
    history: list[float] = field(default_factory=list)
    best: float = math.inf
    since_best: int = 0

    def update(self, eval_loss: float) -> str | None:
        """Record an evaluation; return the reason to stop, or None."""
        rose = bool(self.history) and eval_loss > self.history[-1]
        self.history.append(eval_loss)
        if eval_loss < self.best:
            self.best, self.since_best = eval_loss, 0
        else:
            self.since_best += 1
        if self.patience is not None and self.since_best >= self.patience:
            return f"eval loss has not improved for {self.patience} evaluations (best {self.best:.4f})"
        recent = self.history[-(self.rising + 1):]
        if rose and len(recent) == self.rising + 1 and all(b > a for a, b in zip(recent, recent[1:])):
            return f"eval loss rose in {self.rising} consecutive evaluations"
        return None

    def state(self) -> dict:
        return asdict(self)


def plot_metrics(out: Path) -> list[Path]:
    """loss.png (train and eval loss) and lr.png from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if r.get("split") == "train"]
    evals = [r for r in rows if r.get("split") == "eval"]
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", alpha=0.8)
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (per target token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    written.append(out / "loss.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([r["step"] for r in train], [r["lr"] for r in train])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "lr.png", dpi=110)
    written.append(out / "lr.png")
    plt.close(fig)
    return written
