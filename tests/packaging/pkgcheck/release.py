"""The release step that fills the port's SHA512 (scripts/port-sha512), run on a throw-away git repository with a
tag: the hash is that of the tag's `git archive` with GitHub's top directory, --write puts it into the portfile,
and a missing tag or a tag that is not the port's version is refused. The placeholder must stay documented."""
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile

from .common import run, tail

GIT_ENV = {"GIT_AUTHOR_NAME": "release check", "GIT_AUTHOR_EMAIL": "check@invalid",
           "GIT_COMMITTER_NAME": "release check", "GIT_COMMITTER_EMAIL": "check@invalid",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}


def make_repo(ctx, repo, tag):
    """A minimal repository holding what the script reads, committed and tagged; returns False if git failed."""
    shutil.rmtree(repo, ignore_errors=True)
    for rel in ("CMakeLists.txt", "LICENSE", "ports/skipstep/portfile.cmake", "ports/skipstep/vcpkg.json",
                "include/skipstep/version.hpp"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ctx.source / rel, repo / rel)
    env = dict(os.environ, **GIT_ENV)
    log = ctx.logs / "release.log"
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "release check"],
                ["git", "tag", tag]):
        rc, out = run(cmd, log, cwd=repo, env=env)
        if rc != 0:
            return False, out
    return True, ""


def group_release(ctx, checks):
    script = ctx.source / "scripts/port-sha512"
    portfile_text = (ctx.source / "ports/skipstep/portfile.cmake").read_text()
    placeholder = re.search(r"^\s+SHA512\s+0\s*$", portfile_text, re.M) is not None
    checks.check("release: the portfile's SHA512 is the placeholder 0 or a 128-digit hash",
                 placeholder or re.search(r"^\s+SHA512\s+[0-9a-f]{128}\s*$", portfile_text, re.M) is not None)
    if placeholder:
        checks.check("release: the placeholder is documented in the portfile, naming scripts/port-sha512",
                     "placeholder" in portfile_text and "scripts/port-sha512" in portfile_text)
    if not checks.check("release: scripts/port-sha512 exists and is executable", os.access(script, os.X_OK)):
        return
    if not checks.check("release: git is available", shutil.which("git") is not None):
        return
    tag = f"v{ctx.version}"
    repo = ctx.work / "release-repo"
    ok, out = make_repo(ctx, repo, tag)
    if not checks.check(f"release: a scratch repository tagged {tag}", ok, tail(out)):
        return
    env = dict(os.environ, **GIT_ENV)
    log = ctx.logs / "release.log"
    rc, out = run([script, "--repo", repo], log, env=env)
    printed = out.strip().splitlines()[-1] if out.strip() else ""
    archive = subprocess.run(["git", "archive", "--format=tar.gz", f"--prefix=skipstep-{ctx.version}/", tag],
                             cwd=repo, env=env, stdout=subprocess.PIPE, check=True).stdout
    expected = hashlib.sha512(archive).hexdigest()
    checks.check("release: port-sha512 prints the SHA512 of the tag's git archive", rc == 0 and printed == expected,
                 f"rc {rc}, printed {printed[:20]}..., expected {expected[:20]}...")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tops = {n.split("/")[0] for n in tar.getnames()}
    checks.check(f"release: that archive unpacks to skipstep-{ctx.version}/ (GitHub's layout for {tag})",
                 tops == {f"skipstep-{ctx.version}"}, str(tops))
    rc, out = run([script, "--write", "--repo", repo], log, env=env)
    written = (repo / "ports/skipstep/portfile.cmake").read_text()
    checks.check("release: --write replaces the portfile's SHA512 with it, and nothing else",
                 rc == 0 and written == re.sub(r"(?m)^(\s+SHA512\s+)[0-9a-f]+\s*$", r"\g<1>" + expected,
                                                 portfile_text)
                 and f"SHA512 {expected}" in written and written.count(expected) == 1, tail(out))
    rc, out = run([script, "--repo", repo, "v9.9.9"], log, env=env)
    checks.check("release: a tag that does not exist is refused", rc != 0 and "no tag" in out, tail(out))
    run(["git", "tag", "v9.9.9"], log, cwd=repo, env=env)
    rc, out = run([script, "--repo", repo, "v9.9.9"], log, env=env)
    checks.check("release: a tag that is not vcpkg.json's version is refused", rc != 0 and "vcpkg.json" in out,
                 tail(out))
