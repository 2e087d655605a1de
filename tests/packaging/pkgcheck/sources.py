"""Checks of the source tree itself: the standalone examples built against the staged prefix, and README code
blocks equal to the example files they announce."""
import re


def group_examples(ctx, checks):
    ctx.build_project(checks, "examples/standalone against the staged prefix", ctx.source / "examples/standalone",
                      ctx.work / "examples_standalone", [f"-DCMAKE_PREFIX_PATH={ctx.stage}"], ctest=True)
    n = len(list((ctx.source / "examples").glob("*.cpp")))
    checks.check(f"examples: {n} example programs present (>= 6)", n >= 6, str(n))


def group_readme(ctx, checks):
    readme = ctx.source / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    blocks = re.findall(r"<!--\s*example:\s*(\S+)\s*-->\s*\n```cpp\n(.*?)\n```", text, re.S)
    if not blocks:
        print("SKIP readme: no `<!-- example: examples/NAME.cpp -->` markers in README.md")
        return
    for rel, block in blocks:
        path = ctx.source / rel
        if not checks.check(f"readme: {rel} exists", path.is_file()):
            continue
        lines = path.read_text().rstrip("\n").splitlines()
        first = next((i for i, ln in enumerate(lines) if ln.startswith("#include")), 0)
        expected = "\n".join(lines[first:])
        diff = next((f"line {i + 1}: README {a!r} vs file {b!r}" for i, (a, b) in
                     enumerate(zip(block.splitlines(), expected.splitlines())) if a != b), "different length")
        checks.check(f"readme: the code block for {rel} equals the file (from its first #include)",
                     block.strip("\n") == expected.strip("\n"), diff)
