"""Training options every neural backend accepts (each backend's Options extends these)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import option


DEFAULT_EPOCHS = 10  # when neither epochs nor max_minutes is given


@dataclass
class TrainOptions:
    epochs: int | None = option(None, "passes over the text at most (default: 10, or as many as --max-minutes allows when that is given)")
    max_minutes: float | None = option(None, "stop after this many minutes, keeping the best model")
    batch_size: int = option(20, "training examples a step (token sequences or windows)")
    optimizer: str = option("sgd", "sgd or adam (either anneals the rate when validation stalls)")
    lr: float = option(1.0, "learning rate")
    clip: float = option(0.25, "gradient-norm clipping")
    dropout: float = option(0.2, "dropout share in training")
    softmax: str = option("full", "full, or adaptive (Grave et al. 2017: several times cheaper to train)")
    patience: int = option(2, "epochs without improvement before stopping early")
    anneal_below: float = option(1.0, "anneal when validation perplexity improves by less than this many percent")
    anneal_by: float = option(4.0, "what the learning rate is divided by when it anneals")
    schedule: str = option("plateau", "plateau, or linear: also decay the rate to 0 over the budget (minutes or epochs, whichever ends first)")
    average: float = option(0.0, "validate and keep the mean of the weights over this last share of the budget (Polyak averaging; 0: off)")
    valid: str | None = option(None, "validation text file (default: every 20th sentence of the training text)")
    seed: int = option(0, "random seed: the same seed and text give the same model")
    device: str = option("auto", "auto, cpu or cuda")
    threads: int = option(0, "torch threads for training; 0: one per core")
    resume: bool = option(False, "continue from the checkpoint an interrupted training left")
    adapt_passes: int = option(2, "passes over the documents the model learns (foretell learn, learning on save)")
    adapt_tokens: int = option(20000, "learned tokens fine-tuned on at most, the most recently learned documents first")
    adapt_lr: float | None = option(None, "learning rate for learning documents (default: a tenth of lr)")

    @property
    def epoch_limit(self) -> int | None:
        """Epochs to run at most (None: until the time budget or early stopping ends it)."""
        if self.epochs is not None:
            return self.epochs
        return None if self.max_minutes else DEFAULT_EPOCHS

    def check(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max-minutes must be positive, not {self.max_minutes}")
        if self.batch_size < 1:
            raise ValueError(f"batch-size must be at least 1, not {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, not {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, not {self.lr}")
        if self.adapt_passes < 1:
            raise ValueError(f"adapt-passes must be at least 1, not {self.adapt_passes}")
        if self.adapt_tokens < 1:
            raise ValueError(f"adapt-tokens must be at least 1, not {self.adapt_tokens}")
        if self.adapt_lr is not None and not self.adapt_lr > 0:
            raise ValueError(f"adapt-lr must be positive, not {self.adapt_lr}")
        if not self.clip > 0:
            raise ValueError(f"clip must be positive, not {self.clip}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not self.anneal_below >= 0:
            raise ValueError(f"anneal-below must be 0 or more, not {self.anneal_below}")
        if not self.anneal_by >= 1:
            raise ValueError(f"anneal-by must be 1 or more, not {self.anneal_by}")
        if not 0 <= self.average <= 1:
            raise ValueError(f"average must be a share between 0 and 1, not {self.average}")
        if self.schedule not in ("plateau", "linear"):
            raise ValueError(f"schedule must be plateau or linear, not {self.schedule!r}")
        if self.softmax not in ("full", "adaptive"):
            raise ValueError(f"softmax must be full or adaptive, not {self.softmax!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
