"""Where llm_traffic's uprobes go in one libssl.so.3: its exported functions read from the ELF
dynamic symbols (pyelftools), and on x86-64 the internal ssl_write_internal / ssl_read_internal
that they call, found from the wrappers' first instructions (bpf.py's docstring says why: the
internal functions begin with a push, which the kernel emulates instead of single-stepping).
Pure reading of the file: no privilege, nothing attached.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# the exported functions (OpenSSL 3) and the probes each would take
READ_WRITE = ("SSL_write_ex", "SSL_read_ex", "SSL_write", "SSL_read")
OTHER = ("SSL_ctrl", "SSL_free")


class BpfUnavailable(Exception):
    """The capture cannot be loaded or attached; the message says why (one sentence)."""


@dataclass(frozen=True)
class Probe:
    program: str        # its name in capture.bpf.o
    path: str           # the library
    offset: int         # the file offset of the instruction probed
    retprobe: bool
    symbol: str         # what is probed, for messages ("SSL_ctrl", "ssl_write_internal")


def _symbols(path: str) -> tuple[dict[str, int], Callable[[int], bytes], bool]:
    """The library's dynamic function symbols (name: file offset), a reader of code at a file
    offset, and whether it is x86-64."""
    from elftools.elf.elffile import ELFFile  # noqa: PLC0415 - only when llm_traffic starts
    from elftools.elf.sections import SymbolTableSection  # noqa: PLC0415

    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        loads = [(s["p_vaddr"], s["p_offset"], s["p_filesz"]) for s in elf.iter_segments()
                 if s["p_type"] == "PT_LOAD"]

        def to_offset(vaddr: int) -> int | None:
            for start, off, size in loads:
                if start <= vaddr < start + size:
                    return vaddr - start + off
            return None

        found: dict[str, int] = {}
        dynsym = elf.get_section_by_name(".dynsym")
        wanted = {*READ_WRITE, *OTHER, "SSL_write_ex2"}
        symbols = dynsym.iter_symbols() if isinstance(dynsym, SymbolTableSection) else ()
        for sym in symbols:
            if sym.name in wanted and sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"]:
                off = to_offset(sym["st_value"])
                if off is not None:
                    found[sym.name] = off
        x86_64 = elf["e_machine"] == "EM_X86_64"
    data = Path(path).read_bytes()

    def code(offset: int) -> bytes:
        return data[offset:offset + 32]

    return found, code, x86_64


_PUSH = tuple(range(0x50, 0x58))


def internal_callee(code: bytes, offset: int) -> int | None:
    """The file offset of the function that an exported wrapper calls first, when its first
    instructions are [endbr64] [sub $n,%rsp] call|jmp rel32 (OpenSSL 3.0's SSL_write_ex and
    SSL_read_ex on x86-64), and that function begins with a push (emulated by the kernel's
    uprobes, so a hit costs no single-step); None otherwise. ``offset`` is where ``code`` sits
    (a relative call within one segment lands at the same distance in the file)."""
    i = 4 if code[:4] == b"\xf3\x0f\x1e\xfa" else 0
    if code[i:i + 3] == b"\x48\x83\xec":
        i += 4
    if len(code) < i + 5 or code[i] not in (0xE8, 0xE9):
        return None
    return offset + i + 5 + int.from_bytes(code[i + 1:i + 5], "little", signed=True)


def _starts_with_push(code: bytes) -> bool:
    return bool(code) and (code[0] in _PUSH or (code[0] == 0x41 and code[1:2] != b"" and
                                                code[1] in _PUSH))


def plan(path: str, internal: bool = True) -> tuple[list[Probe], str]:
    """The probes for one libssl, and how its reads and writes are taken: "internal" (OpenSSL
    3.0/3.1 on x86-64: ssl_write_internal / ssl_read_internal, each reached by all four exported
    functions, one cheap trap per call) or "exported" (SSL_write, SSL_write_ex, SSL_read,
    SSL_read_ex: where the internal functions cannot be found, or their signature differs: 3.2
    added SSL_write_ex2 and a flags argument; or ``internal`` False). BpfUnavailable when the
    library lacks them."""
    try:
        syms, code, x86_64 = _symbols(path)
    except Exception as err:  # OSError, or pyelftools' own ELFError for a damaged file
        raise BpfUnavailable(f"{path} could not be read as an ELF library: {err}") from err
    missing = [name for name in (*READ_WRITE, *OTHER) if name not in syms]
    if missing:
        raise BpfUnavailable(f"{path} has no {', '.join(missing)}: not an OpenSSL 3 libssl")
    probes = [Probe("sni", path, syms["SSL_ctrl"], False, "SSL_ctrl"),
              Probe("on_free", path, syms["SSL_free"], False, "SSL_free")]
    inner: dict[str, int] = {}
    if internal and x86_64 and "SSL_write_ex2" not in syms:
        for name, callee in (("SSL_write_ex", "ssl_write_internal"),
                             ("SSL_read_ex", "ssl_read_internal")):
            target = internal_callee(code(syms[name]), syms[name])
            if target is not None and _starts_with_push(code(target)):
                inner[callee] = target
    if len(inner) == 2:
        for callee, leave in (("ssl_write_internal", "leave_write"),
                              ("ssl_read_internal", "leave_read")):
            probes += [Probe("enter_ex", path, inner[callee], False, callee),
                       Probe(leave, path, inner[callee], True, callee)]
        return probes, "internal"
    for name in READ_WRITE:
        leave = "leave_write" if "write" in name else "leave_read"
        enter = "enter_ex" if name.endswith("_ex") else "enter_plain"
        probes += [Probe(enter, path, syms[name], False, name),
                   Probe(leave, path, syms[name], True, name)]
    return probes, "exported"
