"""
nftables scripts run for the lab by one process that stays in a namespace: a
switched link (L{lmm.lab.topology.Lab.switchLink}) moves in a fraction of a
millisecond, where C{nft -f} takes 6-20 ms to start on this platform
(measured: a script of five rules 0.27 ms in libnftables, median).

    python -m lmm.lab.nftserver

Reads one JSON string per line on standard input (a script, as C{nft -f}
takes it: one transaction), answers one JSON line per script: C{null} when it
was committed, else nft's error text. Uses libnftables through ctypes; where
that library cannot be loaded, runs C{nft -f -} instead (slower, the same).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from typing import IO, Callable


def _libnftables() -> Callable[[str], str | None] | None:
    """A function running a script in libnftables, or None without the library."""
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    ctx = lib.nft_ctx_new(0)
    lib.nft_ctx_buffer_error(ctx)

    def run(script: str) -> str | None:
        if lib.nft_run_cmd_from_buffer(ctx, script.encode()) == 0:
            return None
        return (lib.nft_ctx_get_error_buffer(ctx) or b"nft failed").decode(errors="replace")

    return run


def _nftCommand(script: str) -> str | None:
    done = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    return None if done.returncode == 0 else done.stderr or f"nft exited {done.returncode}"


def serve(requests: IO[str], answers: IO[str]) -> None:
    run = _libnftables() or _nftCommand
    for line in requests:
        answers.write(json.dumps(run(json.loads(line))) + "\n")
        answers.flush()


def main() -> int:
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
