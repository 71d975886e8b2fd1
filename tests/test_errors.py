"""One error tree: the drawing in errors.py's docstring is the class tree in the code, and it holds every
exception class edge_agent defines. Then each library's errors, translated into it (bacpypes3's are proved
in test_bacnet.py)."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pymodbus import ExceptionResponse
from pymodbus.exceptions import ConnectionException, ModbusIOException, ParameterException

import edge_agent
from edge_agent import errors
from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.errors import (
    BufferUnreadable,
    DeviceError,
    DeviceGarbage,
    DeviceRejected,
    DeviceUnreachable,
    ExceptionAnswer,
    MalformedAnswer,
    StartupError,
)
from edge_agent.protocols.modbus.errors import answer, translated
from edge_agent.store.errors import translated as sqlite_translated

PACKAGE = Path(edge_agent.__file__).parent
ERRORS_PY = "edge_agent/errors.py"
ROOT = "EdgeAgentError"
TREE_LINE = re.compile(r"(?P<indent>(?:[│ ]   )*)(?P<branch>[├└]── )?(?P<name>[A-Z]\w*)(?:\s|$)")


# --- the drawing and the code ------------------------------------------------------------------------


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Each class in the drawing and the class it is drawn under (None for the root), in drawing order."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[:1] == [ROOT]), None)
    assert start is not None, f"errors.py's docstring draws no tree rooted at {ROOT}"
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in lines[start:]:
        match = TREE_LINE.match(line)
        if match is None or (stack and not match["branch"]):
            break  # the drawing ends with its first line that is not a branch
        name, depth = match["name"], len(match["indent"]) // 4 + bool(match["branch"])
        assert name not in parents, f"{name} is drawn twice"
        assert depth <= len(stack), f"{name} is drawn under nothing"
        del stack[depth:]
        parents[name] = stack[-1] if stack else None
        stack.append(name)
    return parents


def drawing_problems(drawn: dict[str, str | None], module: ModuleType) -> list[str]:
    """Where the drawing and the module's classes disagree, each naming the class."""
    problems = []
    for name, parent in drawn.items():
        cls = getattr(module, name, None)
        if not isinstance(cls, type) or cls.__module__ != module.__name__:
            problems.append(f"{name} is drawn, but {module.__name__} defines no class {name}")
            continue
        expected = Exception if parent is None else getattr(module, parent, None)
        if cls.__bases__ != (expected,):
            bases = ", ".join(base.__name__ for base in cls.__bases__)
            problems.append(f"{name} is drawn under {parent or 'nothing'}, but derives from {bases}")
    for name, cls in vars(module).items():
        is_exception = isinstance(cls, type) and issubclass(cls, BaseException)
        if is_exception and cls.__module__ == module.__name__ and name not in drawn:
            problems.append(f"{name} is defined in {module.__name__} but not drawn")
    return problems


def _resolve(expr: ast.expr, namespace: dict[str, Any]) -> Any:
    """A base class expression (`Exception`, `aiomqtt.MqttError`, `Generic[T]`) as the object it names."""
    if isinstance(expr, ast.Subscript):
        expr = expr.value
    parts = ast.unparse(expr).split(".")
    value = namespace.get(parts[0], getattr(builtins, parts[0], None))
    for part in parts[1:]:
        value = getattr(value, part, None)
    return value


def exception_classes(package: Path) -> Iterator[tuple[str, str]]:
    """(name, "path:line") of every exception class defined in the package, at any depth, from the source:
    bases are resolved in the imported module, or among the file's own exception classes."""
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        module = ".".join(relative.with_suffix("").parts)
        namespace = {} if path.stem == "__main__" else vars(importlib.import_module(module))
        classes = [
            node
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.ClassDef)
        ]
        local: set[str] = set()
        grew = True
        while grew:  # until no class turns out to derive from one of the file's own exception classes
            grew = False
            for node in classes:
                if node.name in local:
                    continue
                for base in node.bases:
                    value = _resolve(base, namespace)
                    named = isinstance(base, ast.Name) and base.id in local
                    if named or (isinstance(value, type) and issubclass(value, BaseException)):
                        local.add(node.name)
                        grew = True
                        yield node.name, f"{relative}:{node.lineno}"
                        break


def placement_problems(found: list[tuple[str, str]], drawn: dict[str, str | None]) -> list[str]:
    problems = []
    for name, place in found:
        if not place.startswith(f"{ERRORS_PY}:"):
            problems.append(f"{name} ({place}) is an exception class outside {ERRORS_PY}")
        elif name not in drawn:
            problems.append(f"{name} ({place}) is not drawn in the docstring of {ERRORS_PY}")
    return problems


def test_the_drawing_is_the_class_tree() -> None:
    drawn = drawn_tree(errors.__doc__ or "")
    assert next(iter(drawn)) == ROOT
    problems = drawing_problems(drawn, errors)
    assert not problems, "\n".join(problems)


def test_every_exception_class_of_the_package_is_in_errors_py_and_drawn() -> None:
    found = list(exception_classes(PACKAGE))
    assert ("DeviceError", f"{ERRORS_PY}:{inspect.getsourcelines(errors.DeviceError)[1]}") in found
    problems = placement_problems(found, drawn_tree(errors.__doc__ or ""))
    assert not problems, "\n".join(problems)


