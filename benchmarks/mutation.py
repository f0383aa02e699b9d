"""Mutation check: do the fast tests notice when the decision, tracking or gallery code is wrong?

Each mutant changes one operator or constant in ``blurface/gallery.py``, ``embedding.py``
(the median over a person's photos lives there), ``track.py``, ``decisions.py`` or ``plan.py`` (``<`` to ``<=``, ``+`` to ``-``, ``and`` to ``or``, ``np.median`` to ``np.min``,
``min`` to ``max``, ``True`` to ``False``, a number ``n`` to ``n + 1`` ...), in a copy
of the repository made from ``git HEAD`` plus the working tree, so your checkout is
never touched. The tests run in stages, cheapest first: a mutant that the unit tests
kill never pays for the end-to-end ones. A mutant is *killed* when a stage fails (or
times out), *survived* when every stage passes.

    nice -n 10 python benchmarks/mutation.py --only "$DECISIONS"   # the decision maths, sampled
    nice -n 10 python benchmarks/mutation.py --sample 0            # every mutant (many hours)
    python benchmarks/mutation.py --rev 87c0537 --only "$DECISIONS" # the same mutants against older tests
    python benchmarks/mutation.py --list                           # only list the mutants

    DECISIONS='^(person_distances|Gallery\.distances|track_distance|decide|exclude_simultaneous|Plan\.iter_frame_masks|Plan\.masked_frame_count|extend_track|box_at|_end_velocity|_velocity)$'

On a loaded 2-core machine a surviving mutant costs minutes (the second stage runs
end-to-end tests), so sample: 20 mutants of the decision maths took about an hour.

The sample is seeded, so two runs (before and after a change to the tests) try the
same mutants as long as the three modules are unchanged. Survivors are printed with
file, line and change: read them, and write a test for the ones that matter. Not in
CI: it takes minutes to hours, and a surviving mutant is a question, not a failure.
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ("blurface/gallery.py", "blurface/embedding.py", "blurface/track.py", "blurface/decisions.py", "blurface/plan.py")
# Cheapest first. Each stage is one pytest run; the first that fails kills the mutant.
STAGES = (
    ["tests/test_plan.py", "tests/test_track.py", "tests/test_properties.py", "tests/test_decision.py",
     "-m", "not shared", "-k", "not wrong_photo"],
    ["tests/test_decision.py", "tests/test_people.py", "tests/test_gallery.py", "tests/test_e2e.py", "-m", "not slow",
     "-k", "not mask_effects and not faceless and not no_audio_input"],
)
# test_gallery.py detects faces in photos (~50 s): run it only for mutants of gallery.py.
ONLY_FOR = {"tests/test_gallery.py": "blurface/gallery.py"}
ALWAYS = ("embedding.py: np.median -> np.min",)  # named in issue 14: must be in every sample

_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult}
_BOOLOP = {ast.And: ast.Or, ast.Or: ast.And}
_CALLS = {"median": "min", "min": "max", "max": "min", "argmin": "argmax", "argmax": "argmin", "any": "all", "all": "any"}


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    col: int
    kind: str
    description: str
    function: str = ""  # the enclosing function, e.g. "Gallery.distances"

    def __str__(self) -> str:
        return f"{Path(self.module).name}:{self.line}: {self.description} (in {self.function or 'module'})"


def _op_name(op: type) -> str:
    return {
        ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.And: "and", ast.Or: "or",
    }[op]


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def find_mutants(module: str, source: str) -> list[Mutant]:
    """Every place in ``source`` where one of the operators above can be swapped."""
    tree = ast.parse(source)
    docs = _docstring_nodes(tree)
    found: list[Mutant] = []

    scopes: list[tuple[int, int, str]] = []  # (first line, last line, qualified name)

    def collect(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    scopes.append((child.lineno, child.end_lineno or child.lineno, name))
                collect(child, f"{name}.")

    collect(tree, "")

    def function_at(line: int) -> str:
        inside = [(b - a, name) for a, b, name in scopes if a <= line <= b]
        return min(inside)[1] if inside else ""

    def add(node: ast.AST, kind: str, description: str) -> None:
        found.append(Mutant(module, node.lineno, node.col_offset, kind, description, function_at(node.lineno)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _COMPARE:
            op = type(node.ops[0])
            add(node, "compare", f"{_op_name(op)} -> {_op_name(_COMPARE[op])}")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
            op = type(node.op)
            add(node, "binop", f"{_op_name(op)} -> {_op_name(_BINOP[op])}")
        elif isinstance(node, ast.BoolOp) and type(node.op) in _BOOLOP:
            op = type(node.op)
            add(node, "boolop", f"{_op_name(op)} -> {_op_name(_BOOLOP[op])}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            add(node, "not", "not x -> x")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in _CALLS:
                prefix = f"{f.value.id}." if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                add(node, "call", f"{prefix}{name} -> {prefix}{_CALLS[name]}")
        elif isinstance(node, ast.Constant) and id(node) not in docs:
            if isinstance(node.value, bool):
                add(node, "const", f"{node.value} -> {not node.value}")
            elif isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                add(node, "const", f"{node.value!r} -> {_bump(node.value)!r}")
    found.sort(key=lambda m: (m.line, m.col, m.kind))
    return found


def _bump(value: int | float) -> int | float:
    if isinstance(value, int):
        return value + 1
    return value * 1.5 if value else 0.5


class _Apply(ast.NodeTransformer):
    def __init__(self, mutant: Mutant) -> None:
        self.m = mutant
        self.done = False

    def _hit(self, node: ast.AST, kind: str) -> bool:
        return (not self.done and kind == self.m.kind and getattr(node, "lineno", None) == self.m.line
                and getattr(node, "col_offset", None) == self.m.col)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        if self._hit(node, "compare"):
            node.ops[0] = _COMPARE[type(node.ops[0])]()
            self.done = True
        return self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        if self._hit(node, "binop"):
            node.op = _BINOP[type(node.op)]()
            self.done = True
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        if self._hit(node, "boolop"):
            node.op = _BOOLOP[type(node.op)]()
            self.done = True
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if self._hit(node, "not"):
            self.done = True
            return self.generic_visit(node).operand  # type: ignore[union-attr]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if self._hit(node, "call"):
            if isinstance(node.func, ast.Attribute):
                node.func.attr = _CALLS[node.func.attr]
            else:
                node.func.id = _CALLS[node.func.id]  # type: ignore[union-attr]
            self.done = True
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if self._hit(node, "const"):
            self.done = True
            value = (not node.value) if isinstance(node.value, bool) else _bump(node.value)
            return ast.copy_location(ast.Constant(value), node)
        return node


def mutate(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    applier = _Apply(mutant)
    tree = applier.visit(tree)
    if not applier.done:
        raise RuntimeError(f"could not apply {mutant}")
    return ast.unparse(ast.fix_missing_locations(tree))


def copy_repo(dest: Path, rev: str | None = None) -> None:
    """The working tree's tracked and untracked-but-not-ignored files (what the tests see), or commit ``rev``."""
    if rev:
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_stage(workdir: Path, args: list[str], timeout: float, module: str | None = None) -> str:
    """``passed``, ``failed`` or ``timeout`` for one pytest run in ``workdir``."""
    existing = [a for a in args if not a.startswith("tests/") or (
        (workdir / a).exists() and (module is None or ONLY_FOR.get(a, module) == module))]
    if not any(a.startswith("tests/") for a in existing):
        return "passed"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *existing]
    env = {**__import__("os").environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    # 0: all passed; 5: nothing collected (the stage's files are all deselected).
    return "passed" if r.returncode in (0, 5) else "failed"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=int, default=20, help="mutants to try, seeded (0: all; default 20)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--timeout", type=float, default=240, help="at least this many seconds per stage (and 4x the clean run) before a mutant counts as killed")
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    p.add_argument("--rev", help="test this commit's tests and modules (e.g. to measure 'before'), not the work tree")
    p.add_argument("--modules", nargs="*", default=list(MODULES))
    p.add_argument("--only", metavar="REGEX", help="only mutants in functions whose qualified name matches, "
                   "e.g. 'distances|decide|track_distance|extend_track'")
    args = p.parse_args()

    sources = {m: (REPO / m).read_text() for m in args.modules}
    if args.rev:
        sources = {m: subprocess.run(["git", "show", f"{args.rev}:{m}"], cwd=REPO, check=True, capture_output=True,
                                     text=True).stdout for m in args.modules}
    mutants = [mu for m in args.modules for mu in find_mutants(m, sources[m])]
    if args.only:
        mutants = [mu for mu in mutants if re.search(args.only, mu.function)]
    if args.list:
        for mu in mutants:
            print(mu)
        print(f"{len(mutants)} mutants")
        return 0
    chosen = mutants
    if args.sample and args.sample < len(mutants):
        forced = [mu for mu in mutants if any(Path(mu.module).name == a.split(":")[0] and mu.description == a.split(": ")[1]
                                              for a in ALWAYS)]
        rest = [mu for mu in mutants if mu not in forced]
        chosen = sorted(forced + random.Random(args.seed).sample(rest, args.sample - len(forced)),
                        key=lambda mu: (mu.module, mu.line, mu.col))
    print(f"{len(mutants)} mutants in {', '.join(args.modules)}; trying {len(chosen)}", flush=True)

    started = time.perf_counter()
    survived: list[Mutant] = []
    with tempfile.TemporaryDirectory(prefix="blurface-mutation-") as tmp:
        work = Path(tmp)
        copy_repo(work, args.rev)
        timeouts = []
        for stage in STAGES:
            t0 = time.perf_counter()
            outcome = run_stage(work, stage, 3600)
            if outcome != "passed":
                print(f"the unmutated tests do not pass ({stage}: {outcome}): fix them first", file=sys.stderr)
                return 1
            # A mutant that runs far longer than the clean code (a loop that never ends) is killed;
            # a loaded machine must not be, so the limit is generous.
            timeouts.append(max(args.timeout, 4 * (time.perf_counter() - t0)))
        print(f"clean run: stage limits {[round(t) for t in timeouts]} s", flush=True)
        for k, mu in enumerate(chosen, 1):
            path = work / mu.module
            path.write_text(mutate(sources[mu.module], mu))
            try:
                verdict = "survived"
                for s, stage in enumerate(STAGES):
                    outcome = run_stage(work, stage, timeouts[s], mu.module)
                    if outcome != "passed":
                        verdict = f"killed by stage {s + 1} ({outcome})"
                        break
            finally:
                path.write_text(sources[mu.module])
            if verdict == "survived":
                survived.append(mu)
            print(f"[{k}/{len(chosen)}] {mu}: {verdict}", flush=True)
    killed = len(chosen) - len(survived)
    print(f"\nkilled {killed} of {len(chosen)} ({100 * killed / max(1, len(chosen)):.0f}%) "
          f"in {time.perf_counter() - started:.0f} s")
    for mu in survived:
        print(f"  survived: {mu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
