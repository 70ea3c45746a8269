"""JSON schemas the way OpenAI's strict structured output takes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def strict_schema(model_type: type[BaseModel]) -> dict[str, Any]:
    """``model_type``'s JSON schema made strict: every object closed
    (``additionalProperties: false``) with every property required, and no ``default``
    (strict mode refuses it; pydantic fills defaults in when it validates anyway)."""
    schema = _strict(model_type.model_json_schema())
    if not isinstance(schema, dict):  # pragma: no cover  # a model's schema is an object
        raise TypeError(f"{model_type.__name__} has no object schema")
    return schema


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if key != "default"}
    if out.get("type") == "object":
        out.setdefault("additionalProperties", False)
        out["required"] = list(out.get("properties", {}))
    return out
