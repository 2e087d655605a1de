"""Shared by every group: the PASS/FAIL counter, running commands, CMake text parsing and the context
(paths, tools) each group gets."""
import re
import shlex
import shutil
import subprocess
from pathlib import Path


class Checks:
    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet  # a group re-reading a file another group already checked: count, print nothing

    def check(self, name, ok, why=""):
        if self.quiet:
            return ok
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {why}", flush=True)
        return ok


def run(cmd, log, cwd=None, env=None):
    """Runs cmd, appends its output to log; returns (returncode, output)."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n" + proc.stdout + "\n")
    return proc.returncode, proc.stdout


def tail(text, lines=15):
    return "\n    " + "\n    ".join(text.strip().splitlines()[-lines:])


def cmake_project_version(source):
    m = re.search(r"project\(\s*skipstep\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", (source / "CMakeLists.txt").read_text())
    return m.group(1) if m else None


def cmake_call_args(text, name):
    """The argument text of the first `name(...)` call in a CMake file (comments removed), or None."""
    text = re.sub(r"#[^\n]*", "", text)
    m = re.search(r"\b" + name + r"\s*\(", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def cmake_tokens(args):
    return [t.strip('"') for t in re.findall(r'"[^"]*"|[^\s"]+', args or "")]


class Context:
    def __init__(self, a):
        self.source = Path(a.source_dir).resolve()
        self.work = Path(a.work_dir).resolve()
        self.cmake = a.cmake
        self.cxx = a.cxx
        self.generator = a.generator
        self.make_program = a.make_program
        self.pkg_config = a.pkg_config
        self.version = cmake_project_version(self.source)
        self.stage = self.work / "vcpkg" / "packages" / "skipstep_x64-linux"
        self.logs = self.work / "logs"

    def cmake_common(self):
        opts = ["-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"]
        if self.generator:
            opts += ["-G", self.generator]
        if self.make_program:
            opts.append(f"-DCMAKE_MAKE_PROGRAM={self.make_program}")
        if self.cxx:
            opts.append(f"-DCMAKE_CXX_COMPILER={self.cxx}")
        return opts

    def build_project(self, checks, name, src, build, options, run_exe=None, ctest=False):
        """Configures, builds and optionally runs (an executable, or ctest) a small CMake project."""
        log = self.logs / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".log")
        shutil.rmtree(build, ignore_errors=True)
        rc, out = run([self.cmake, "-S", src, "-B", build] + self.cmake_common() + options, log)
        if not checks.check(f"{name}: configure", rc == 0, f"cmake failed (log {log}):" + tail(out)):
            return False, out
        config_out = out
        rc, out = run([self.cmake, "--build", build, "-j", "2"], log)
        if not checks.check(f"{name}: build", rc == 0, f"build failed (log {log}):" + tail(out)):
            return False, config_out
        if run_exe:
            rc, out = run([Path(build) / run_exe], log)
            print("    " + out.strip().replace("\n", "\n    "))
            checks.check(f"{name}: run", rc == 0, f"{run_exe} exited {rc}:" + tail(out))
        if ctest:
            rc, out = run(["ctest", "--test-dir", build, "--output-on-failure"], log)
            n = len(re.findall(r"Test\s+#\d+:", out))
            checks.check(f"{name}: ctest ({n} tests)", rc == 0 and n > 0, f"ctest exited {rc}:" + tail(out, 30))
        return True, config_out
