"""Evaluation harnesses: tool calling, HealthBench-style rubrics, GPQA-style multiple choice."""
