"""Sparkplug B's protobuf payload (org.eclipse.tahu.protobuf.Payload), built at runtime from the message
definitions of the specification's sparkplug_b.proto (proto2), so no protoc step and no generated module.

Field numbers and types follow sparkplug_b.proto of Sparkplug 3.0. Template, DataSet and the extension
ranges are left out: the gateway never sends them, and a received message holding them keeps them as
unknown fields (a DCMD metric of those types is refused as not a number).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"

_T = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _T.LABEL_OPTIONAL, _T.LABEL_REPEATED
_SCALARS = {
    "uint32": _T.TYPE_UINT32,
    "uint64": _T.TYPE_UINT64,
    "float": _T.TYPE_FLOAT,
    "double": _T.TYPE_DOUBLE,
    "bool": _T.TYPE_BOOL,
    "string": _T.TYPE_STRING,
    "bytes": _T.TYPE_BYTES,
}

# message -> (field name, number, type or message, repeated, in the oneof `value`)
_MESSAGES: dict[str, list[tuple[str, int, str, bool, bool]]] = {
    "Payload": [
        ("timestamp", 1, "uint64", False, False),
        ("metrics", 2, "Payload.Metric", True, False),
        ("seq", 3, "uint64", False, False),
        ("uuid", 4, "string", False, False),
        ("body", 5, "bytes", False, False),
    ],
    "Payload.PropertyValue": [
        ("type", 1, "uint32", False, False),
        ("is_null", 2, "bool", False, False),
        ("int_value", 3, "uint32", False, True),
        ("long_value", 4, "uint64", False, True),
        ("float_value", 5, "float", False, True),
        ("double_value", 6, "double", False, True),
        ("boolean_value", 7, "bool", False, True),
        ("string_value", 8, "string", False, True),
        ("propertyset_value", 9, "Payload.PropertySet", False, True),
        ("propertysets_value", 10, "Payload.PropertySetList", False, True),
    ],
    "Payload.PropertySet": [
        ("keys", 1, "string", True, False),
        ("values", 2, "Payload.PropertyValue", True, False),
    ],
    "Payload.PropertySetList": [("propertyset", 1, "Payload.PropertySet", True, False)],
    "Payload.MetaData": [
        ("is_multi_part", 1, "bool", False, False),
        ("content_type", 2, "string", False, False),
        ("size", 3, "uint64", False, False),
        ("seq", 4, "uint64", False, False),
        ("file_name", 5, "string", False, False),
        ("file_type", 6, "string", False, False),
        ("md5", 7, "string", False, False),
        ("description", 8, "string", False, False),
    ],
    "Payload.Metric": [
        ("name", 1, "string", False, False),
        ("alias", 2, "uint64", False, False),
        ("timestamp", 3, "uint64", False, False),
        ("datatype", 4, "uint32", False, False),
        ("is_historical", 5, "bool", False, False),
        ("is_transient", 6, "bool", False, False),
        ("is_null", 7, "bool", False, False),
        ("metadata", 8, "Payload.MetaData", False, False),
        ("properties", 9, "Payload.PropertySet", False, False),
        ("int_value", 10, "uint32", False, True),
        ("long_value", 11, "uint64", False, True),
        ("float_value", 12, "float", False, True),
        ("double_value", 13, "double", False, True),
        ("boolean_value", 14, "bool", False, True),
        ("string_value", 15, "string", False, True),
        ("bytes_value", 16, "bytes", False, True),
    ],
}


class DataType(IntEnum):
    """Sparkplug B's data types (the numbers of sparkplug_b.proto's DataType enum) the gateway uses."""

    INT32 = 3
    INT64 = 4
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="sparkplug_b.proto", package=PACKAGE, syntax="proto2")
    built: dict[str, descriptor_pb2.DescriptorProto] = {}
    for path, fields in _MESSAGES.items():  # parents come before their nested messages
        parent, _, name = path.rpartition(".")
        message = (built[parent].nested_type if parent else file.message_type).add(name=name)
        built[path] = message
        if any(in_oneof for *_, in_oneof in fields):
            message.oneof_decl.add(name="value")
        for field_name, number, kind, repeated, in_oneof in fields:
            field = message.field.add(
                name=field_name, number=number, label=_REPEATED if repeated else _OPTIONAL
            )
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type, field.type_name = _T.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
            if in_oneof:
                field.oneof_index = 0
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Payload: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Payload"))
"""The Sparkplug B payload message class: Payload(), .metrics.add(), SerializeToString(), FromString()."""
