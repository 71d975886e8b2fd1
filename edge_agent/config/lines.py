"""Where each key and array element of a TOML text starts: `("devices", 3, "unit_id") -> line 41`.

tomllib keeps no positions, so this walks the text once more, after tomllib has accepted it: table headers,
keys (dotted too), arrays and inline tables, skipping strings and comments. Paths are the ones tomllib's data
has, so a validation error's location finds its line (or the line of its nearest enclosing key).
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")
_MAX_DEPTH = 64  # deeper values are skipped, not indexed (the configuration refuses them anyway)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self.arrays_of_tables: dict[Path, int] = {}  # [[x]] path -> tables seen so far

    # --- characters ------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        self.move_to(self.pos + count)

    def move_to(self, end: int) -> None:
        end = min(end, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def skip_blank(self, newlines: bool) -> None:
        """Spaces, tabs, comments, and newlines too when `newlines`."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.move_to(len(self.text) if end < 0 else end)
            else:
                return

    def skip_string(self) -> str:
        """Past a string of any of TOML's four kinds; its text (escapes left as written)."""
        quote = self.peek()
        triple = self.text.startswith(quote * 3, self.pos)
        delimiter = quote * 3 if triple else quote
        self.advance(len(delimiter))
        start = search = self.pos
        while True:
            end = self.text.find(delimiter, search)
            if end < 0:
                self.move_to(len(self.text))
                return self.text[start:]
            escapes = 0  # a basic string's delimiter after an odd number of backslashes is escaped
            while quote == '"' and end - escapes - 1 >= start and self.text[end - escapes - 1] == "\\":
                escapes += 1
            if escapes % 2 == 0:
                break
            search = end + 1
        while triple and self.text.startswith(quote, end + len(delimiter)):  # up to two more quotes close it
            end += 1
        self.move_to(end + len(delimiter))
        return self.text[start:end]

    # --- keys and values -------------------------------------------------------------------------

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            if self.peek() in ('"', "'"):
                parts.append(self.skip_string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    return parts
                parts.append(match.group())
                self.advance(len(match.group()))
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    def value(self, path: Path, depth: int) -> None:
        self.skip_blank(newlines=False)
        char = self.peek()
        if char in ('"', "'"):
            self.skip_string()
        elif char == "[":
            self.advance()
            self.array(path, depth + 1)
        elif char == "{":
            self.advance()
            self.inline_table(path, depth + 1)
        else:
            match = _SCALAR_END.search(self.text, self.pos)
            self.move_to(match.start() if match else len(self.text))

    def array(self, path: Path, depth: int) -> None:
        index = 0
        while self.pos < len(self.text):
            self.skip_blank(newlines=True)
            char = self.peek()
            if char == "]":
                self.advance()
                return
            if char == ",":
                self.advance()
                index += 1
                continue
            element = (*path, index)
            if depth <= _MAX_DEPTH:
                self.lines.setdefault(element, self.line)
            self.value(element, depth)

    def inline_table(self, path: Path, depth: int) -> None:
        while self.pos < len(self.text):
            self.skip_blank(newlines=True)
            char = self.peek()
            if char == "}":
                self.advance()
                return
            if char == ",":
                self.advance()
                continue
            self.key_value(path, depth)

    def key_value(self, table: Path, depth: int) -> None:
        line = self.line
        parts = self.key()
        self.skip_blank(newlines=False)
        if not parts or self.peek() != "=":  # not TOML after all: stop here rather than loop
            self.pos = len(self.text)
            return
        self.advance()
        path = (*table, *parts)
        if depth <= _MAX_DEPTH:
            for end in range(len(table) + 1, len(path) + 1):
                self.lines.setdefault(path[:end], line)
        self.value(path, depth)

    # --- the document ----------------------------------------------------------------------------

    def header(self) -> Path:
        """After '[' or '[[': the table's path, array-of-tables indexes filled in."""
        is_array = self.text.startswith("[[", self.pos)
        line = self.line
        self.advance(2 if is_array else 1)
        parts = self.key()
        self.skip_blank(newlines=False)
        self.advance(2 if is_array else 1)
        path: Path = ()
        for i, part in enumerate(parts):
            path = (*path, part)
            last = i == len(parts) - 1
            if last and is_array:
                count = self.arrays_of_tables.get(path, 0)
                self.arrays_of_tables[path] = count + 1
                self.lines.setdefault(path, line)
                path = (*path, count)
            elif path in self.arrays_of_tables:
                path = (*path, self.arrays_of_tables[path] - 1)
            self.lines.setdefault(path, line)
        return path

    def document(self) -> dict[Path, int]:
        table: Path = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            if self.peek() == "[":
                table = self.header()
            else:
                self.key_value(table, len(table))


def key_lines(text: str) -> dict[Path, int]:
    """Every key's and array element's path in `text` (valid TOML) -> the line it starts on (1-based)."""
    return _Scanner(text).document()


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path`, or of the nearest enclosing key that has one."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
