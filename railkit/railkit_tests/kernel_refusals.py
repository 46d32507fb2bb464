"""Run a command on a kernel that refuses one thing, as some platforms' kernels do.

    python -m railkit_tests.kernel_refusals socket-filters -- python -m gunicorn main:app

A seccomp filter (inherited by every process the command forks) makes the
kernel answer the refused system call with the error such a platform gives,
and the command is exec'd in place, so its pid is this process's pid:

- socket-filters: setsockopt(SOL_SOCKET, SO_ATTACH_FILTER) fails with EPERM,
  as where seccomp policies or sandboxes (gVisor) forbid classic BPF;
- ipv6: socket(AF_INET6) fails with EAFNOSUPPORT, as on a kernel booted with
  ipv6.disable=1 (a sysctl disabling IPv6 still lets [::] bind).

Nothing in the project is patched: the refusal happens in the kernel.
"""

import ctypes
import errno
import os
import platform
import socket
import struct
import sys

# <linux/prctl.h>, <linux/seccomp.h>
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# Offsets in struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6] (little-endian).
NR, ARCH, ARG0, ARG1, ARG2 = 0, 4, 16, 24, 32
# Classic BPF opcodes: load a word at an offset, jump if equal, return.
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
# What the filter needs per architecture: audit arch, socket and setsockopt numbers.
ARCHITECTURES = {
    "x86_64": (0xC000003E, 41, 54),
    "aarch64": (0xC00000B7, 198, 208),
}
SO_ATTACH_FILTER = 26


def supported() -> str | None:
    """Why refusals cannot be made here, or None if they can."""
    if sys.platform != "linux":
        return "needs Linux (seccomp)"
    if platform.machine() not in ARCHITECTURES:
        return f"knows the system call numbers of {', '.join(ARCHITECTURES)}, not {platform.machine()}"
    return None


def _program(syscall: int, matches: list[tuple[int, int]], error: int) -> bytes:
    """Refuse `syscall` with `error` when each (offset, value) matches; allow everything else."""
    audit_arch = ARCHITECTURES[platform.machine()][0]
    checks = [(ARCH, audit_arch), (NR, syscall), *matches]
    instructions = []
    for index, (offset, value) in enumerate(checks):
        to_allow = 2 * (len(checks) - index) - 1  # past the remaining checks and the refusal
        instructions += [(LD_W_ABS, 0, 0, offset), (JEQ_K, 0, to_allow, value)]
    instructions += [(RET_K, 0, 0, SECCOMP_RET_ERRNO | error), (RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in instructions)


def refuse(what: str) -> None:
    """Install the seccomp filter for `what` in this process and all it starts."""
    _, socket_nr, setsockopt_nr = ARCHITECTURES[platform.machine()]
    if what == "socket-filters":
        code = _program(setsockopt_nr, [(ARG1, socket.SOL_SOCKET), (ARG2, SO_ATTACH_FILTER)], errno.EPERM)
    elif what == "ipv6":
        code = _program(socket_nr, [(ARG0, socket.AF_INET6)], errno.EAFNOSUPPORT)
    else:
        raise SystemExit(f"unknown refusal {what!r}: socket-filters or ipv6")
    program = ctypes.create_string_buffer(code)
    fprog = ctypes.create_string_buffer(struct.pack("HP", len(code) // 8, ctypes.addressof(program)))
    # Without privileges, seccomp requires that no exec may gain any.
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _prctl(option: int, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    arguments = [ctypes.c_ulong(value) for value in (option, *args, 0, 0, 0)[:5]]
    if libc.prctl(*arguments) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    reason = supported()
    if reason:
        raise SystemExit(reason)
    refuse(argv[0])
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
