"""The docs run as written: every ```python block of README.md and docs/*.md.

Each snippet runs as a script in a fresh interpreter (``tests/doc_runner.py``: its own
temporary working directory, ``PYTHONPATH`` the repository, no ``NERVE_*`` or ``OPENAI_*``
variable, so ``memory://`` and no model endpoint; no network but 127.0.0.1) and must exit 0
within :data:`TIMEOUT` seconds: an app that calls ``asyncio.run(main())`` finishes by
itself. Its handlers must not fail (unless the snippet raises that error on purpose), and
the names its functions read must exist, so a handler that is defined and never called is
checked as well.

A snippet that cannot run alone says so in the Markdown, on the line before its fence:

- ``<!-- fragment: why -->``: not run (a placeholder, a server it needs); it must compile;
- ``<!-- continues: what it uses -->``: runs after the snippet before it in the file (and
  that one's own predecessors), as a reader reading on would.

Snippets that are known to fail and that another change fixes are listed in
:data:`PENDING`: they are expected to fail (strictly: once one runs, its entry must go).

Shell blocks (```bash, ```console) are not run; their ``nerve`` commands and options must
exist in the command's ``--help``, the scripts, files and modules they name must exist,
with the options they pass, and the extras they install must be declared.
"""

from __future__ import annotations

import ast
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = Path(__file__).with_name("doc_runner.py")
#: Seconds one snippet may take (the slowest, a Kafka measurement, takes ~6 s).
TIMEOUT = 40.0
#: Snippets running at once: most of their time is imports and waiting.
POOL = 4

#: Snippets that do not run as written yet, per file, by the line of their opening fence,
#: with what is wrong. The change that fixes one deletes its entry (the test then fails
#: while an entry is left for a snippet that runs).
PENDING: dict[str, dict[int, str]] = {}

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^`]*$")
CLOSE = re.compile(r"^ *```\s*$")
MARKER = re.compile(r"<!--\s*(fragment|continues)\b")
MARKER_LINE = re.compile(r"^<!-- (?P<kind>fragment|continues): (?P<reason>\S.*?) -->$")
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    doc: str  # the file, relative to the repository
    line: int  # of its opening fence, from 1
    lang: str
    code: str
    marker: str | None = None  # "fragment" or "continues"
    reason: str = ""
    previous: Block | None = None  # the python block a "continues" block follows

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def source(self) -> str:
        """The script run: this block after the blocks it continues."""
        head = self.previous.source + "\n\n" if self.previous is not None else ""
        return f"{head}# {self.id}\n{self.code}"


