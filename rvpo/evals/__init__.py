"""Evaluation harnesses: HealthBench-style rubrics, GPQA multiple choice (simple-evals' protocol).

A task's held-out evaluation lives in its package (tool calling: :mod:`rvpo.tasks.toolcall.eval`).
"""
