"""Schema-valid sample values: the bodies behind `tcpulse.testing.sample` and its Hypothesis strategy.

Owns: `sample_value(schema, resolve, values, rnd)`, a value that its schema accepts, and
`sample_fields`, the routing-key fields of a sample (given ones kept, the rest filled in from the
body's schema). Properties named like a routing-key field take that field's value, so a sample's
body and key agree (`status.taskId` is the key's taskId). Without `rnd` every choice is the first
that fits (the same sample each time); with a `random.Random` the choices vary (enum members,
oneOf branches, optional properties, array lengths, numbers), which is how the Hypothesis
strategy draws. Every value is checked with `tcpulse.validator` as it is built, and a choice that
fails is not taken.

Pure module: imports only the standard library, `tcpulse.validator` and `slugid` (ids look real).

Example:
    >>> value = sample_value({"type": "object", "required": ["taskId", "state"], "properties": {
    ...     "taskId": {"type": "string"}, "state": {"enum": ["pending", "running"]}}}, None, {"taskId": "abc"})
    >>> value
    {'taskId': 'abc', 'state': 'pending'}
"""
import random
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

from tcpulse._api.validator import Resolver, compile_schema

NOW = "2026-01-01T00:00:00.000Z"
_FORMATS = {"date-time": NOW, "uri": "https://example.com/sample", "email": "user@example.com",
            "hostname": "example.com", "ipv4": "127.0.0.1", "ipv6": "::1", "regex": ".*"}


class SampleError(ValueError):
    """No value that the schema accepts could be built (a schema tcpulse cannot sample)."""


def _slug() -> str:
    import slugid

    return str(slugid.nice())


def _string_candidates(schema: Mapping[str, Any], name: str) -> List[str]:
    found = _FORMATS.get(schema.get("format", ""))
    words = [found] if found else []
    slug = _slug()
    words += [slug, "example"] if name.endswith("Id") else ["example", slug]
    words += ["proj-example/worker-example", str(uuid.uuid4()), "https://example.com/sample"]
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    words += ["a" * max(low, 1)] + (["a" * high] if high else [])
    return words


def _fits(check: Callable[[Any, Any], Any], value: Any) -> bool:
    return check(value, ()) is None


