"""The board read while it is written: a reader sees each value whole, never half of one write and half of another.

Slot 12 is the one whose busy_since straddled two cache lines in the old
layout (a 32-byte header, 284-byte slots): a reader against a hot writer saw
torn values there, which the watchdog read as a request stuck for decades.
"""

import multiprocessing

from railkit.cluster.board import CACHE_LINE, HEADER, SLOT, Board

# The slot that straddled a cache line, and two times that differ in every byte of their 8.
SLOT_INDEX = 12
TIMES = (1_700_000_000.123456, 1_234_567_890.654321)
READS = 300_000
MAX_READS = 20 * READS


def _hammer(board: Board, stop) -> None:
    """Write the two times into the slot, alternately, until told to stop (in a forked process: the map is shared)."""
    while not stop.is_set():
        for since in TIMES * 500:
            board.set_busy(SLOT_INDEX, since, "GET /hammer -")


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
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    writer = context.Process(target=_hammer, args=(board, stop), daemon=True)
    writer.start()
    read = []
    try:
        # Read as fast as we can, READS times at least, and until both values were seen (the writer got CPU).
        while len(read) < MAX_READS and (len(read) < READS or not set(read) >= written):
            read.extend(board.busy_since(SLOT_INDEX) for _ in range(READS // 10))
            assert writer.is_alive(), "the writer died"
    finally:
        stop.set()
        writer.join(30)
    torn = {value for value in read if value and value not in written}
    assert not torn, f"{sum(value in torn for value in read)} torn reads of {len(read)}, e.g. {sorted(torn)[:3]}"
    assert set(read) >= written, "the reads never overlapped the writes"
