"""Reward functions shared by tasks: the TRL reward contract (``base``) and LLM-judged rubric rewards.

A task's own rewards live in its package (the ToolRL tool-call rewards: :mod:`rvpo.tasks.toolcall.rewards`).
"""
