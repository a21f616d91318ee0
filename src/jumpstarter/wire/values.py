"""Driver call arguments and results as `google.protobuf.Value`.

Two dialects share one wire type:

* **plain** JSON, what upstream Jumpstarter peers send and expect: numbers are doubles, bytes
  become text, models become objects.
* **tagged**, used when both ends are ours (negotiated with the `x-jmp-codec` metadata key): the
  same JSON, except that values JSON cannot carry faithfully are wrapped as
  `{"$jmp": tag, "v": ...}` objects: integral floats, integers beyond 2**53, bytes, tuples,
  dataclass / pydantic model instances and dicts that themselves use the `$jmp` key.
  Ordinary integers stay plain numbers, so the tagged dialect costs nothing for common values.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import sys
import uuid
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any

from google.protobuf.struct_pb2 import Value

#: Metadata key (and value) announcing that a peer speaks the tagged dialect (exporters send it
#: in GetReport's initial metadata).
CODEC_KEY = "x-jmp-codec"
CODEC_VERSION = "1"
#: Our clients announce the tagged dialect in their user agent, which gRPC sends with every call
#: anyway, so the announcement costs nothing per call.
CODEC_USER_AGENT = "jumpstarter-codec/1"

TAG = "$jmp"
_SAFE_INT = 2**53


def encode(obj: Any, tagged: bool) -> Value:
    """Encode a Python value as a protobuf Value."""
    value = Value()
    _fill(value, obj, tagged)
    return value


def _fill(value: Value, obj: Any, tagged: bool) -> None:
    if obj is None:
        value.null_value = 0  # type: ignore[assignment]
    elif obj is True or obj is False:
        value.bool_value = obj
    elif isinstance(obj, int) and not isinstance(obj, enum.Enum):
        if -_SAFE_INT <= obj <= _SAFE_INT:
            value.number_value = obj
        elif tagged:
            _tagged(value, "int", str(obj))
        else:
            value.number_value = float(obj)
    elif isinstance(obj, float):
        if tagged and obj.is_integer():
            struct = value.struct_value
            struct.fields[TAG].string_value = "float"
            struct.fields["v"].number_value = obj
        else:
            value.number_value = obj
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, dict):
        fields = value.struct_value.fields
        if tagged and TAG in obj:
            # the payload is filled field by field: going through _fill again would re-tag it forever
            struct = value.struct_value
            struct.fields[TAG].string_value = "dict"
            inner = struct.fields["v"].struct_value
            inner.SetInParent()
            for key, item in obj.items():
                _fill(inner.fields[str(key)], item, tagged)
            return
        value.struct_value.SetInParent()
        for key, item in obj.items():
            _fill(fields[str(key)], item, tagged)
    elif isinstance(obj, list):
        values = value.list_value.values
        value.list_value.SetInParent()
        for item in obj:
            _fill(values.add(), item, tagged)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if tagged:
            _tagged(value, "bytes", base64.b64encode(data).decode("ascii"))
        else:
            try:
                value.string_value = data.decode("utf-8")
            except UnicodeDecodeError:
                value.string_value = base64.b64encode(data).decode("ascii")
    elif isinstance(obj, (tuple, set, frozenset)):
        if tagged and isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            _tagged(value, "tuple", list(obj))
        else:
            _fill(value, list(obj), tagged)
    else:
        _fill_object(value, obj, tagged)


def _fill_object(value: Value, obj: Any, tagged: bool) -> None:
    if isinstance(obj, enum.Enum):
        _fill(value, obj.value, tagged)
    elif isinstance(obj, (uuid.UUID, PurePath)):
        value.string_value = str(obj)
    elif isinstance(obj, (datetime, date, time)):
        value.string_value = obj.isoformat()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        _model(value, obj, data, tagged)
    elif _is_pydantic_model(obj):
        # the tagged dialect carries bytes and big ints itself; plain peers get pydantic's JSON form
        data = obj.model_dump(mode="python") if tagged else obj.model_dump(mode="json")
        try:
            _model(value, obj, data, tagged)
        except TypeError:
            _model(value, obj, obj.model_dump(mode="json"), tagged)
    elif hasattr(obj, "_asdict"):
        _fill(value, obj._asdict(), tagged)
    else:
        raise TypeError(f"cannot send a value of type {type(obj).__qualname__} over the wire")


def _model(value: Value, obj: Any, data: dict[str, Any], tagged: bool) -> None:
    if tagged:
        cls = type(obj)
        inner = Value()
        _fill(inner, data, tagged)
        struct = value.struct_value
        struct.fields[TAG].string_value = "model"
        struct.fields["type"].string_value = f"{cls.__module__}:{cls.__qualname__}"
        struct.fields["v"].CopyFrom(inner)
    else:
        _fill(value, data, tagged)


def _tagged(value: Value, tag: str, payload: Any) -> None:
    struct = value.struct_value
    struct.fields[TAG].string_value = tag
    _fill(struct.fields["v"], payload, True)


def _is_pydantic_model(obj: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, pydantic.BaseModel)


class Batch(list):  # type: ignore[type-arg]
    """Several items of a streaming call carried in one message (tagged dialect only)."""


def encode_batch_values(values: list[Value]) -> Value:
    """One Value carrying several already-encoded streaming-call items."""
    value = Value()
    struct = value.struct_value
    struct.fields[TAG].string_value = "batch"
    struct.fields["v"].list_value.values.extend(values)
    return value


def decode(value: Value, tagged: bool) -> Any:
    """Decode a protobuf Value into Python.

    Integral numbers decode as `int` in both dialects (upstream peers send every number as a
    double; an integral double almost always was an int)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and -_SAFE_INT <= number <= _SAFE_INT else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        fields = value.struct_value.fields
        if tagged and TAG in fields:
            return _untag(fields)
        return {key: decode(item, tagged) for key, item in fields.items()}
    if kind == "list_value":
        return [decode(item, tagged) for item in value.list_value.values]
    return None


