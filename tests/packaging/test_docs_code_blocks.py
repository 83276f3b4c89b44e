"""Every code block of README.md and docs/**/*.md is run or checked here, run by another test, or
marked as a fragment.

A block is marked by an HTML comment on the line right before its opening fence, which neither
the site nor GitHub shows:

- ``<!-- fragment -->``: not a whole program (lines of a larger one, output, placeholders). A
  python fragment must still compile (top-level ``await`` allowed).
- ``<!-- run by tests/PATH.py -->``: that test runs the block as written (it serves an app, drives
  a browser); the file must exist and name the page.

Every other block is checked by its language:

- ``python``: run as a script in a subprocess, with this interpreter (the project's virtual
  environment), in an empty directory; it must exit 0.
- ``json``: parses.
- ``sh``, ``shell``, ``bash``, ``console`` (only its ``$`` lines), and an indented code block,
  which has no language: each ``wsguard`` command's subcommand and options are in the parser's
  ``--help``; each ``curl`` asks for an endpoint of docs/protocol.md section 4, or a route that a
  python block of the same page declares (``@app.post("/path")``); each ``make`` target is in the
  Makefile.
- a block that only includes a file (``--8<-- "path"``): the file exists.
- any other language (``js``, ``text``, ...) is not checked, and must be marked.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from wsguard import cli

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = "<!-- fragment -->"
RUN_BY = re.compile(r"<!-- run by (?P<test>tests/\S+\.py) -->")
FENCE = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)")
LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)])\s")
CONTAINER = re.compile(r"(?:!!!|\?\?\?\+?|===) ")
"""An admonition, a collapsible block or a content tab: its content is indented by four."""
INCLUDE = re.compile(r'--8<-- "(?P<path>[^"]+)"')
SHELL = {"sh", "shell", "bash", "console"}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"|", "||", "&&", ";", "&"}
ROUTE = re.compile(r"""@\w+\.(?P<method>get|post|put|patch|delete)\(\s*["'](?P<path>/[^"']*)["']""")
PYTHON_TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language (``""`` for none), its text and its marker."""

    page: str
    line: int
    language: str
    text: str
    marker: str | None = None
    indented: bool = False

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: re.Pattern[str]


def _closes(line: str, fence: str, indent: int) -> bool:
    """A closing fence: the fence's character at least as many times, indented at most three
    spaces more than the opening one (four more is an indented line of the block)."""
    match = re.fullmatch(rf"(?P<indent> *){re.escape(fence[0])}{{{len(fence)},}}[ \t]*", line)
    return match is not None and len(match["indent"]) <= indent + 3


def _dedent(line: str, indent: int) -> str:
    return line[indent:] if not line[:indent].strip() else line.lstrip()


def _marker(lines: list[str], index: int) -> str | None:
    if index == 0:
        return None
    above = lines[index - 1].strip()
    return above if above == FRAGMENT or RUN_BY.fullmatch(above) else None


def collect(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced and the indented code blocks of one Markdown file, in order."""
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    container, previous_blank = False, True
    indented: list[str] = []
    start = 0

    def close_indented() -> None:
        if indented:
            text = "\n".join(line[4:] for line in indented).rstrip("\n") + "\n"
            blocks.append(Block(page, start + 1, "", text, indented=True))
            indented.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.fullmatch(line)
        if opening is not None:
            close_indented()
            fence, indent = opening["fence"], len(opening["indent"])
            info = opening["info"].strip()
            language = info.split()[0].lstrip(".{").lower() if info else ""
            end = index + 1
            while end < len(lines) and not _closes(lines[end], fence, indent):
                end += 1
            if end == len(lines):
                raise AssertionError(f"{page}:{index + 1}: a code block that is never closed")
            body = [_dedent(text, indent) for text in lines[index + 1 : end]]
            blocks.append(Block(page, index + 1, language, "\n".join(body) + "\n", _marker(lines, index)))
            index, previous_blank = end + 1, False
            continue
        if not line.strip():
            if indented:
                indented.append(line)
            previous_blank = True
            index += 1
            continue
        depth = len(line) - len(line.lstrip(" "))
        if indented and depth >= 4:
            indented.append(line)
        elif depth < 4:
            close_indented()
            if LIST_ITEM.match(line) or CONTAINER.match(line):
                container = True
            elif previous_blank:
                container = False
        elif previous_blank and not container:
            start = index
            indented.append(line)
        previous_blank = False
        index += 1
    close_indented()
    return blocks


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in collect(page)]


# What the blocks are checked against.


@cache
def protocol_endpoints(root: Path = ROOT) -> tuple[Endpoint, ...]:
    """The endpoints of docs/protocol.md section 4, from its table."""
    text = (root / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.partition("\n## 4.")[2].partition("\n## ")[0]
    found: list[Endpoint] = []
    for row in section.splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            for method, path in re.findall(r"`([A-Z]+) ([^`]+)`", first_cell):
                found.append(Endpoint(method, _path_pattern(re.sub(r"\[.*?\]", "", path).split("?")[0])))
    assert len(found) > 20, "docs/protocol.md section 4 lists its endpoints in a table"
    return tuple(found)


def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))


def page_routes(blocks: Sequence[Block]) -> tuple[Endpoint, ...]:
    """The routes that the python blocks of a page declare (``@app.get("/me")``)."""
    return tuple(
        Endpoint(match["method"].upper(), _path_pattern(match["path"]))
        for block in blocks
        if block.language == "python"
        for match in ROUTE.finditer(block.text)
    )


def _help(args: Sequence[str]) -> tuple[str, int]:
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "2000"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main([*args, "--help"])
            except SystemExit as done:
                status = done.code if isinstance(done.code, int) else 1
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue(), status


@cache
def wsguard_options(subcommand: str | None) -> frozenset[str]:
    """The option strings of ``wsguard [SUBCOMMAND] --help``; empty if there is no such
    subcommand."""
    text, status = _help([subcommand] if subcommand else [])
    if status != 0 or not text.startswith("usage: wsguard"):
        return frozenset()
    options: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"  (-\S.*?)(?:\s{2,}|$)", line)
        if match:
            options.update(re.findall(r"(?:^|, )(--?[A-Za-z][\w-]*)", match[1]))
    return frozenset(options)


@cache
def wsguard_subcommands() -> frozenset[str]:
    text, _ = _help([])
    match = re.search(r"\{([\w,-]+)\}", text)
    assert match is not None, text
    return frozenset(match[1].split(","))


@cache
def make_targets(root: Path = ROOT) -> frozenset[str]:
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, flags=re.MULTILINE))


# The checks.


def shell_commands(text: str, console: bool) -> Iterator[list[str]]:
    """Each simple command of a shell block, as words (``a | b`` gives two)."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if console:
            if not pending and not line.startswith("$ "):
                continue
            line = line.removeprefix("$ ")
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not any(Path(word).name in {"wsguard", "curl", "make"} for word in stripped.split()):
            continue  # output, or a command that nothing here checks
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError as error:
            raise AssertionError(f"cannot read the command {stripped!r}: {error}") from error
        command: list[str] = []
        for word in [*words, ";"]:
            if word in SEPARATORS:
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def _program(words: list[str]) -> tuple[str, list[str]]:
    """The program a command runs and its arguments (``VAR=1 nice -n 19 wsguard serve`` gives
    ``wsguard``, ``["serve"]``)."""
    index = 0
    while index < len(words) and ASSIGNMENT.match(words[index]):
        index += 1
    while index < len(words) and words[index] in {"sudo", "exec", "time", "nice", "-n"}:
        index += 2 if words[index] == "-n" else 1
    if index >= len(words):
        return "", []
    name = Path(words[index]).name
    rest = words[index + 1 :]
    if re.fullmatch(r"python(3(\.\d+)?)?", name) and rest[:2] == ["-m", "wsguard"]:
        return "wsguard", rest[2:]
    return name, rest


def check_wsguard(arguments: list[str]) -> None:
    command = " ".join(["wsguard", *arguments])
    if not arguments or arguments[0].startswith("-"):
        subcommand = None
    else:
        subcommand = arguments[0]
        assert subcommand in wsguard_subcommands(), f"{command}: wsguard has no subcommand {subcommand!r}"
        arguments = arguments[1:]
    known = wsguard_options(subcommand)
    for word in arguments:
        match = re.match(r"\[?(--?[A-Za-z][\w-]*)", word)
        if match:
            assert match[1] in known, f"{command}: {match[1]} is not an option of wsguard {subcommand or ''}"


CURL_TAKES_VALUE = {
    "-H", "--header", "-o", "--output", "-u", "--user", "-A", "--user-agent", "-e", "--referer",
    "-b", "--cookie", "-m", "--max-time", "--connect-timeout", "-w", "--write-out", "--cacert",
    "--cert", "--key", "-T", "--upload-file", "--resolve",
}  # fmt: skip
CURL_DATA = {"-d", "--data", "--data-raw", "--data-binary", "--json", "-F", "--form"}


def check_curl(arguments: list[str], endpoints: Sequence[Endpoint]) -> None:
    method, url, data = None, None, False
    words = iter(arguments)
    for word in words:
        if word in {"-X", "--request"}:
            method = next(words, "")
        elif word.startswith("-X") and len(word) > 2:
            method = word[2:]
        elif word in CURL_DATA:
            next(words, None)
            data = True
        elif word in CURL_TAKES_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            url = word
    assert url is not None, f"curl {' '.join(arguments)}: no URL"
    method = (method or ("POST" if data else "GET")).upper()
    path = urlsplit(url if "://" in url else f"http://{url}").path or "/"
    assert any(endpoint.method == method and endpoint.pattern.fullmatch(path) for endpoint in endpoints), (
        f"curl {' '.join(arguments)}: {method} {path} is neither in docs/protocol.md section 4 nor a "
        "route of this page"
    )


def check_shell(block: Block, endpoints: Sequence[Endpoint], root: Path) -> None:
    for words in shell_commands(block.text, console=block.language == "console"):
        program, arguments = _program(words)
        try:
            if program == "wsguard":
                check_wsguard(arguments)
            elif program == "curl":
                check_curl(arguments, endpoints)
            elif program == "make":
                targets = [word for word in arguments if not word.startswith("-") and "=" not in word]
                for target in targets:
                    assert target in make_targets(root), f"make {target}: no such target in the Makefile"
        except AssertionError as error:
            raise AssertionError(f"{block}: {error}") from None


def run_python(block: Block, workdir: Path) -> None:
    script = workdir / "block.py"
    script.write_text(block.text, encoding="utf-8")
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=workdir,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
            timeout=PYTHON_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{block}: still running after {PYTHON_TIMEOUT:g} s") from error
    assert result.returncode == 0, (
        f"{block}: the python block exited {result.returncode} (mark it {FRAGMENT} if it is not a "
        f"whole program):\n{result.stderr[-3000:]}"
    )


def check(block: Block, page_blocks: Sequence[Block], workdir: Path, root: Path = ROOT) -> str:
    """Check one block; return what was done: ``run``, ``checked``, ``run by`` or ``fragment``."""
    if block.marker == FRAGMENT:
        if block.language in {"python", "py"}:
            try:
                compile(block.text, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            except SyntaxError as error:
                raise AssertionError(f"{block}: a python fragment that does not compile: {error}") from error
        return "fragment"
    if block.marker is not None:
        match = RUN_BY.fullmatch(block.marker)
        assert match is not None
        test = root / match["test"]
        assert test.is_file(), f"{block}: {match['test']} does not exist"
        named = block.page in test.read_text(encoding="utf-8")
        assert named, f"{block}: {match['test']} does not name {block.page}"
        return "run by"
    lines = [line for line in block.text.splitlines() if line.strip()]
    if lines and all(INCLUDE.fullmatch(line.strip()) for line in lines):
        for line in lines:
            included = INCLUDE.fullmatch(line.strip())
            assert included is not None
            path = included["path"]
            assert (root / path).is_file(), f"{block}: includes {path}, which is missing"
        return "checked"
    if block.language in {"python", "py"}:
        run_python(block, workdir)
        return "run"
    if block.language == "json":
        try:
            json.loads(block.text)
        except ValueError as error:
            raise AssertionError(f"{block}: not JSON: {error}") from error
        return "checked"
    if block.language in SHELL or block.indented:
        check_shell(block, (*protocol_endpoints(root), *page_routes(page_blocks)), root)
        return "checked"
    raise AssertionError(
        f"{block}: a {block.language or 'plain'} block is neither run nor checked here: run it by a test "
        f"(<!-- run by tests/... -->) or mark it {FRAGMENT}"
    )


BLOCKS = all_blocks()
BY_PAGE = {page: [block for block in BLOCKS if block.page == page] for page in {b.page for b in BLOCKS}}


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_every_block_is_run_checked_or_marked(block: Block, tmp_path: Path) -> None:
    check(block, BY_PAGE[block.page], tmp_path)


def test_the_pages_have_blocks_of_every_kind() -> None:
    """The collector finds what the pages hold (a collector that found nothing would pass)."""
    assert len(BLOCKS) > 50
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/tutorial.md", "docs/migrate.md"}
    assert any(block.indented for block in BLOCKS)
    assert {block.marker for block in BLOCKS} >= {
        FRAGMENT,
        "<!-- run by tests/examples/test_readme_embedding.py -->",
        "<!-- run by tests/packaging/test_tutorial.py -->",
    }


# The collector and the checks, on pages of their own.


def _page(tmp_path: Path, text: str) -> list[Block]:
    path = tmp_path / "docs" / "page.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return collect(path, root=tmp_path)


def _check(tmp_path: Path, text: str) -> list[str]:
    blocks = _page(tmp_path, text)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return [check(block, blocks, workdir, root=tmp_path) for block in blocks]


def test_a_planted_broken_python_block_fails(tmp_path: Path) -> None:
    page = "Intro.\n\n```python\nimport json\n\nprint(json.dumps(undefined_name))\n```\n"
    with pytest.raises(AssertionError, match="NameError: name 'undefined_name' is not defined"):
        _check(tmp_path, page)


def test_a_working_python_block_runs_and_a_marked_one_is_only_compiled(tmp_path: Path) -> None:
    assert _check(tmp_path, "```python\nassert 1 + 1 == 2\n```\n") == ["run"]
    fragment = f"{FRAGMENT}\n```python\nawait guard.hub.publish(user_id, None, 'hello', {{}})\n```\n"
    assert _check(tmp_path, fragment) == ["fragment"]
    with pytest.raises(AssertionError, match="does not compile"):
        _check(tmp_path, f"{FRAGMENT}\n```python\ndef broken(:\n```\n")


def test_a_marker_counts_only_right_before_the_fence(tmp_path: Path) -> None:
    blocks = _page(tmp_path, f"{FRAGMENT}\n\n```python\nx = 1\n```\n")
    assert [block.marker for block in blocks] == [None]


def test_an_unmarked_block_of_another_language_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="neither run nor checked"):
        _check(tmp_path, "```js\nconnect('/ws');\n```\n")
    assert _check(tmp_path, f"{FRAGMENT}\n```js\nconnect('/ws');\n```\n") == ["fragment"]


def test_run_by_names_a_test_that_exists_and_names_the_page(tmp_path: Path) -> None:
    marked = "<!-- run by tests/test_page.py -->\n```python\nraise SystemExit(1)\n```\n"
    with pytest.raises(AssertionError, match="does not exist"):
        _check(tmp_path, marked)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_page.py").write_text('"""Runs another page."""\n', encoding="utf-8")
    with pytest.raises(AssertionError, match=r"does not name docs/page\.md"):
        _check(tmp_path, marked)
    (tmp_path / "tests" / "test_page.py").write_text('"""Runs docs/page.md."""\n', encoding="utf-8")
    assert _check(tmp_path, marked) == ["run by"]


def test_json_blocks_parse(tmp_path: Path) -> None:
    assert _check(tmp_path, '```json\n{"type": "ping", "ref": 1}\n```\n') == ["checked"]
    with pytest.raises(AssertionError, match="not JSON"):
        _check(tmp_path, '```json\n{"type": "ping",}\n```\n')


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("wsguard serve --dev --no-such-flag 1", "--no-such-flag is not an option"),
        ("WSGUARD_DEV=1 .venv/bin/wsguard serv --dev", "no subcommand 'serv'"),
        ("python -m wsguard leakcheck --heartbeat-interval 1", "--heartbeat-interval is not an option"),
        ("curl http://127.0.0.1:8765/api/nowhere", "GET /api/nowhere is neither"),
        ("curl -X DELETE http://127.0.0.1:8765/healthz", "DELETE /healthz is neither"),
        ("curl -s localhost:8765/metrics | grep x && make no-such-target", "make no-such-target"),
    ],
)
def test_a_shell_block_naming_what_does_not_exist_fails(tmp_path: Path, command: str, error: str) -> None:
    (tmp_path / "Makefile").write_text("test:\n\ttrue\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=re.escape(error)):
        check_shell(_page(tmp_path, f"```sh\n{command}\n```\n")[0], protocol_endpoints(), tmp_path)


def test_a_shell_block_of_real_commands_passes(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("demo:\n\ttrue\ntest: demo\n", encoding="utf-8")
    block = _page(
        tmp_path,
        "```console\n$ WSGUARD_JWT_SECRET=x wsguard serve \\\n    --port 0 --max-connections-per-user=5\n"
        "output that is not checked --nonsense\n$ wsguard leakcheck --profile ci  # a comment\n"
        "$ curl -N -H 'Authorization: Bearer t' 'http://h/sse?subscribe=chat-1'\n"
        "$ curl -XPOST http://h/chats/c1/ask\n$ make demo test\n```\n\n"
        '```python\n@app.post("/chats/{thread_id}/ask")\n```\n',
    )
    check_shell(block[0], (*protocol_endpoints(), *page_routes(block)), tmp_path)


def test_indented_blocks_are_collected_outside_lists_and_admonitions(tmp_path: Path) -> None:
    blocks = _page(
        tmp_path,
        "Run it:\n\n    wsguard serve --dev\n    wsguard leakcheck\n\n"
        "- a list item\n\n    its second paragraph, not code\n\n"
        '!!! note "A note"\n\n    its text, not code\n\n'
        "A paragraph.\n\n    code again\n",
    )
    assert [(block.line, block.text, block.indented) for block in blocks] == [
        (3, "wsguard serve --dev\nwsguard leakcheck\n", True),
        (16, "code again\n", True),
    ]


def test_a_block_that_is_never_closed_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="never closed"):
        _page(tmp_path, "```python\nx = 1\n")
