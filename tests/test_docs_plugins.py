"""docs/plugins.md, the plugin tutorial: its code is real code.

Every fenced Python block must be marked, on the line just above it, with
``<!-- source: PATH -->`` naming a file of the example plugin (``examples/chamber-credential-
example/``) or of the core (``chamber/``), and must appear in that file verbatim (line for line,
as one contiguous run, trailing whitespace aside). Blocks in other languages are checked the same
way when they carry a marker. The tutorial also names every hook, and shows each kind of plugin
it teaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from chamber.plugins import PROVIDER_HOOKS, hookspecs_event_hooks
from tests.support import REPO_ROOT

DOC = REPO_ROOT / "docs" / "plugins.md"
EXAMPLE = "examples/chamber-credential-example/"
ALLOWED_ROOTS = (EXAMPLE, "chamber/")
PYTHON = frozenset({"python", "py", "python3"})
MARKER = re.compile(r"<!--\s*source:\s*(\S+)\s*-->")
FENCE = re.compile(r"(`{3,}|~{3,})\s*([\w+.-]*).*")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    source: str | None
    lines: list[str]


def fenced_blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.fullmatch(lines[i])
        if opening is None:
            i += 1
            continue
        fence, lang = opening.groups()
        closing = re.compile(re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*")
        end = i + 1
        while end < len(lines) and not closing.fullmatch(lines[end]):
            end += 1
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(above.strip())
        blocks.append(
            Block(i + 1, lang.lower(), marker.group(1) if marker else None, lines[i + 1 : end])
        )
        i = end + 1
    return blocks


def _contains(haystack: list[str], needle: list[str]) -> bool:
    width = len(needle)
    return any(haystack[k : k + width] == needle for k in range(len(haystack) - width + 1))


def _first_difference(source: list[str], block: list[str]) -> str:
    """A hint for the author: where the block drifts from its best-matching place in source."""
    best_line, best_run = 0, -1
    for start in range(len(source)):
        run = 0
        while run < len(block) and start + run < len(source) and source[start + run] == block[run]:
            run += 1
        if run > best_run:
            best_line, best_run = start, run
    if best_run >= len(block):
        return "it matches"
    found = source[best_line + best_run] if best_line + best_run < len(source) else "<end>"
    return f"block line {best_run + 1} {block[best_run]!r} differs from source {found!r}"


def problems(markdown: str, root: Path) -> list[str]:
    """Everything wrong with the code blocks of ``markdown`` (paths relative to ``root``)."""
    found: list[str] = []
    for block in fenced_blocks(markdown):
        where = f"block at line {block.line}"
        if block.source is None:
            if block.lang in PYTHON:
                found.append(f"{where}: no <!-- source: PATH --> marker above it")
            continue
        if not block.source.startswith(ALLOWED_ROOTS) or ".." in Path(block.source).parts:
            found.append(f"{where}: source {block.source} is outside {', '.join(ALLOWED_ROOTS)}")
            continue
        path = root / block.source
        if not path.is_file():
            found.append(f"{where}: source {block.source} does not exist")
            continue
        code = [line.rstrip() for line in block.lines]
        if not any(code):
            found.append(f"{where}: empty")
            continue
        source = [line.rstrip() for line in path.read_text(encoding="utf-8").splitlines()]
        if not _contains(source, code):
            hint = _first_difference(source, code)
            found.append(f"{where}: not verbatim in {block.source}: {hint}")
    return found


# ---------------------------------------------------------------------- the tutorial


def test_every_python_block_is_real_code_from_its_marked_source() -> None:
    markdown = DOC.read_text(encoding="utf-8")
    assert [b for b in fenced_blocks(markdown) if b.lang in PYTHON], "no Python blocks found"
    assert problems(markdown, REPO_ROOT) == []


def test_the_tutorial_shows_each_kind_of_plugin_from_real_code() -> None:
    blocks = fenced_blocks(DOC.read_text(encoding="utf-8"))
    sources = {b.source for b in blocks if b.source}
    package = EXAMPLE + "chamber_credential_example/"
    assert {package + "plugin.py", package + "credential.py", EXAMPLE + "pyproject.toml"} <= sources
    shown = "\n".join("\n".join(b.lines) for b in blocks if b.source)
    for definition in (
        "class KeyfilePinCredential:",
        "class CredentialType(Protocol):",
        "class KeySource(Protocol):",
        "class KmsProvider(Protocol):",
        "class TeeBackend(Protocol):",
        "def chamber_credential_types()",
        "def chamber_key_sources()",
        "def chamber_kms_providers()",
        "def chamber_tee_backends()",
        "[project.entry-points.containment_chamber]",
    ):
        assert definition in shown, f"the tutorial shows no {definition}"


def test_the_tutorial_names_every_hook() -> None:
    text = DOC.read_text(encoding="utf-8")
    for hook in (*PROVIDER_HOOKS, *hookspecs_event_hooks()):
        assert f"`{hook}" in text, f"docs/plugins.md does not mention {hook}"


def test_relative_links_resolve() -> None:
    text = DOC.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local
    for target in local:
        assert (DOC.parent / target).exists(), f"broken link: {target}"


# ---------------------------------------------------------------------- the checker itself


def test_the_checker_catches_drift_a_missing_marker_and_a_bad_path(tmp_path: Path) -> None:
    (tmp_path / "chamber").mkdir()
    (tmp_path / "chamber" / "real.py").write_text("def f() -> int:\n    return 1   \n\nX = 2\n")
    good = "<!-- source: chamber/real.py -->\n```python\ndef f() -> int:\n    return 1\n```\n"
    assert problems(good, tmp_path) == []
    cases = {
        "```python\nX = 2\n```\n": "no <!-- source",
        "<!-- source: chamber/real.py -->\n```python\ndef f() -> int:\n    return 2\n```\n": (
            "not verbatim in chamber/real.py: block line 2"
        ),
        "<!-- source: chamber/real.py -->\n```python\ndef f() -> int:\n\nX = 2\n```\n": (
            "not verbatim"
        ),
        "<!-- source: chamber/gone.py -->\n```python\nX = 2\n```\n": "does not exist",
        "<!-- source: tests/real.py -->\n```python\nX = 2\n```\n": "is outside",
        "<!-- source: chamber/real.py -->\n\n```toml\nX = 3\n```\n": "not verbatim",
    }
    for markdown, expected in cases.items():
        found = problems(markdown, tmp_path)
        assert len(found) == 1 and expected in found[0], (markdown, found)
    # Unmarked blocks in other languages (shell sessions, JSON output) are prose.
    assert problems("```sh\npip install x\n```\n", tmp_path) == []


@pytest.mark.parametrize("fence", ["```", "````", "~~~"])
def test_fences_of_any_length_close_properly(fence: str) -> None:
    markdown = f"<!-- source: chamber/x.py -->\n{fence}python\na = 1\n{fence}\ntext\n"
    [block] = fenced_blocks(markdown)
    assert block.lines == ["a = 1"] and block.source == "chamber/x.py" and block.lang == "python"