@cache
def lines_of(doc: str) -> list[str]:
    return (ROOT / doc).read_text().splitlines()


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the marker on the line before each."""
    doc = str(path.relative_to(ROOT))
    lines = lines_of(doc)
    blocks: list[Block] = []
    last_python: Block | None = None
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start, indent = i, len(opening["indent"])
        i += 1
        while i < len(lines) and not CLOSE.match(lines[i]):
            i += 1
        assert i < len(lines), f"{doc}:{start + 1}: a fence that is never closed"
        code = "\n".join(line[indent:] for line in lines[start + 1 : i]) + "\n"
        before = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        marked = MARKER_LINE.match(before)
        kind, reason = (marked["kind"], marked["reason"]) if marked else (None, "")
        block = Block(
            doc,
            start + 1,
            opening["lang"],
            code,
            kind,
            reason,
            last_python if kind == "continues" else None,
        )
        blocks.append(block)
        if block.lang == "python":
            last_python = block
        i += 1
    return blocks


BLOCKS = [block for path in DOCS for block in parse(path)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUNNABLE = [b for b in PYTHON if b.marker != "fragment"]
FRAGMENTS = [b for b in PYTHON if b.marker == "fragment"]
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in SHELL]


def pending(block: Block) -> str | None:
    return PENDING.get(block.doc, {}).get(block.line)


def runnable_params() -> list[object]:
    params: list[object] = []
    for block in RUNNABLE:
        why = pending(block)
        marks = [pytest.mark.xfail(reason=f"pending: {why}", strict=True)] if why else []
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


# --- running the python snippets ------------------------------------------------------


@dataclass(frozen=True)
class Run:
    returncode: int | None  # None: killed at the timeout
    output: str
    seconds: float


def snippet_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NERVE_", "OPENAI_", "OTEL_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_snippet(block: Block, cwd: Path) -> Run:
    script = cwd / "snippet.py"
    script.write_text(block.source)
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603  # our interpreter, on the docs' own code
            [sys.executable, str(RUNNER), str(script)],
            cwd=cwd,
            env=snippet_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = b"".join(part for part in (exc.stdout, exc.stderr) if isinstance(part, bytes))
        return Run(None, out.decode(errors="replace"), time.monotonic() - started)
    return Run(done.returncode, done.stdout + done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Run]]]:
    """Every selected snippet, started at once on a small pool (each test waits for its own)."""
    by_id = {block.id: block for block in RUNNABLE}
    chosen = [
        by_id[item.callspec.id]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.path == Path(__file__)
        and item.originalname == "test_snippet_runs"
    ]
    pool = ThreadPoolExecutor(POOL)
    try:
        yield {
            block.id: pool.submit(run_snippet, block, tmp_path_factory.mktemp("snippet"))
            for block in chosen
        }
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("block", runnable_params())
def test_snippet_runs(block: Block, runs: dict[str, Future[Run]]) -> None:
    run = runs[block.id].result()
    assert run.returncode is not None, (
        f"{block.id} did not finish within {TIMEOUT:.0f} s:\n{run.output}"
    )
    assert run.returncode == 0, f"{block.id} failed ({run.seconds:.1f} s):\n{run.output}"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in FRAGMENTS])
def test_fragment_compiles(block: Block) -> None:
    """A fragment is not run, but it is Python (top-level ``await`` allowed)."""
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_markers_have_reasons_and_stand_before_python() -> None:
    problems = []
    for path in DOCS:
        lines = lines_of(str(path.relative_to(ROOT)))
        for n, line in enumerate(lines):
            if not MARKER.search(line):
                continue
            where = f"{path.relative_to(ROOT)}:{n + 1}"
            if not MARKER_LINE.match(line.strip()):
                problems.append(f"{where}: write it `<!-- fragment: why -->` on a line of its own")
                continue
            after = next((s for s in lines[n + 1 :] if s.strip()), "")
            fence = FENCE.match(after)
            if fence is None or fence["lang"] != "python":
                problems.append(f"{where}: a marker stands on the line before a ```python fence")
    for block in PYTHON:
        before = next(
            (s.strip() for s in reversed(lines_of(block.doc)[: block.line - 1]) if s.strip()), ""
        )
        if before.startswith("<!--") and block.marker is None:
            problems.append(f"{block.id}: {before} is no marker (fragment: or continues:)")
        if block.marker == "continues" and (
            block.previous is None or block.previous.marker == "fragment"
        ):
            problems.append(f"{block.id}: continues no runnable snippet")
    assert not problems, "\n".join(problems)


def test_pending_names_snippets_that_exist() -> None:
    ids = {block.id for block in RUNNABLE}
    stale = [f"{doc}:{line}" for doc, lines in PENDING.items() for line in lines]
    assert not [i for i in stale if i not in ids], (
        f"PENDING names no runnable snippet: {[i for i in stale if i not in ids]}; "
        f"the python snippets are {sorted(ids)}"
    )


def test_the_collection_covers_every_doc() -> None:
    with_fences = {str(p.relative_to(ROOT)) for p in DOCS if "```" in p.read_text()}
    assert {"README.md", "docs/http.md", "docs/architecture.md"} <= with_fences
    assert {block.doc for block in BLOCKS} == with_fences
    assert {block.doc for block in PYTHON} >= {"README.md", "docs/http.md", "docs/llm.md"}


# --- shell blocks: commands that exist, options they take -----------------------------


def console_script() -> Callable[[], object]:
    """The ``nerve`` command's entry point, as pyproject.toml declares it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["nerve"].partition(":")
    entry: Callable[[], object] = getattr(importlib.import_module(module), attr)
    return entry


@cache
def nerve_help(path: tuple[str, ...]) -> tuple[int, str]:
    """``nerve PATH --help``: exit code and text (in process, wide, no colour)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(out):
        mp.setenv("COLUMNS", "200")
        mp.setenv("NO_COLOR", "1")
        mp.delenv("FORCE_COLOR", raising=False)
        mp.setattr(sys, "argv", ["nerve", *path, "--help"])
        try:
            console_script()()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())


def has_subcommands(help_text: str) -> bool:
    return re.search(r"─ Commands ─|^Commands:", help_text, re.M) is not None


def options_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def unbracket(word: str) -> str:
    """``[--limit`` and ``100]`` of the docs' ``[--limit 100]``; ``nerve[local]`` stays."""
    word = word.removeprefix("[")
    return word[:-1] if word.endswith("]") and "[" not in word else word


