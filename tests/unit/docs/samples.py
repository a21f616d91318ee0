"""Finding the Python samples in Markdown files, and the directives that say how to run them.

A ```python block runs as a test unless the line before it (blank lines aside) is one of:

* `<!-- no-test -->` or `<!-- no-test: why -->`: not run (it needs hardware, is a test module, ...);
* `<!-- test-with: examples/exporters/power.yaml -->`: run inside that exporter config, served
  in-process as `jmp shell --exporter-config` would (`env()` works, and is predefined);
* `<!-- test-continue -->`: part of the previous sample of the same file (one namespace).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType

DIRECTIVE = re.compile(r"^<!--\s*(no-test|test-with|test-continue)\s*(?::\s*(.*?))?\s*-->$")


@dataclass(slots=True)
class Block:
    """One fenced block: its first code line (1-based) and its lines."""

    start: int
    lines: list[str]


@dataclass(slots=True)
class Sample:
    """What one test runs: blocks of one file sharing a namespace."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    exporter: str | None = None
    skip: str | None = None

    @property
    def id(self) -> str:
        """`file:line` of the first block."""
        return f"{self.path}:{self.blocks[0].start}"

    def compiled(self, root: Path) -> list[CodeType]:
        """Each block compiled with the Markdown file's name and line numbers, so tracebacks (and
        pytest's failure reports) point into the Markdown file."""
        codes = []
        for block in self.blocks:
            tree = ast.parse("\n".join(block.lines) + "\n", filename=str(root / self.path))
            ast.increment_lineno(tree, block.start - 1)
            codes.append(compile(tree, str(root / self.path), "exec"))
        return codes


def samples_in(path: Path, display: Path) -> list[Sample]:
    """The samples of one Markdown file."""
    lines = path.read_text().splitlines()
    found: list[Sample] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() not in ("```python", "```py"):
            i += 1
            continue
        fence_indent = len(lines[i]) - len(lines[i].lstrip())
        directive, argument = _directive_before(lines, i)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][fence_indent:] if lines[j][:fence_indent].isspace() else lines[j])
            j += 1
        block = Block(start=i + 2, lines=body)
        if directive == "test-continue" and found:
            found[-1].blocks.append(block)
        else:
            sample = Sample(path=display, blocks=[block])
            if directive == "no-test":
                sample.skip = argument or "marked no-test"
            elif directive == "test-with":
                sample.exporter = argument
            found.append(sample)
        i = j + 1
    return found


def _directive_before(lines: list[str], fence: int) -> tuple[str | None, str | None]:
    k = fence - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0:
        return None, None
    match = DIRECTIVE.match(lines[k].strip())
    return (match.group(1), match.group(2)) if match else (None, None)
