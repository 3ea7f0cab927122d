"""``rvpo train``: config (``rvpo.train.config``), the run (``rvpo.train.run.train``), callbacks,
plots, summary and policy loading. Importing this package does not import transformers or TRL."""

from rvpo.train.config import ConfigError, EvalConfig, LoraConfig, TrainConfig, build_config

__all__ = ["ConfigError", "EvalConfig", "LoraConfig", "TrainConfig", "build_config"]
