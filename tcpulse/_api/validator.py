"""A small JSON Schema validator for the subset Taskcluster's schemas use, compiled to closures.

Owns: `compile_schema(schema, resolve)`, which turns a schema into a function that returns the
first `Problem` of an instance (its JSON path, the rule it breaks, a message) or None. Each
keyword becomes one closure, built once per schema, so checking a message costs a few dict
lookups and calls per value instead of a walk over the schema's keywords. `$ref`s are compiled on
first use (through `resolve`), so a schema that refers to itself terminates.

Keywords: type, enum, const, properties, required, additionalProperties, patternProperties,
minProperties, maxProperties, items (one schema or a list), minItems, maxItems, uniqueItems,
minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
oneOf, anyOf, allOf, not, $ref. `format` is an annotation here (as in JSON Schema's default),
and so are title, description, default and examples. benchmarks/validation.py compares this with
fastjsonschema and jsonschema; it is why tcpulse needs neither.

Pure module: imports only the standard library.

Example:
    >>> check = compile_schema({"type": "object", "required": ["taskId"],
    ...                         "properties": {"runId": {"type": "integer", "minimum": 0}}}, None)
    >>> print(check({"taskId": "a", "runId": -1}, ()))
    $.runId: -1 is less than the minimum 0 (rule: minimum)
    >>> print(check({"runId": 1}, ()))
    $: required property 'taskId' is missing (rule: required)
"""
import json
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

Path = Tuple[Any, ...]


class Problem(NamedTuple):
    """Where an instance breaks its schema: `path` (keys and indexes from the top), `rule` (the
    keyword) and a message."""
    path: Path
    rule: str
    message: str

    @property
    def where(self) -> str:
        """The path as JSONPath text: `$.status.runs[0].state`."""
        return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)

    def __str__(self) -> str:
        return f"{self.where}: {self.message} (rule: {self.rule})"

    def under(self, step: Any) -> "Problem":
        """The same problem one level down, under key or index `step` (paths are built on the
        way up, so a value that passes costs no path at all)."""
        return self._replace(path=(step,) + self.path)


# A compiled check: the first problem of a value (its path relative to that value), or None.
Check = Callable[[Any], Optional[Problem]]
# What compile_schema returns: `validate(value)` or `validate(value, path)`.
Validate = Callable[..., Optional[Problem]]
# (schema with the $ref, the $ref) -> (the schema it points to, a resolver for refs inside that one)
Resolver = Optional[Callable[[str], Tuple[Any, "Resolver"]]]

_TYPES: Dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
ANNOTATIONS = {"$id", "$schema", "title", "description", "default", "examples", "format", "definitions",
               "$defs", "$comment", "readOnly", "writeOnly", "deprecated"}


