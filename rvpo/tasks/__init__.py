"""Built-in tasks (datasets + their reward functions). ``rvpo.tasks.toolcall``: ToolRL-style tool calling."""