def test_a_disagreement_is_reported_naming_the_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "\n".join(
        [
            "EdgeAgentError",
            "├── DeviceError",
            "│   └── DeviceGarbled        a typo",
            "└── Refused",
            "    └── DeviceRejected       under the wrong parent",
        ]
    )
    problems = drawing_problems(drawn_tree(wrong), errors)
    assert "DeviceGarbled is drawn, but edge_agent.errors defines no class DeviceGarbled" in problems
    assert "DeviceRejected is drawn under Refused, but derives from DeviceError" in problems
    assert "DeviceGarbage is defined in edge_agent.errors but not drawn" in problems

    package = tmp_path / "stray_package"
    package.mkdir()
    (package / "stray.py").write_text("class Stray(ValueError):\n    pass\n\n\nclass Strayer(Stray): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = list(exception_classes(package))
    for module in ("stray_package.stray", "stray_package"):
        sys.modules.pop(module)
    assert placement_problems(found, drawn_tree(errors.__doc__ or "")) == [
        "Stray (stray_package/stray.py:1) is an exception class outside edge_agent/errors.py",
        "Strayer (stray_package/stray.py:5) is an exception class outside edge_agent/errors.py",
    ]


def test_old_homes_no_longer_define_them() -> None:
    """One definition each: the classes moved here are not importable from where they were defined."""
    for module, name in [
        ("edge_agent.control.decision", "ModelError"),
        ("edge_agent.uplink.commands", "_Refused"),
        ("edge_agent.cli.model_card", "_Corrupt"),
    ]:
        assert not hasattr(importlib.import_module(module), name), f"{module}.{name}"


# --- Modbus: pymodbus' errors and the wire's, as DeviceErrors ------------------------------------------


async def _raising(exc: BaseException) -> Any:
    raise exc


async def _returning(value: Any) -> Any:
    return value


class _ErrorAnswer:
    exception_code = 4

    def isError(self) -> bool:  # noqa: N802 - pymodbus' name
        return True


@pytest.mark.parametrize(
    ("request_", "expected", "says"),
    [
        (lambda: _raising(ConnectionException("gone")), ConnectionError, "no answer (ConnectionException)"),
        (lambda: _raising(ModbusIOException("silent")), ConnectionError, "no answer (ModbusIOException)"),
        (lambda: _raising(ParameterException("odd")), MalformedAnswer, "odd"),
        (lambda: _returning(ExceptionResponse(3, 2)), ExceptionAnswer, "modbus exception 2"),
        (lambda: _returning(_ErrorAnswer()), ExceptionAnswer, "modbus exception 4"),
    ],
)
async def test_every_pymodbus_failure_is_a_wire_error(
    request_: Callable[[], Awaitable[Any]], expected: type[Exception], says: str
) -> None:
    with pytest.raises(expected, match=re.escape(says)):
        await answer(request_())


METER = ModbusTcpDevice(
    name="meter",
    protocol="modbus-tcp",
    host="192.0.2.7",
    points=[ModbusPoint(name="power", table="input", address=0, type="float32")],
    timeout_s=0.5,
)


@pytest.mark.parametrize(
    ("failure", "expected", "message", "code"),
    [
        (TimeoutError(), DeviceUnreachable, "no answer within 0.5 s", "timeout"),
        (ExceptionAnswer(2), DeviceRejected, "illegal data address", "modbus exception 2"),
        (ExceptionAnswer(99), DeviceRejected, "unknown exception", "modbus exception 99"),
        (MalformedAnswer("3 bytes of registers"), DeviceGarbage, "3 bytes of registers", "malformed answer"),
        (
            ConnectionError("the device closed the connection"),
            DeviceUnreachable,
            "the device closed",
            "no connection",
        ),
        (ConnectionError(), DeviceUnreachable, "no answer", "no connection"),
    ],
)
def test_every_wire_error_is_a_device_error(
    failure: Exception, expected: type[DeviceError], message: str, code: str
) -> None:
    with pytest.raises(DeviceError) as caught, translated(METER, "input registers 0+2"):
        raise failure
    error = caught.value
    assert type(error) is expected
    assert (error.device, error.address, error.code) == (
        "meter",
        "192.0.2.7:502 unit 1 input registers 0+2",
        code,
    )
    assert message in str(error)
    assert error.__cause__ is failure


def test_a_connect_says_cannot_connect_and_leaves_its_time_bound_to_the_caller() -> None:
    with pytest.raises(DeviceUnreachable) as caught, translated(METER, "", connecting=True):
        raise ConnectionError("cannot connect to 192.0.2.7:502: refused")
    assert str(caught.value) == "meter 192.0.2.7:502 unit 1 : cannot connect"
    with pytest.raises(TimeoutError), translated(METER, "", connecting=True):
        raise TimeoutError


def test_what_is_not_a_wire_error_passes_untouched() -> None:
    with pytest.raises(KeyError), translated(METER, "input registers 0+2"):
        raise KeyError("a bug")
    with translated(METER, "input registers 0+2"):
        pass


# --- SQLite: the read-only tools' BufferUnreadable, the agent's StartupError -----------------------------


def test_sqlite_errors_are_unreadable_buffers_or_a_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with pytest.raises(BufferUnreadable) as unreadable, sqlite_translated(path, "read"):
        raise sqlite3.OperationalError("database is locked")
    assert str(unreadable.value) == f"buffer {path}: cannot read (database is locked)"
    assert (unreadable.value.path, unreadable.value.reason) == (path, "cannot read (database is locked)")
    says = re.escape(f"buffer {path}: cannot open: disk I/O error")
    with pytest.raises(StartupError, match=says), sqlite_translated(path, "open", starting=True):
        raise sqlite3.OperationalError("disk I/O error")
    with (
        pytest.raises(StartupError, match="Permission denied"),
        sqlite_translated(path, "open", starting=True),
    ):
        raise PermissionError("Permission denied")
    with pytest.raises(PermissionError), sqlite_translated(path, "read"):
        raise PermissionError("Permission denied")
