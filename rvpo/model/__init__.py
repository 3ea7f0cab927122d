"""The model: loading (the embedded SmolLM2 GGUF, local folders, hub ids), trained policies (runs,
checkpoints, LoRA merged into its base), generation and precision (bf16 where the CPU has bf16 units).

- :mod:`rvpo.model.loading`: ``load_model_and_tokenizer``, ``resolve_model``, the embedded default.
- :mod:`rvpo.model.policy`: ``load_policy`` (a run directory, a checkpoint or a model), checkpoints,
  ``merged_lora``.
- :mod:`rvpo.model.generation`: ``generate`` (chat prompts in, completions out).
- :mod:`rvpo.model.precision`: ``resolve_precision``, the ``auto`` rule, ``autocast``.

Importing the package loads none of them (nor torch).
"""
