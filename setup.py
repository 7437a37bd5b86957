"""What pyproject.toml cannot say: the optional C auth scanner, and the operator's example files.

pyproject.toml holds the metadata; setuptools runs this file too when it builds a wheel
(`pip install .`, `pipx install .`, `pip wheel .`):

- collectors/auth/_authscan.c is built against Vectorscan's libhs when its headers (hs/hs.h,
  Debian: libvectorscan-dev) are there. The extension is optional: without the headers, a C
  compiler or Python's own headers the build says why and goes on, and the agent runs the same
  patterns in Python (docs/auth-log.md, "Speed"); `homelab-monitor check` says which one it has.
  HOMELAB_MONITOR_NATIVE=0 leaves it out on purpose. In a checkout `make native` builds it in place.
- collectors/llm_traffic/capture.bpf.c (the opt-in llm_traffic collector's uprobes) is compiled
  for the BPF target when clang and libbpf's headers (Debian: clang libbpf-dev) are there;
  without them the collector says so when enabled (`check`). In a checkout `make bpf` builds it.
- known_issues.json and CONSTRAINTS.md, which sit at the top of the checkout for the operator, go
  into the wheel as foundation/defaults/: an installed agent with no files of its own reads these
  (foundation/locations.py, docs/install.md).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
EXAMPLES = ("known_issues.json", "CONSTRAINTS.md")   # into foundation/defaults/ (foundation.locations)


def include_dirs() -> list[str]:
    """Where a C compiler here looks for headers by default, and where CPATH adds more."""
    extra = [d for var in ("CPATH", "C_INCLUDE_PATH") for d in os.environ.get(var, "").split(":") if d]
    return [*extra, sysconfig.get_config_var("INCLUDEDIR") or "/usr/include", "/usr/local/include",
            "/usr/include"]


def wanted_extensions() -> list[Extension]:
    """The C scanner when Vectorscan's headers are there and it is not turned off, else none."""
    if os.environ.get("HOMELAB_MONITOR_NATIVE", "auto").strip().lower() in ("0", "no", "false", "off"):
        print("homelab-monitor: HOMELAB_MONITOR_NATIVE=0: the C auth scanner is left out")
        return []
    if not any(Path(d, "hs", "hs.h").is_file() for d in include_dirs()):
        print("homelab-monitor: hs/hs.h not found (Debian: apt install libvectorscan-dev gcc): "
              "the C auth scanner is left out, the auth log is scanned in Python")
        return []
    return [Extension("collectors.auth._authscan", ["collectors/auth/_authscan.c"],
                      libraries=["hs"], extra_compile_args=["-O3"],
                      optional=True)]   # a compile or link failure warns, and the build goes on


def build_bpf(target: Path) -> None:
    """capture.bpf.o into ``target`` when clang and libbpf's headers are there, else a note."""
    source = HERE / "collectors" / "llm_traffic" / "capture.bpf.c"
    machine = platform.machine()
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(machine, machine)
    if shutil.which("clang") is None or not any(Path(d, "bpf", "bpf_helpers.h").is_file()
                                                for d in include_dirs()):
        print("homelab-monitor: clang or bpf/bpf_helpers.h not found (Debian: apt install clang "
              "libbpf-dev): llm_traffic's eBPF object is left out")
        return
    clang = shutil.which("clang") or "clang"
    done = subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
                           f"-I/usr/include/{machine}-linux-gnu", "-c", str(source), "-o",
                           str(target / "capture.bpf.o")], check=False)
    if done.returncode:
        print("homelab-monitor: llm_traffic's eBPF object did not compile; it is left out")


class BuildPyWithExamples(build_py):
    """build_py, plus the operator's example files as foundation/defaults/ in the build, and
    llm_traffic's eBPF object when it can be built."""

    def run(self) -> None:
        super().run()
        bpf_dir = Path(self.build_lib, "collectors", "llm_traffic")
        self.mkpath(str(bpf_dir))
        build_bpf(bpf_dir)
        target = Path(self.build_lib, "foundation", "defaults")
        self.mkpath(str(target))
        for name in EXAMPLES:
            self.copy_file(str(HERE / name), str(target / name))


setup(ext_modules=wanted_extensions(), cmdclass={"build_py": BuildPyWithExamples})
