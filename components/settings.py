"""How every custom component takes its parameters: one typed, frozen settings object.

A component's `settings.py` defines a `ComponentSettings` subclass; the
component passes its JSON form as the single execution parameter `settings`
(what ML Metadata records and a compiled Kubeflow pipeline carries), and the
executor reads it back with `from_json`. Unknown or missing keys fail loudly.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Type, TypeVar

from pydantic import BaseModel, ConfigDict

SETTINGS_KEY = "settings"

T = TypeVar("T", bound="ComponentSettings")


class ComponentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> str:
        return self.model_dump_json()

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls: Type[T], text: str) -> T:
        return cls.model_validate_json(text)

    @classmethod
    def from_dict(cls: Type[T], values: Mapping[str, Any]) -> T:
        return cls.model_validate(dict(values))

    @classmethod
    def from_exec_properties(cls: Type[T], exec_properties: Mapping[str, Any]) -> T:
        return cls.from_json(exec_properties[SETTINGS_KEY])


def settings_parameter():
    """The ComponentSpec PARAMETERS entry every custom component declares."""
    from tfx.types.component_spec import ExecutionParameter
    return {SETTINGS_KEY: ExecutionParameter(type=str)}
