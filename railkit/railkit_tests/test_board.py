"""The board read while it is written: a reader sees each value whole, never half of one write and half of another.

Slot 12 is the one whose busy_since straddled two cache lines in the old
layout (a 32-byte header, 284-byte slots): a reader against a hot writer saw
torn values there, which the watchdog read as a request stuck for decades.
"""

import subprocess
import sys

from railkit.cluster.board import CACHE_LINE, HEADER, SLOT, Board

# The slot that straddled a cache line, and two times that differ in every byte of their 8.
SLOT_INDEX = 12
TIMES = (1_700_000_000.123456, 1_234_567_890.654321)
READS = 300_000
MAX_READS = 20 * READS


# The writer: another process mapping the same board file, as a worker does, writing the two times alternately
# until a file named "stop" appears beside the board. A process of its own, not a fork of this one: pytest's
# process may hold threads, and forking it then is deprecated (and may deadlock the child).
WRITER = """
import mmap, sys
from pathlib import Path
from railkit.cluster.board import SIZE, Board

index, times, path = int(sys.argv[1]), (float(sys.argv[2]), float(sys.argv[3])), Path(sys.argv[4])
with open(path, "r+b") as file:
    board = Board(mmap.mmap(file.fileno(), SIZE), path)
print("writing", flush=True)
while not path.with_name("stop").exists():
    for since in times * 500:
        board.set_busy(index, since, "GET /hammer -")
"""


def test_the_layout_keeps_every_field_inside_one_cache_line():
    assert HEADER.size % CACHE_LINE == 0
    assert SLOT.size % CACHE_LINE == 0


def test_a_hammered_slot_is_never_read_torn(tmp_path):
    board = Board.create(tmp_path)
    board.claim(SLOT_INDEX, pid=1)
    written = set()
    for since in TIMES:
        board.set_busy(SLOT_INDEX, since, "")
        written.add(board.busy_since(SLOT_INDEX))
    board.set_busy(SLOT_INDEX, 0.0, "")
    arguments = [str(SLOT_INDEX), *map(repr, TIMES), str(board.path)]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, *arguments], stdout=subprocess.PIPE, text=True)
    read = []
    try:
        assert writer.stdout.readline() == "writing\n", "the writer did not start"
        # Read as fast as we can, READS times at least, and until both values were seen (the writer got CPU).
        while len(read) < MAX_READS and (len(read) < READS or not set(read) >= written):
            read.extend(board.busy_since(SLOT_INDEX) for _ in range(READS // 10))
            assert writer.poll() is None, "the writer died"
    finally:
        (tmp_path / "stop").touch()
        try:
            writer.wait(30)
        finally:
            writer.kill()
            writer.stdout.close()
    torn = {value for value in read if value and value not in written}
    assert not torn, f"{sum(value in torn for value in read)} torn reads of {len(read)}, e.g. {sorted(torn)[:3]}"
    assert set(read) >= written, "the reads never overlapped the writes"