def _untag(fields: Any) -> Any:
    tag = fields[TAG].string_value
    if tag == "dict":  # the payload's own "$jmp" key is data, not a tag
        return {key: decode(item, True) for key, item in fields["v"].struct_value.fields.items()}
    payload = decode(fields["v"], True)
    if tag == "float":  # the raw double: decoding it as a number would turn -0.0 into 0
        return fields["v"].number_value
    if tag == "int":
        return int(payload)
    if tag == "bytes":
        return base64.b64decode(payload)
    if tag == "tuple":
        return tuple(payload)
    if tag == "model":
        return rebuild_model(fields["type"].string_value, payload)
    if tag == "batch":
        return Batch(payload)
    raise ValueError(f"unknown tagged value {tag!r}")


def rebuild_model(type_path: str, data: Any) -> Any:
    """Rebuild a dataclass or pydantic model named `module:qualname`.

    Only classes whose module is already imported are rebuilt (a driver client imports its own
    models); anything else stays a plain dict, so a peer cannot make us import code."""
    module_name, _, qualname = type_path.partition(":")
    module = sys.modules.get(module_name)
    cls: Any = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not isinstance(cls, type) or not isinstance(data, dict):
        return data
    return to_type(data, cls)


def to_type(data: Any, annotation: Any) -> Any:
    """Convert a decoded value to a declared type (pydantic model, dataclass, bytes, int, ...).

    Values that already have the type, and annotations we do not understand, pass through."""
    if annotation is Any or annotation is None or not isinstance(annotation, type):
        return data
    if isinstance(data, annotation):
        return data
    if annotation is bytes and isinstance(data, str):
        return data.encode("utf-8")
    if annotation is int and isinstance(data, float) and data.is_integer():
        return int(data)
    if annotation is float and isinstance(data, int):
        return float(data)
    if isinstance(data, dict):
        if dataclasses.is_dataclass(annotation):
            return annotation(**data)
        if _is_pydantic_class(annotation):
            return annotation.model_validate(data)  # type: ignore[attr-defined]
    return data


def _is_pydantic_class(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)
