"""Reward functions: rule rewards, ToolRL-style tool-call rewards, LLM-judged rubric rewards."""
