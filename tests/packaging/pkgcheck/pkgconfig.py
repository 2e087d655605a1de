"""pkg-config against the staged prefix (and a moved copy), then a one-file program built with its flags."""
import os
import shlex
import shutil

from .common import run, tail


def group_pkgconfig(ctx, checks):
    pc = ctx.stage / "share/pkgconfig/skipstep.pc"
    if not checks.check("pkg-config: skipstep.pc installed in share/pkgconfig", pc.is_file(), str(pc)):
        return
    for prefix, label in ((ctx.stage, "staged prefix"), (ctx.work / "moved-prefix", "moved copy")):
        if prefix != ctx.stage:
            shutil.rmtree(prefix, ignore_errors=True)
            shutil.copytree(ctx.stage, prefix)
        env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "share/pkgconfig"))
        env.pop("PKG_CONFIG_LIBDIR", None)
        env.pop("PKG_CONFIG_SYSROOT_DIR", None)
        log = ctx.logs / "pkgconfig.log"
        rc, ver = run([ctx.pkg_config, "--modversion", "skipstep"], log, env=env)
        checks.check(f"pkg-config ({label}): --modversion skipstep = {ctx.version}",
                     rc == 0 and ver.strip() == ctx.version, ver.strip())
        rc, cflags = run([ctx.pkg_config, "--cflags", "skipstep"], log, env=env)
        incs = [f[2:] for f in shlex.split(cflags) if f.startswith("-I")]
        checks.check(f"pkg-config ({label}): --cflags skipstep is -I<prefix>/include",
                     rc == 0 and len(incs) == 1 and os.path.realpath(incs[0]) == os.path.realpath(prefix / "include"),
                     cflags.strip())
        rc, libs = run([ctx.pkg_config, "--libs", "skipstep"], log, env=env)
        checks.check(f"pkg-config ({label}): --libs skipstep is empty (header-only)", rc == 0 and libs.strip() == "",
                     libs.strip())
    src = ctx.work / "pkgconfig_main.cpp"
    src.write_text(r'''#include <skipstep/skipstep.hpp>
#include <cstdio>
int main() {
  const auto s = skipstep::noise_schedule<>::linear(1000);
  const skipstep::ddim_sampler sampler(s, skipstep::timestep_schedule::trailing(1000, 5));
  std::printf("pkg-config program: skipstep %s, %zu steps\n", skipstep::version_string, sampler.num_steps());
  return sampler.num_steps() == 5 ? 0 : 1;
}
''')
    env = dict(os.environ, PKG_CONFIG_PATH=str(ctx.stage / "share/pkgconfig"))
    _, cflags = run([ctx.pkg_config, "--cflags", "skipstep"], ctx.logs / "pkgconfig.log", env=env)
    exe = ctx.work / "pkgconfig_main"
    cmd = [ctx.cxx or "c++", "-std=c++20", *shlex.split(cflags), str(src), "-o", str(exe)]
    rc, out = run(cmd, ctx.logs / "pkgconfig.log")
    if checks.check("pkg-config: c++ -std=c++20 $(pkg-config --cflags skipstep) main.cpp compiles", rc == 0,
                    " ".join(cmd) + tail(out)):
        rc, out = run([exe], ctx.logs / "pkgconfig.log")
        print("    " + out.strip())
        checks.check("pkg-config: the program runs", rc == 0, out)