def compile_schema(schema: Any, resolve: Resolver) -> Validate:
    """The check function of `schema`, called as `check(value)` (or `check(value, path)` for a
    value found at `path`); `resolve(ref)` finds what a `$ref` points to."""
    inner = _Compiler(resolve).compile(schema)

    def check(value: Any, path: Path = ()) -> Optional[Problem]:
        problem = inner(value)
        return problem if problem is None or not path else problem._replace(path=tuple(path) + problem.path)
    return check


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _Compiler:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda value: None
        if schema is False:
            return lambda value: Problem((), "false", "no value is allowed here")
        if "$ref" in schema:
            return self._ref(schema["$ref"])
        checks: List[Optional[Check]] = []
        consumed: Tuple[str, ...] = ()
        fuse = self._FUSED.get(schema.get("type")) if isinstance(schema.get("type"), str) else None
        if fuse is not None:
            # The usual keywords of one type checked in one closure: a message costs far fewer calls.
            fused, consumed = fuse(self, schema)
            checks.append(fused)
        checks += [self._keyword(key, schema[key], schema) for key in schema
                   if key not in ANNOTATIONS and key not in consumed]
        return _first([c for c in checks if c is not None])

    def _fused_string(self, schema: Dict[str, Any]) -> Tuple[Check, Tuple[str, ...]]:
        low, high = schema.get("minLength"), schema.get("maxLength")
        pattern = schema.get("pattern")
        search = re.compile(pattern).search if pattern is not None else None

        def check(value: Any) -> Optional[Problem]:
            if not isinstance(value, str):
                return Problem((), "type", f"{_short(value)} is not of type string")
            if low is not None and len(value) < low:
                return Problem((), "minLength", f"{_short(value)} is shorter than {low} characters")
            if high is not None and len(value) > high:
                return Problem((), "maxLength", f"{_short(value)} is longer than {high} characters")
            if search is not None and search(value) is None:
                return Problem((), "pattern", f"{_short(value)} does not match {pattern!r}")
            return None
        return check, ("type", "minLength", "maxLength", "pattern")

    def _fused_number(self, schema: Dict[str, Any]) -> Tuple[Check, Tuple[str, ...]]:
        kind = schema["type"]
        is_kind = _TYPES[kind]
        low, high = schema.get("minimum"), schema.get("maximum")

        def check(value: Any) -> Optional[Problem]:
            if not is_kind(value):
                return Problem((), "type", f"{_short(value)} is not of type {kind}")
            if low is not None and value < low:
                return Problem((), "minimum", f"{_short(value)} is less than the minimum {low}")
            if high is not None and value > high:
                return Problem((), "maximum", f"{_short(value)} is more than the maximum {high}")
            return None
        return check, ("type", "minimum", "maximum")

    def _fused_object(self, schema: Dict[str, Any]) -> Tuple[Check, Tuple[str, ...]]:
        props = [(name, self.compile(sub)) for name, sub in schema.get("properties", {}).items()]
        required = list(schema.get("required", []))
        closed = schema.get("additionalProperties") is False and "patternProperties" not in schema
        known = {name for name, _ in props}
        allowed = ", ".join(sorted(known)) or "none"

        def check(value: Any) -> Optional[Problem]:
            if not isinstance(value, dict):
                return Problem((), "type", f"{_short(value)} is not of type object")
            for name in required:
                if name not in value:
                    return Problem((), "required", f"required property {name!r} is missing")
            for name, sub in props:
                if name in value:
                    problem = sub(value[name])
                    if problem is not None:
                        return problem.under(name)
            if closed:
                for key in value:
                    if key not in known:
                        return Problem((), "additionalProperties", f"property {key!r} is not allowed (allowed: {allowed})")
            return None
        return check, ("type", "properties", "required") + (("additionalProperties",) if closed else ())

    _FUSED = {"string": _fused_string, "integer": _fused_number, "number": _fused_number, "object": _fused_object}

    def _ref(self, ref: str) -> Check:
        if self.resolve is None:
            raise ValueError(f"schema has a $ref ({ref!r}) but no way to resolve it")
        compiled: List[Check] = []
        resolve = self.resolve

        def check(value: Any) -> Optional[Problem]:
            if not compiled:  # on first use: a schema may refer to itself
                target, inner = resolve(ref)
                compiled.append(_Compiler(inner).compile(target))
            return compiled[0](value)
        return check

    def _keyword(self, key: str, arg: Any, schema: Dict[str, Any]) -> Optional[Check]:
        build = getattr(self, "_k_" + key, None)
        if build is None:
            if key in ("additionalItems", "dependencies", "if", "then", "else", "propertyNames", "contains"):
                raise ValueError(f"JSON Schema keyword {key!r} is not supported by tcpulse's validator")
            return None  # an unknown annotation
        return build(arg, schema)

    # -- any value ---------------------------------------------------------------------------
    def _k_type(self, arg: Any, schema: Dict[str, Any]) -> Check:
        names = arg if isinstance(arg, list) else [arg]
        tests = [_TYPES[name] for name in names]
        wanted = " or ".join(names)

        def check(value: Any) -> Optional[Problem]:
            for test in tests:
                if test(value):
                    return None
            return Problem((), "type", f"{_short(value)} is not of type {wanted}")
        return check

    def _k_enum(self, arg: Any, schema: Dict[str, Any]) -> Check:
        allowed = list(arg)
        # Taskcluster's enums are strings: a set lookup then (JSON equality needs care only for numbers).
        strings = frozenset(allowed) if all(isinstance(a, str) for a in allowed) else None

        def check(value: Any) -> Optional[Problem]:
            if strings is not None:
                if isinstance(value, str) and value in strings:
                    return None
            elif any(_same(value, a) for a in allowed):
                return None
            return Problem((), "enum", f"{_short(value)} is not one of {_short(allowed)}")
        return check

    def _k_const(self, arg: Any, schema: Dict[str, Any]) -> Check:
        def check(value: Any) -> Optional[Problem]:
            return None if _same(value, arg) else Problem((), "const", f"{_short(value)} is not {_short(arg)}")
        return check

    def _combination(self, rule: str, arg: Any, accept: Callable[[int], bool], wanted: str) -> Check:
        parts = [self.compile(s) for s in arg]

        def check(value: Any) -> Optional[Problem]:
            passed = sum(1 for part in parts if part(value) is None)
            if accept(passed):
                return None
            return Problem((), rule, f"{_short(value)} matches {passed} of the {len(parts)} {rule} schemas "
                                       f"(must match {wanted})")
        return check

    def _k_oneOf(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return self._combination("oneOf", arg, lambda n: n == 1, "exactly one")

    def _k_anyOf(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return self._combination("anyOf", arg, lambda n: n >= 1, "at least one")

    def _k_allOf(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _first([self.compile(s) for s in arg])

    def _k_not(self, arg: Any, schema: Dict[str, Any]) -> Check:
        inner = self.compile(arg)

        def check(value: Any) -> Optional[Problem]:
            return Problem((), "not", f"{_short(value)} matches a schema it must not") if inner(value) is None else None
        return check

    # -- objects -----------------------------------------------------------------------------
    def _k_properties(self, arg: Any, schema: Dict[str, Any]) -> Check:
        props = [(name, self.compile(sub)) for name, sub in arg.items()]

        def check(value: Any) -> Optional[Problem]:
            if not isinstance(value, dict):
                return None
            for name, sub in props:
                if name in value:
                    problem = sub(value[name])
                    if problem is not None:
                        return problem.under(name)
            return None
        return check

    def _k_patternProperties(self, arg: Any, schema: Dict[str, Any]) -> Check:
        pats = [(re.compile(p), self.compile(sub)) for p, sub in arg.items()]

        def check(value: Any) -> Optional[Problem]:
            if not isinstance(value, dict):
                return None
            for key, item in value.items():
                for pattern, sub in pats:
                    if pattern.search(key):
                        problem = sub(item)
                        if problem is not None:
                            return problem.under(key)
            return None
        return check

    def _k_required(self, arg: Any, schema: Dict[str, Any]) -> Check:
        names = list(arg)

        def check(value: Any) -> Optional[Problem]:
            if isinstance(value, dict):
                for name in names:
                    if name not in value:
                        return Problem((), "required", f"required property {name!r} is missing")
            return None
        return check

    def _k_additionalProperties(self, arg: Any, schema: Dict[str, Any]) -> Check:
        known = set(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = None if arg is False else self.compile(arg)

        def check(value: Any) -> Optional[Problem]:
            if not isinstance(value, dict):
                return None
            for key in value:
                if key in known or any(p.search(key) for p in patterns):
                    continue
                if extra is None:
                    return Problem((), "additionalProperties",
                                   f"property {key!r} is not allowed (allowed: {', '.join(sorted(known)) or 'none'})")
                problem = extra(value[key])
                if problem is not None:
                    return problem.under(key)
            return None
        return check

    def _k_minProperties(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("minProperties", dict, len, lambda n: n >= arg, f"has fewer than {arg} properties")

    def _k_maxProperties(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("maxProperties", dict, len, lambda n: n <= arg, f"has more than {arg} properties")

    # -- arrays ------------------------------------------------------------------------------
    def _k_items(self, arg: Any, schema: Dict[str, Any]) -> Check:
        if isinstance(arg, list):
            subs = [self.compile(s) for s in arg]

            def each_position(value: Any) -> Optional[Problem]:
                if isinstance(value, list):
                    for index, (item, sub) in enumerate(zip(value, subs)):
                        problem = sub(item)
                        if problem is not None:
                            return problem.under(index)
                return None
            return each_position
        sub = self.compile(arg)

        def each(value: Any) -> Optional[Problem]:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    problem = sub(item)
                    if problem is not None:
                        return problem.under(index)
            return None
        return each

    def _k_minItems(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("minItems", list, len, lambda n: n >= arg, f"has fewer than {arg} items")

    def _k_maxItems(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("maxItems", list, len, lambda n: n <= arg, f"has more than {arg} items")

    def _k_uniqueItems(self, arg: Any, schema: Dict[str, Any]) -> Optional[Check]:
        if not arg:
            return None

        def check(value: Any) -> Optional[Problem]:
            if isinstance(value, list):
                if all(type(item) is str for item in value) and len(set(value)) == len(value):
                    return None  # the usual case (lists of names or scopes), without serializing
                seen = set()
                for item in value:
                    key = _identity(item)
                    if key in seen:
                        return Problem((), "uniqueItems", f"{_short(item)} appears more than once")
                    seen.add(key)
            return None
        return check

    # -- strings and numbers -----------------------------------------------------------------
    def _k_minLength(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("minLength", str, len, lambda n: n >= arg, f"is shorter than {arg} characters")

    def _k_maxLength(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("maxLength", str, len, lambda n: n <= arg, f"is longer than {arg} characters")

    def _k_pattern(self, arg: Any, schema: Dict[str, Any]) -> Check:
        search = re.compile(arg).search

        def check(value: Any) -> Optional[Problem]:
            if isinstance(value, str) and search(value) is None:
                return Problem((), "pattern", f"{_short(value)} does not match {arg!r}")
            return None
        return check

    def _k_minimum(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("minimum", _NUMBER, _same_number, lambda n: n >= arg, f"is less than the minimum {arg}")

    def _k_maximum(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("maximum", _NUMBER, _same_number, lambda n: n <= arg, f"is more than the maximum {arg}")

    def _k_exclusiveMinimum(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("exclusiveMinimum", _NUMBER, _same_number, lambda n: n > arg, f"is not more than {arg}")

    def _k_exclusiveMaximum(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("exclusiveMaximum", _NUMBER, _same_number, lambda n: n < arg, f"is not less than {arg}")

    def _k_multipleOf(self, arg: Any, schema: Dict[str, Any]) -> Check:
        return _bound("multipleOf", _NUMBER, _same_number, lambda n: (n / arg).is_integer(), f"is not a multiple of {arg}")


_NUMBER = (int, float)


def _first(checks: List[Check]) -> Check:
    """One check running `checks` in order, returning the first problem."""
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> Optional[Problem]:
        for one in checks:
            problem = one(value)
            if problem is not None:
                return problem
        return None
    return check


def _same_number(value: Any) -> Any:
    return value


def _bound(rule: str, kind: Any, measure: Callable[[Any], Any], ok: Callable[[Any], bool], says: str) -> Check:
    """A check that applies to one kind of value only: `ok(measure(value))` must hold."""
    def check(value: Any) -> Optional[Problem]:
        if isinstance(value, kind) and not isinstance(value, bool) and not ok(measure(value)):
            return Problem((), rule, f"{_short(value)} {says}")
        return None
    return check


def _identity(item: Any) -> Any:
    """A hashable key equal for JSON-equal items: flat objects (such as a task's runs) cheaply,
    anything else as its canonical JSON text."""
    if isinstance(item, dict):
        try:
            return frozenset((key, type(value), value) for key, value in item.items())
        except TypeError:  # a nested list or object
            pass
    return json.dumps(item, sort_keys=True)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
