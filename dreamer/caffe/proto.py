"""Caffe's file formats, read with `protobuf` alone.

`caffe_mini.proto` (beside this file) is the schema. Rather than generating code with
protoc, its small proto2 subset is turned into a descriptor here at import time, so the
schema stays one readable file and nothing needs regenerating when protobuf changes.
"""
from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from dreamer.errors import DreamerError

PROTO_FILE = Path(__file__).with_name("caffe_mini.proto")
PACKAGE = "dreamer_caffe"

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FDP.TYPE_DOUBLE, "float": _FDP.TYPE_FLOAT, "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64, "int32": _FDP.TYPE_INT32, "uint32": _FDP.TYPE_UINT32,
    "bool": _FDP.TYPE_BOOL, "string": _FDP.TYPE_STRING, "bytes": _FDP.TYPE_BYTES,
}
_LABELS = {"optional": _FDP.LABEL_OPTIONAL, "repeated": _FDP.LABEL_REPEATED}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|-?[\d.]+(?:[eE][-+]?\d+)?|[{}=;\[\],]')


def _tokens(text: str) -> list[str]:
    text = re.sub(r"//[^\n]*", "", text)
    return _TOKEN.findall(text)


class _Reader:
    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str:
        return self.tokens[self.pos]

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        if expected is not None and token != expected:
            raise ValueError(f"caffe_mini.proto: expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def done(self) -> bool:
        return self.pos >= len(self.tokens)


def _enum(r: _Reader, enum: descriptor_pb2.EnumDescriptorProto) -> None:
    enum.name = r.take()
    r.take("{")
    while r.peek() != "}":
        value = enum.value.add(name=r.take())
        r.take("=")
        value.number = int(r.take())
        r.take(";")
    r.take("}")


def _field(r: _Reader, msg: descriptor_pb2.DescriptorProto, label: str) -> None:
    type_name, name = r.take(), r.take()
    r.take("=")
    field = msg.field.add(name=name, number=int(r.take()), label=_LABELS[label])
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type_name = type_name  # resolved after all messages are known
    if r.peek() == "[":
        r.take("[")
        while True:
            option = r.take()
            r.take("=")
            value = r.take()
            if option == "default":
                field.default_value = value
            elif option == "packed":
                field.options.packed = value == "true"
            if r.take() == "]":
                break
    r.take(";")


def _message(r: _Reader, msg: descriptor_pb2.DescriptorProto) -> None:
    msg.name = r.take()
    r.take("{")
    while r.peek() != "}":
        word = r.take()
        if word == "enum":
            _enum(r, msg.enum_type.add())
        else:
            _field(r, msg, word)
    r.take("}")


def _resolve_types(fdp: descriptor_pb2.FileDescriptorProto) -> None:
    messages = {m.name for m in fdp.message_type}
    for msg in fdp.message_type:
        enums = {e.name for e in msg.enum_type}
        for field in msg.field:
            if not field.type_name:
                continue
            if field.type_name in messages:
                field.type = _FDP.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{field.type_name}"
            elif field.type_name in enums:
                field.type = _FDP.TYPE_ENUM
                field.type_name = f".{PACKAGE}.{msg.name}.{field.type_name}"
            else:
                raise ValueError(f"caffe_mini.proto: unknown type {field.type_name}")


def parse_proto(text: str) -> descriptor_pb2.FileDescriptorProto:
    """Builds a FileDescriptorProto from the proto2 subset caffe_mini.proto uses."""
    fdp = descriptor_pb2.FileDescriptorProto(name="dreamer_caffe_mini.proto", syntax="proto2")
    r = _Reader(_tokens(text))
    while not r.done():
        word = r.take()
        if word == "syntax":
            r.take("=")
            r.take()
            r.take(";")
        elif word == "package":
            fdp.package = r.take()
            r.take(";")
        elif word == "message":
            _message(r, fdp.message_type.add())
        else:
            raise ValueError(f"caffe_mini.proto: unexpected {word!r}")
    _resolve_types(fdp)
    return fdp


def _message_classes() -> dict:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(parse_proto(PROTO_FILE.read_text()))
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in ("NetParameter", "BlobProto", "BlobShape", "LayerParameter",
                     "V1LayerParameter")
    }


