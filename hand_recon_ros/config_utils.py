"""Small helpers shared by the configuration dataclasses (network, synthetic data, losses)."""

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar('T', bound='DataclassInstance')


def dataclass_from_dict(cls: type[T], data: Optional[Mapping[str, Any]], what: Optional[str] = None) -> T:
    """Build dataclass `cls` from a dict, refusing unknown keys with a message that lists the known ones."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown {what or cls.__name__} keys {unknown}; known: {sorted(known)}')
    return cls(**data)
