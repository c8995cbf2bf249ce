"""How an analysis run's new chunk files reach the disk: through the page cache (write,
then `sync_file_range(SYNC_FILE_RANGE_WRITE)`, as before 2026-12-07) or around it
(`O_DIRECT` from an aligned buffer, the last block padded and the file cut to length, as
`wendelin_core::store::files::write_new` does), each batch then made durable the way
`sync_paths` does (fdatasync of every file from 8 threads, fsync of the directory).

One batch = one 8 MiB run of the tutorial analysis: 24 new files of 1,049,088 bytes (64
STFT rows of 2049 float64 bins; the int16 channel chunks are the same size class). The two
ways alternate (A B A B ...), RUNS batches each, ROUNDS pairs; prints MiB/s per round and
the median of the per-pair ratios.

Usage: python3 bench/chunk_writes.py [DIR] [ROUNDS] [RUNS]   (DIR on the disk under test,
default /tmp; needs ~RUNS x 24 MiB free)
"""
import ctypes, mmap, os, statistics, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
SYNC_FILE_RANGE_WRITE = 2
SIZE = 1_049_088
FILES = 24


def aligned_copy(data):
    """`data` in a page-aligned buffer, zero padded to the block (for O_DIRECT)."""
    buf = mmap.mmap(-1, (len(data) + 4095) // 4096 * 4096)
    buf[:len(data)] = data
    return buf


def write_direct(path, aligned, size):
    """A new file of `size` bytes written as `write_new` does: O_DIRECT from the aligned,
    padded buffer, then cut to its length."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    os.write(fd, aligned)
    os.ftruncate(fd, size)
    os.close(fd)


def sync_paths(paths, pool):
    """As `sync_paths` does: fdatasync of every file and fsync of every directory, from
    the threads of `pool`."""
    def sync(path):
        fd = os.open(path, os.O_RDONLY)
        if os.path.isdir(path):
            os.fsync(fd)
        else:
            os.fdatasync(fd)
        os.close(fd)

    list(pool.map(sync, paths))


def batch(directory, start, data, aligned, direct, pool):
    paths = []
    for i in range(FILES):
        path = os.path.join(directory, f"c{start + i}")
        if direct:
            write_direct(path, aligned, SIZE)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            LIBC.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0),
                                 SYNC_FILE_RANGE_WRITE)
            os.close(fd)
        paths.append(path)
    sync_paths(paths, pool)
    sync_paths([directory], pool)


def one(root, runs, direct, data, aligned, pool):
    directory = tempfile.mkdtemp(prefix="chunk-writes-", dir=root)
    try:
        t = time.perf_counter()
        for r in range(runs):
            batch(directory, r * FILES, data, aligned, direct, pool)
        return runs * FILES * SIZE / 2**20 / (time.perf_counter() - t)
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    data = os.urandom(SIZE)
    aligned = aligned_copy(data)
    ratios = []
    with ThreadPoolExecutor(8) as pool:
        for r in range(rounds):
            a = one(root, runs, False, data, aligned, pool)
            b = one(root, runs, True, data, aligned, pool)
            ratios.append(b / a)
            print(f"round {r + 1}: page cache {a:.0f} MiB/s, O_DIRECT {b:.0f} MiB/s: {b / a:.2f}×",
                  flush=True)
    print(f"median of per-pair ratios: {statistics.median(ratios):.2f}× "
          f"({runs} batches of {FILES} files of {SIZE} bytes per way and round, in {root})")


if __name__ == "__main__":
    main()