_CLASSES = _message_classes()
NetParameter = _CLASSES["NetParameter"]
BlobProto = _CLASSES["BlobProto"]
BlobShape = _CLASSES["BlobShape"]
LayerParameter = _CLASSES["LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]


# A deploy prototxt is text of some kilobytes (GoogLeNet's: 35 kB); one past this is not
# one (a caffemodel of 50 MB given as the deploy file, /dev/zero), and is not read whole.
MAX_PROTOTXT_BYTES = 16 * 1024 * 1024
_NOT_TEXT = ("perhaps the .caffemodel was given as the deploy file; use the deploy.prototxt "
             "that came with the model (-t names its folder, --prototxt the file in it)")


def read_prototxt(path: Path):
    """Parses a deploy prototxt; fields this project does not need are skipped. A file
    that is not text (a caffemodel, any binary) is refused in one line naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROTOTXT_BYTES + 1)
    except OSError as e:
        raise DreamerError(f"cannot read model definition {path}: {e.strerror}; "
                           "check the -t/--model_path folder") from None
    if len(data) > MAX_PROTOTXT_BYTES:
        raise DreamerError(f"model definition {path} is over {MAX_PROTOTXT_BYTES >> 20} MB, "
                           f"not a text prototxt; {_NOT_TEXT}")
    if _binary(data):
        raise DreamerError(f"model definition {path} is binary data, not a text prototxt; "
                           f"{_NOT_TEXT}")
    net = NetParameter()
    try:
        # bytes that are not UTF-8 may stand in comments (Caffe skips them): only where the
        # parse fails are they the reason
        text_format.Parse(data.decode("utf-8", errors="replace"), net,
                          allow_unknown_field=True)
    except text_format.ParseError as e:
        not_utf8 = _not_utf8(data)
        if not_utf8:
            raise DreamerError(f"model definition {path} is not a text prototxt ({not_utf8}); "
                               f"{_NOT_TEXT}") from None
        raise DreamerError(f"model definition {path} is not a valid prototxt "
                           f"({_printable(str(e))}); use the deploy.prototxt that came with "
                           "the model") from None
    if not net.layer and not net.layers:
        raise DreamerError(f"model definition {path} has no layers; "
                           "use the deploy.prototxt that came with the model")
    return net


def _binary(data: bytes) -> bool:
    """Whether bytes are binary rather than text: a NUL, or control characters (other
    than tab, line and page breaks) in more than 1 % of the first 64 kB."""
    head = data[:65536]
    if b"\0" in head:
        return True
    controls = sum(head.count(bytes([c])) for c in range(32) if c not in b"\t\n\v\f\r")
    controls += head.count(b"\x7f")
    return controls > max(2, len(head) // 100)


def _not_utf8(data: bytes) -> str | None:
    """Where bytes stop being UTF-8 text ("byte 0xff on line 2 is not UTF-8"), or None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return f"byte 0x{data[e.start]:02x} on line {line} is not UTF-8"
    return None


def _printable(text: str, limit: int = 200) -> str:
    """A parser's message fit for one line: what is not printable escaped, cut short."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in " ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "..."


def read_caffemodel(path: Path):
    """Parses a binary .caffemodel (weights, possibly of the whole training net)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DreamerError(f"cannot read model weights {path}: {e.strerror}; "
                           "check -t/--model_path and -m/--model_name") from None
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise DreamerError(f"model weights {path} are not a valid caffemodel ({e}); "
                           "the file may be truncated or not a Caffe model: download it again")\
            from None
    if not net.layer and not net.layers:
        raise DreamerError(f"model weights {path} hold no layers; "
                           "the file may be truncated or not a Caffe model: download it again")
    return net