def commands(block: Block) -> Iterator[list[str]]:
    """Each command of a shell block as words: prompts, comments, pipes and leading
    ``NAME=value`` assignments taken off; ``a|b`` and ``x | --y`` are the docs' way of
    writing alternatives and stay in one command."""
    lines = block.code.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    pending_text = ""
    for line in lines:
        text = pending_text + line
        if text.endswith("\\"):
            pending_text = text[:-1] + " "
            continue
        try:
            words = shlex.split(text, comments=True)
        except ValueError:  # a quote that closes on a later line
            pending_text = text + "\n"
            continue
        pending_text = ""
        command: list[str] = []
        for n, word in enumerate(words):
            following = words[n + 1] if n + 1 < len(words) else ""
            if word in ("&&", ";") or (word == "|" and not following.startswith("-")):
                yield command
                command = []
            elif word != "|":
                command.append(unbracket(word))
        yield command
    assert not pending_text, f"{block.id}: a command that never ends"


def check_nerve(args: list[str]) -> list[str]:
    paths: list[tuple[str, ...]] = [()]
    rest = list(args)
    while rest and not rest[0].startswith("-") and has_subcommands(nerve_help(paths[0])[1]):
        word = rest.pop(0)
        paths = [(*path, name) for path in paths for name in word.split("|")]
    problems = [
        f"`nerve {' '.join(paths[0])}`: no module {target} in the repository"
        for target in rest
        if re.fullmatch(r"[\w./]+(:\w+)?", target)
        and (ROOT / re.split(r"[./]", target)[0]).is_dir()
        and module_file(target.split(":")[0].removesuffix(".py").replace("/", ".")) is None
    ]
    for path in paths:
        code, text = nerve_help(path)
        if code != 0:
            problems.append(f"`nerve {' '.join(path)}` is no command ({code})")
            continue
        for word in args:
            option = word.split("=", 1)[0]
            if option.startswith("-") and option != "-" and option not in options_in(text):
                problems.append(f"`nerve {' '.join(path)}` has no option {option}")
    return problems


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def check_options_in_source(command: str, source: Path, args: list[str]) -> list[str]:
    """Each option passed is a word of the module's or script's source."""
    text = source.read_text()
    return [
        f"`{command}`: {source.relative_to(ROOT)} takes no {option}"
        for option in (word.split("=", 1)[0] for word in args)
        if option.startswith("-")
        and not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)
    ]


def check_command(words: list[str]) -> list[str]:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # NAME=value before the command
    if not words:
        return []
    head, args = Path(words[0]).name, words[1:]
    shown = " ".join(words)
    if head == "nerve":
        return check_nerve(args)
    if head in ("python", "python3") and args[:1] == ["-m"] and len(args) > 1:
        top = args[1].split(".")[0]
        if not (ROOT / top).is_dir():
            return []  # python -m pip and the like: not ours
        source = module_file(args[1])
        if source is None:
            return [f"`{shown}`: no module {args[1]} in the repository"]
        return check_options_in_source(shown, source, args[2:])
    if head in ("python", "python3") and args and args[0].endswith(".py"):
        return [] if (ROOT / args[0]).is_file() else [f"`{shown}`: no file {args[0]}"]
    if head == "bash" and args and args[0].startswith("scripts/"):
        script = ROOT / args[0]
        if not script.is_file():
            return [f"`{shown}`: no script {args[0]}"]
        return check_options_in_source(shown, script, args[1:])
    if head == "pytest":
        paths = [a.split("::")[0] for a in args if a.startswith("tests")]
        return [f"`{shown}`: no {p}" for p in paths if not (ROOT / p).exists()]
    if head == "pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
        named = [
            extra
            for word in args
            if (found := re.fullmatch(r"(?:nerve|\.)\[([\w,-]+)\]", word))
            for extra in found[1].split(",")
        ]
        return [f"`{shown}`: nerve has no extra {e!r}" for e in named if e not in extras]
    return []


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in SHELL_BLOCKS])
def test_shell_commands_exist(block: Block) -> None:
    problems = [problem for words in commands(block) for problem in check_command(words)]
    assert not problems, f"{block.id}:\n" + "\n".join(problems)
