"""Function schemas of the built-in tool-calling task and the compact form shown to the model.

A schema is ``{"name", "description", "parameters": {param: type-hint string}, "required": [...]}``.
The type hints are short strings ("string", "number", "integer", "celsius|fahrenheit") so that a
prompt with 2-3 tools stays well under 250 SmolLM2 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]


def _tool(name: str, description: str, params: dict[str, str], required: Sequence[str]) -> Schema:
    return {"name": name, "description": description, "parameters": dict(params), "required": list(required)}


TOOLS: dict[str, Schema] = {t["name"]: t for t in [
    _tool("get_weather", "Current weather in a city.", {"city": "string", "unit": "celsius|fahrenheit"}, ["city"]),
    _tool("get_forecast", "Weather forecast.", {"city": "string", "days": "integer"}, ["city", "days"]),
    _tool("convert_units", "Convert units.",
          {"value": "number", "from_unit": "string", "to_unit": "string"}, ["value", "from_unit", "to_unit"]),
    _tool("convert_currency", "Convert money.",
          {"amount": "number", "from_currency": "ISO code", "to_currency": "ISO code"},
          ["amount", "from_currency", "to_currency"]),
    _tool("create_event", "Add a calendar event.",
          {"title": "string", "date": "YYYY-MM-DD", "time": "HH:MM"}, ["title", "date"]),
    _tool("list_events", "List calendar events on a date.", {"date": "YYYY-MM-DD"}, ["date"]),
    _tool("search_web", "Search the web.", {"query": "string", "max_results": "integer"}, ["query"]),
    _tool("calculate", "Arithmetic on a and b.",
          {"operation": "add|subtract|multiply|divide", "a": "number", "b": "number"}, ["operation", "a", "b"]),
    _tool("set_timer", "Start a countdown timer.", {"minutes": "integer"}, ["minutes"]),
    _tool("translate", "Translate text.", {"text": "string", "target_language": "string"}, ["text", "target_language"]),
    _tool("get_stock_price", "Latest stock price.", {"symbol": "ticker"}, ["symbol"]),
    _tool("get_time", "Current local time in a city.", {"city": "string"}, ["city"]),
]}


def compact_signature(schema: Schema) -> str:
    """One-line JSON signature of a tool, optional parameters marked with a trailing '?'."""
    req = set(schema.get("required", []))
    params = {(k if k in req else f"{k}?"): v for k, v in schema["parameters"].items()}
    return json.dumps({"name": schema["name"], "description": schema["description"], "parameters": params},
                      ensure_ascii=False, separators=(",", ":"))


def bfcl_compact_signature(function: dict[str, Any]) -> str:
    """Compact one-line signature of a BFCL function schema (JSON-schema ``properties``)."""
    params = function.get("parameters") or {}
    props = params.get("properties") or {}
    req = set(params.get("required") or [])
    out: dict[str, str] = {}
    for k, p in props.items():
        hint = str(p.get("type", "any")) if isinstance(p, dict) else "any"
        if isinstance(p, dict) and p.get("enum"):
            hint = "|".join(str(e) for e in p["enum"])
        out[k if k in req else f"{k}?"] = hint
    return json.dumps({"name": function.get("name"), "description": function.get("description", ""), "parameters": out},
                      ensure_ascii=False, separators=(", ", ": "))


FORMAT_INSTRUCTIONS = (
    "Reply with <think>reasoning</think> then\n"
    "<tool_call>\n"
    '{"name": "tool", "parameters": {"arg": "value"}}\n'
    "</tool_call>\n"
    "One JSON call per line. If no tool fits, reply <think>reasoning</think> then <response>answer</response>."
)


def system_prompt(signatures: Sequence[str]) -> str:
    """The system prompt: the available tools (one compact signature per line) and the output format."""
    return "You can call these tools:\n" + "\n".join(signatures) + "\n" + FORMAT_INSTRUCTIONS
