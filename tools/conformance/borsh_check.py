#!/usr/bin/env python3
"""A second, independent implementation of the LabHit wire encodings.

It knows nothing about the Rust types: it reads the generated, normative description
`schema/wire/borsh-layout.json` and, for every golden vector in `tests/vectors/`,

1. decodes the borsh bytes (`borsh_hex`) with the layout, refusing non-canonical input and
   trailing bytes, and checks the result equals the vector's `json` (same JSON types, same
   values);
2. encodes the vector's `json` with the layout and checks it gives exactly the same bytes.

It is the proof that the description suffices to implement the contract in another language.
Python standard library only. Exit status: 0 when every vector round-trips, 1 when any does
not (each failure is reported as `file: vector: problem`), 2 on bad usage or unreadable input.

    python3 tools/conformance/borsh_check.py [--layout FILE] [--vectors DIR] [-v]
"""

import argparse
import datetime
import json
import math
import re
import struct
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INTEGER_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)


class WireError(Exception):
    """Input that is not the canonical encoding of a value of the expected type."""


class Reader:
    """A cursor over borsh bytes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise WireError(
                f"unexpected end of input reading {what} at byte {self.pos} "
                f"({n} bytes wanted, {len(self.data) - self.pos} left)"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


class Layout:
    """Decoding and encoding driven by `borsh-layout.json` alone."""

    def __init__(self, layout):
        if layout.get("byte_order") != "little-endian":
            raise WireError(f"unsupported byte order {layout.get('byte_order')!r}")
        self.primitives = layout["primitives"]
        self.types = layout["types"]

    # ---- type expressions -------------------------------------------------------------

    def resolve(self, expr):
        """Splits a type expression into (constructor, argument)."""
        if isinstance(expr, str):
            if expr in self.primitives:
                return "primitive", expr
            if expr in self.types:
                return "named", expr
            raise WireError(f"type `{expr}` is neither a primitive nor a described type")
        if isinstance(expr, dict) and len(expr) == 1:
            (constructor, argument), = expr.items()
            if constructor in ("option", "vec", "map"):
                return constructor, argument
        raise WireError(f"unknown type expression {json.dumps(expr)}")

    def is_string_like(self, expr):
        """Whether values of `expr` are JSON strings (map keys must be)."""
        kind, arg = self.resolve(expr)
        if kind == "primitive":
            return arg == "string"
        if kind == "named" and self.types[arg]["kind"] == "newtype":
            return self.is_string_like(self.types[arg]["type"])
        return False

    # ---- decoding ---------------------------------------------------------------------

    def decode(self, expr, reader):
        kind, arg = self.resolve(expr)
        if kind == "primitive":
            return self.decode_primitive(arg, reader)
        if kind == "option":
            tag = reader.take(1, "option tag")[0]
            if tag == 0:
                return None
            if tag == 1:
                return self.decode(arg, reader)
            raise WireError(f"invalid option tag {tag}")
        if kind == "vec":
            count = self.decode_primitive("u32", reader)
            return [self.decode(arg, reader) for _ in range(count)]
        if kind == "map":
            if not self.is_string_like(arg["key"]):
                raise WireError("map keys must be strings to have a JSON form")
            count = self.decode_primitive("u32", reader)
            out, previous = {}, None
            for _ in range(count):
                key = self.decode(arg["key"], reader)
                if previous is not None and key.encode() <= previous.encode():
                    raise WireError(f"map key {key!r} is not strictly after {previous!r}")
                out[key] = self.decode(arg["value"], reader)
                previous = key
            return out
        return self.decode_named(arg, reader)

    def decode_primitive(self, name, reader):
        spec = self.primitives[name]
        if "signed" in spec:
            fmt = INTEGER_FORMATS[spec["size"]]
            fmt = "<" + (fmt.lower() if spec["signed"] else fmt)
            return struct.unpack(fmt, reader.take(spec["size"], name))[0]
        if name == "unit":
            return None
        if name == "bool":
            byte = reader.take(1, "bool")[0]
            if byte > 1:
                raise WireError(f"invalid bool byte {byte}")
            return byte == 1
        if name == "f64":
            value = struct.unpack("<d", reader.take(8, "f64"))[0]
            if math.isnan(value):
                raise WireError("NaN is not a valid f64")
            return value
        if name == "string":
            length = self.decode_primitive("u32", reader)
            raw = reader.take(length, "string bytes")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise WireError(f"string is not UTF-8: {err}") from None
        if name == "uuid":
            return str(uuid.UUID(bytes=bytes(reader.take(spec["size"], "uuid"))))
        if name == "timestamp":
            parts = {f["name"]: self.decode_primitive(f["type"], reader) for f in spec["fields"]}
            return format_timestamp(parts["seconds"], parts["nanos"])
        raise WireError(f"primitive `{name}` has no known decoding")

    def decode_named(self, name, reader):
        ty = self.types[name]
        kind = ty["kind"]
        if kind == "struct":
            return self.decode_fields(ty["fields"], reader)
        if kind == "newtype":
            value = self.decode(ty["type"], reader)
            check_pattern(ty, value, name)
            return value
        if kind == "enum":
            tag = self.decode_primitive(ty["tag"], reader)
            variants = [v for v in ty["variants"] if v["tag"] == tag]
            if not variants:
                raise WireError(f"unknown {name} tag {tag}")
            variant = variants[0]
            style = ty["json"]
            if style == "string":
                return variant["name"]
            if style == "internally_tagged":
                out = {ty["tag_key"]: variant["name"]}
                out.update(self.decode_fields(variant["fields"], reader))
                return out
            if style == "untagged":
                value = self.decode(variant["type"], reader)
                chosen = self.untagged_variant(ty, value, name)
                if chosen["tag"] != tag:
                    raise WireError(
                        f"{name} value {json.dumps(value)} must be encoded with tag "
                        f"{chosen['tag']}, not {tag}"
                    )
                return value
            raise WireError(f"{name}: unknown JSON representation {style!r}")
        raise WireError(f"{name}: unknown kind {kind!r}")

    def decode_fields(self, fields, reader):
        return {f["name"]: self.decode(f["type"], reader) for f in fields}

    # ---- encoding ---------------------------------------------------------------------

    def encode(self, expr, value, out):
        kind, arg = self.resolve(expr)
        if kind == "primitive":
            self.encode_primitive(arg, value, out)
        elif kind == "option":
            if value is None:
                out.append(0)
            else:
                out.append(1)
                self.encode(arg, value, out)
        elif kind == "vec":
            expect(isinstance(value, list), f"expected an array, got {json.dumps(value)}")
            self.encode_primitive("u32", len(value), out)
            for item in value:
                self.encode(arg, item, out)
        elif kind == "map":
            expect(isinstance(value, dict), f"expected an object, got {json.dumps(value)}")
            expect(self.is_string_like(arg["key"]), "map keys must be strings")
            self.encode_primitive("u32", len(value), out)
            for key in sorted(value, key=lambda k: k.encode("utf-8")):
                self.encode(arg["key"], key, out)
                self.encode(arg["value"], value[key], out)
        else:
            self.encode_named(arg, value, out)

    def encode_primitive(self, name, value, out):
        spec = self.primitives[name]
        if "signed" in spec:
            expect(
                isinstance(value, int) and not isinstance(value, bool),
                f"expected an integer for {name}, got {json.dumps(value)}",
            )
            expect(
                spec["minimum"] <= value <= spec["maximum"],
                f"{value} is out of the range of {name}",
            )
            fmt = INTEGER_FORMATS[spec["size"]]
            out += struct.pack("<" + (fmt.lower() if spec["signed"] else fmt), value)
        elif name == "unit":
            expect(value is None, f"expected null, got {json.dumps(value)}")
        elif name == "bool":
            expect(isinstance(value, bool), f"expected a boolean, got {json.dumps(value)}")
            out.append(1 if value else 0)
        elif name == "f64":
            expect(
                isinstance(value, (int, float)) and not isinstance(value, bool),
                f"expected a number, got {json.dumps(value)}",
            )
            expect(math.isfinite(value), "numbers must be finite")
            out += struct.pack("<d", float(value))
        elif name == "string":
            expect(isinstance(value, str), f"expected a string, got {json.dumps(value)}")
            raw = value.encode("utf-8")
            self.encode_primitive("u32", len(raw), out)
            out += raw
        elif name == "uuid":
            expect(isinstance(value, str), f"expected a UUID string, got {json.dumps(value)}")
            try:
                out += uuid.UUID(value).bytes
            except ValueError:
                raise WireError(f"{value!r} is not a UUID") from None
        elif name == "timestamp":
            seconds, nanos = parse_timestamp(value)
            parts = {"seconds": seconds, "nanos": nanos}
            for field in spec["fields"]:
                self.encode_primitive(field["type"], parts[field["name"]], out)
        else:
            raise WireError(f"primitive `{name}` has no known encoding")

    def encode_named(self, name, value, out):
        ty = self.types[name]
        kind = ty["kind"]
        if kind == "struct":
            self.encode_fields(name, ty["fields"], ty["unknown_fields"], value, out, ())
        elif kind == "newtype":
            check_pattern(ty, value, name)
            self.encode(ty["type"], value, out)
        elif ty["json"] == "string":
            names = [v["name"] for v in ty["variants"]]
            expect(value in names, f"{json.dumps(value)} is not one of {name}: {names}")
            self.encode_primitive(ty["tag"], ty["variants"][names.index(value)]["tag"], out)
        elif ty["json"] == "internally_tagged":
            key = ty["tag_key"]
            expect(isinstance(value, dict) and key in value, f"{name}: expected an object with `{key}`")
            variants = [v for v in ty["variants"] if v["name"] == value[key]]
            expect(variants, f"{json.dumps(value[key])} is not a variant of {name}")
            variant = variants[0]
            self.encode_primitive(ty["tag"], variant["tag"], out)
            self.encode_fields(
                f"{name}::{variant['name']}", variant["fields"], variant["unknown_fields"],
                value, out, (key,),
            )
        elif ty["json"] == "untagged":
            variant = self.untagged_variant(ty, value, name)
            self.encode_primitive(ty["tag"], variant["tag"], out)
            self.encode(variant["type"], value, out)
        else:
            raise WireError(f"{name}: unknown representation {ty['json']!r}")

    def encode_fields(self, owner, fields, unknown, value, out, skip):
        expect(isinstance(value, dict), f"{owner}: expected an object, got {json.dumps(value)}")
        names = {f["name"] for f in fields}
        extra = sorted(set(value) - names - set(skip))
        expect(not (extra and unknown == "refused"), f"{owner}: unknown fields {extra}")
        for field in fields:
            if field["name"] in value:
                item = value[field["name"]]
            elif field["json_required"]:
                raise WireError(f"{owner}: missing required field `{field['name']}`")
            else:
                item = self.absent(field["type"])
            self.encode(field["type"], item, out)

    def absent(self, expr):
        """The value a left-out optional field stands for."""
        kind, _ = self.resolve(expr)
        return {"option": None, "vec": [], "map": {}}.get(kind)

    # ---- untagged enums ---------------------------------------------------------------

    def untagged_variant(self, ty, value, name):
        """The first variant (in tag order) whose payload represents `value` exactly."""
        for variant in sorted(ty["variants"], key=lambda v: v["tag"]):
            if self.fits(variant["type"], value):
                return variant
        raise WireError(f"no {name} variant represents {json.dumps(value)}")

    def fits(self, expr, value):
        """Whether `value` is exactly representable as `expr` (encoding it would succeed)."""
        try:
            self.encode(expr, value, bytearray())
            kind, arg = self.resolve(expr)
            if kind == "primitive" and arg == "f64":
                return isinstance(value, float)
            return True
        except WireError:
            return False


def expect(condition, message):
    if not condition:
        raise WireError(message)


def check_pattern(ty, value, name):
    pattern = ty.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise WireError(f"{value!r} is not a valid {name} (must match {pattern})")


def format_timestamp(seconds, nanos):
    if nanos > 999_999_999:
        raise WireError(f"timestamp nanoseconds {nanos} out of range")
    try:
        at = EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise WireError(f"timestamp of {seconds} seconds is out of range") from None
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1_000 == 0:
        fraction = f".{nanos // 1_000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def parse_timestamp(text):
    match = isinstance(text, str) and RFC3339.fullmatch(text)
    if not match:
        raise WireError(f"{json.dumps(text)} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    try:
        at = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
    except ValueError as err:
        raise WireError(f"{text!r}: {err}") from None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        at -= sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    delta = at - EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds, int(fraction.ljust(9, "0")) if fraction else 0


def same(a, b):
    """JSON equality that tells booleans, integers and floats apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check_vector(layout, type_name, vector):
    """Returns the problems of one vector (empty when it round-trips)."""
    problems = []
    data = bytes.fromhex(vector["borsh_hex"])
    try:
        reader = Reader(data)
        decoded = layout.decode(type_name, reader)
        if reader.pos != len(data):
            problems.append(f"{len(data) - reader.pos} trailing bytes after the value")
        elif not same(decoded, vector["json"]):
            problems.append(
                f"decoded {json.dumps(decoded, ensure_ascii=False)} but the JSON is "
                f"{json.dumps(vector['json'], ensure_ascii=False)}"
            )
    except WireError as err:
        problems.append(f"decoding the bytes: {err}")
    except (KeyError, TypeError, ValueError) as err:
        problems.append(f"decoding the bytes: the layout is malformed ({err!r})")
    try:
        encoded = bytearray()
        layout.encode(type_name, vector["json"], encoded)
        if bytes(encoded) != data:
            problems.append(f"encoding the JSON gave {encoded.hex()}, expected {data.hex()}")
    except WireError as err:
        problems.append(f"encoding the JSON: {err}")
    except (KeyError, TypeError, ValueError) as err:
        problems.append(f"encoding the JSON: the layout is malformed ({err!r})")
    return problems


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", type=Path, default=ROOT / "schema/wire/borsh-layout.json")
    parser.add_argument("--vectors", type=Path, default=ROOT / "tests/vectors")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every vector")
    args = parser.parse_args(argv)
    try:
        layout = Layout(json.loads(args.layout.read_text(encoding="utf-8")))
        files = sorted(args.vectors.glob("*.json"))
        sets = [(f, json.loads(f.read_text(encoding="utf-8"))) for f in files]
    except (OSError, ValueError, KeyError, WireError) as err:
        print(f"borsh_check: cannot read the layout or vectors: {err}", file=sys.stderr)
        return 2
    if not sets:
        print(f"borsh_check: no vector files in {args.vectors}", file=sys.stderr)
        return 2
    total = failed = 0
    for path, vector_set in sets:
        type_name = vector_set["type"]
        for vector in vector_set["vectors"]:
            total += 1
            problems = check_vector(layout, type_name, vector)
            for problem in problems:
                print(f"{path.name}: {vector['name']}: {problem}", file=sys.stderr)
            failed += bool(problems)
            if args.verbose and not problems:
                print(f"ok {path.name}: {vector['name']}")
    passed = total - failed
    print(
        f"borsh_check: {passed}/{total} golden vectors of {len(sets)} types round-trip "
        f"using only {args.layout.name}"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
