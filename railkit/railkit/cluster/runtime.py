"""Each master's private runtime folder, and how `status` finds a live one.

A predictable path under /tmp lets anyone on the host plant a symlink there
before the master (often root) starts. So each master makes a fresh folder
with a random suffix (mkdtemp: mode 0700, created atomically, never an
existing path), creates its files inside with O_EXCL | O_NOFOLLOW, and
removes the folder when it exits. The folder holds the scoreboard and the
Prometheus metrics files. `status` scans for folders named after the port,
owned by the caller, and believes only a board whose master is alive.

A master pid means something only in the PID namespace it was written in,
and the base folder may be shared by containers with namespaces of their own
(a shared /dev/shm or XDG_RUNTIME_DIR): what looks dead from here may be
another container's live master. So each folder's name carries its PID
namespace, and a master judges (and cleans up) only folders of its own.
"""

import atexit
import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import psutil

from .. import project
from .board import FILE_NAME, Board

# The name's fixed part; mkdtemp appends a random suffix.
PREFIX = f"{project.NAME}-"
# The master writes its board after its process started; allow for the clocks'
# rounding. A process started later under the same pid is not that master.
START_TIME_SLACK = 1.0

# port -> this master's folder, made once: gunicorn re-reads its config on SIGHUP.
_instance_folders: dict[int, Path] = {}
# Where the kernel names this process's PID namespace (Linux); elsewhere every process shares one.
PID_NAMESPACE_LINK = "/proc/self/ns/pid"


def pid_namespace() -> str:
    """This process's PID namespace as a name part: "pidns" and the namespace's inode ("pidns0" off Linux)."""
    try:
        return f"pidns{os.stat(PID_NAMESPACE_LINK).st_ino}"
    except OSError:
        return "pidns0"


def runtime_base(environ=os.environ) -> Path:
    """Where runtime folders go: the user's runtime dir, else RAM (/dev/shm), else tmp."""
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"])
    if os.path.isdir("/dev/shm"):
        return Path("/dev/shm")
    return Path(tempfile.gettempdir())


def instance_folder(port: int) -> Path:
    """This master's private folder, made when gunicorn first reads its config and kept across reloads."""
    if port not in _instance_folders:
        _instance_folders[port] = make_private_folder(port)
    return _instance_folders[port]


def make_private_folder(port: int, base: Path | None = None) -> Path:
    """A new folder only this user can enter, removed when this process exits.

    Folders left by earlier masters that died without cleaning up (SIGKILL,
    OOM) are removed first, whatever port they served, if they were made in
    this PID namespace: only there does their master pid mean what it says.
    """
    base = base or runtime_base()
    for folder in _own_folders("*", base):
        with contextlib.suppress(OSError, ValueError):
            board = Board.open(folder / FILE_NAME)
            # A master pid of 0: another master is still writing its board.
            if board.master()[0] and not master_is_alive(board):
                shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{port}-{pid_namespace()}-", dir=base))
    owner = os.getpid()

    def remove_if_still_owner():
        # Forked workers inherit atexit handlers; only the master removes it.
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove_if_still_owner)
    return folder


def master_is_alive(board: Board) -> bool:
    """True when the board's master pid runs, and is the process that wrote the board."""
    pid, _, started = board.master()
    try:
        return pid > 0 and psutil.Process(pid).create_time() <= started + START_TIME_SLACK
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_live_board(port: int, base: Path | None = None) -> Board | None:
    """The board of the live master serving `port`, if there is one."""
    for folder in _own_folders(port, base or runtime_base()):
        with contextlib.suppress(OSError, ValueError):
            board = Board.open(folder / FILE_NAME)
            if master_is_alive(board):
                return board
    return None


def live_ports(base: Path | None = None) -> list[int]:
    """The ports live masters of this project (this user, this PID namespace) serve, lowest first."""
    ports = set()
    for folder in _own_folders("*", base or runtime_base()):
        port = folder.name.removeprefix(PREFIX).partition("-")[0]
        with contextlib.suppress(OSError, ValueError):
            if port.isdigit() and master_is_alive(Board.open(folder / FILE_NAME)):
                ports.add(int(port))
    return sorted(ports)


def _own_folders(port: int | str, base: Path) -> list[Path]:
    """Runtime folders for `port` in `base`, made in this PID namespace, that are real folders of this user."""
    folders = []
    for folder in sorted(base.glob(f"{PREFIX}{port}-{pid_namespace()}-*")):
        with contextlib.suppress(OSError):
            info = folder.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                folders.append(folder)
    return folders