class _Sampler:
    def __init__(self, resolve: Resolver, values: Mapping[str, Any], rnd: Optional[random.Random],
                 checks: Optional[Dict[int, Any]] = None) -> None:
        self.resolve = resolve
        self.values = values
        self.rnd = rnd
        self.checks: Dict[int, Any] = {} if checks is None else checks  # id(schema) -> (schema, its check)

    def sample(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        if depth > 30:
            raise SampleError("the schema nests deeper than 30 levels")
        if schema is True or schema == {}:
            return {}
        if "$ref" in schema:
            target, inner = self._deref(schema["$ref"])
            return _Sampler(inner, self.values, self.rnd, self.checks).sample(target, name, depth + 1)
        check = self._check(schema)
        for value in self._candidates(schema, name, depth):
            if _fits(check, value):
                return value
        raise SampleError(f"no sample value fits the schema of {name or 'the body'!r}: {schema}")

    def _check(self, schema: Any) -> Any:
        # Compiled once per schema object and sampling run (the schema is kept, so its id stays its own).
        found = self.checks.get(id(schema))
        if found is None:
            found = self.checks[id(schema)] = (schema, compile_schema(schema, self.resolve))
        return found[1]

    def _deref(self, ref: str) -> Any:
        if self.resolve is None:
            raise SampleError(f"cannot follow $ref {ref!r} without a resolver")
        return self.resolve(ref)

    def _shuffled(self, items: List[Any]) -> List[Any]:
        if self.rnd is not None:
            items = list(items)
            self.rnd.shuffle(items)
        return items

    def _candidates(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        if "const" in schema:
            yield schema["const"]
            return
        if "enum" in schema:
            yield from self._shuffled(list(schema["enum"]))
            return
        for key in ("oneOf", "anyOf"):
            for branch in self._shuffled(list(schema.get(key, []))):
                try:
                    yield self.sample({**{k: v for k, v in schema.items() if k != key}, **branch}
                                      if "$ref" not in branch else branch, name, depth + 1)
                except SampleError:
                    continue
            if key in schema:
                return
        if name in self.values:
            given = self.values[name]
            yield given
            if isinstance(given, str) and given.isdigit():
                yield int(given)
        kinds = schema.get("type", "object" if "properties" in schema else "string")
        for kind in self._shuffled(kinds if isinstance(kinds, list) else [kinds]):
            yield from getattr(self, "_" + kind)(schema, name, depth)

    def _object(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        props = schema.get("properties", {})
        required = list(schema.get("required", []))
        result: Dict[str, Any] = {}
        for key in required:
            result[key] = self.sample(props.get(key, {"type": "string"}), key, depth + 1)
        for key, sub in props.items():
            wanted = key in self.values or (self.rnd is not None and self.rnd.random() < 0.5)
            if key in result or not wanted:
                continue
            try:
                result[key] = self.sample(sub, key, depth + 1)
            except SampleError:
                continue
        while len(result) < schema.get("minProperties", 0):
            result[f"key{len(result)}"] = "example"
        yield result

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", max(low, 3))
        count = low if self.rnd is None else self.rnd.randint(low, max(low, min(high, low + 3)))
        items = schema.get("items", {})
        if isinstance(items, list):
            yield [self.sample(sub, name, depth + 1) for sub in items[:max(count, len(items))]]
            return
        made = [self.sample(items, name, depth + 1) for _ in range(count)]
        yield made
        yield made[:low]

    def _string(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        yield from _string_candidates(schema, name)

    def _integer(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 100)
        yield int(low if self.rnd is None else self.rnd.randint(int(low), int(high)))
        yield int(low)

    def _number(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        yield from self._integer(schema, name, depth)

    def _boolean(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        yield from self._shuffled([False, True])

    def _null(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        yield None


def sample_value(schema: Any, resolve: Resolver, values: Optional[Mapping[str, Any]] = None,
                 rnd: Optional[random.Random] = None) -> Any:
    """A value `schema` accepts; properties named in `values` take those values where they fit."""
    return _Sampler(resolve, values or {}, rnd).sample(schema)


def field_schemas(schema: Any, resolve: Resolver, depth: int = 0) -> Dict[str, Any]:
    """Property name -> (schema, resolver) for every named property anywhere in `schema`."""
    found: Dict[str, Any] = {}
    if depth > 8 or not isinstance(schema, dict):
        return found
    if "$ref" in schema and resolve is not None:
        target, inner = resolve(schema["$ref"])
        return field_schemas(target, inner, depth + 1)
    for key, sub in schema.get("properties", {}).items():
        found.setdefault(key, (sub, resolve))
        for deeper, pair in field_schemas(sub, resolve, depth + 1).items():
            found.setdefault(deeper, pair)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        for deeper, pair in field_schemas(branch, resolve, depth + 1).items():
            found.setdefault(deeper, pair)
    return found


def sample_fields(fields: Any, given: Mapping[str, Any], schema: Any, resolve: Resolver,
                  rnd: Optional[random.Random] = None) -> Dict[str, str]:
    """The routing-key field values of a sample: those `given`, then every required field from
    the body's property of the same name (or 'example'); optional ones absent."""
    values = {name: str(value) for name, value in given.items() if value is not None}
    properties = field_schemas(schema, resolve)
    for field in fields:
        if field.name in values or field.constant is not None or not field.required:
            continue
        sub = properties.get(field.name)
        value = "example"
        if sub is not None and not field.multiple_words:
            try:
                value = str(sample_value(sub[0], sub[1], {}, rnd))
            except SampleError:
                pass
        values[field.name] = value
    return values
