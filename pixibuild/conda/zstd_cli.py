"""The part of the `zstandard` module's API the archive readers use, over the `zstd` command.

For the unpacker a self-extracting environment embeds (`pack --create-executable`): it runs on the
target's python, where only the standard library can be counted on, and python has no zstd before 3.14.
`pixibuild.cli.embedded_unpack_main` installs this module as `zstandard` when the real one is missing.
The compressed stream is fed to `zstd -dc` by a thread while the caller reads the decompressed bytes.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from typing import IO, Any

CHUNK = 1 << 16


class ZstdError(Exception):
    """Decompression failed (corrupt data, or no zstd command)."""


class _CommandReader(io.RawIOBase):
    """Decompressed bytes of `source`, read from a `zstd -dc` process."""

    def __init__(self, source: IO[bytes]):
        command = shutil.which("zstd")
        if command is None:
            raise ZstdError(".conda packages need zstd to unpack here: install the zstd command (or the zstandard "
                            "python module)")
        self._process = subprocess.Popen([command, "-d", "-c", "-q"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._feeder = threading.Thread(target=self._feed, args=(source,), daemon=True, name="zstd-feed")
        self._feed_error: BaseException | None = None
        self._feeder.start()

    def _feed(self, source: IO[bytes]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            while block := source.read(CHUNK):
                stdin.write(block)
        except BrokenPipeError:
            pass  # zstd stopped reading (bad data or closed early): its exit status tells
        except BaseException as exc:  # a read error of the source: reported to the reader
            self._feed_error = exc
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert self._process.stdout is not None
        data = self._process.stdout.read(size if size is not None and size >= 0 else -1)
        if not data:
            self._check()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check(self) -> None:
        """At the end of the output: the feeder and zstd must both have succeeded."""
        self._feeder.join()
        status = self._process.wait()
        if self._feed_error is not None:
            raise ZstdError(f"reading the compressed data failed: {self._feed_error}")
        if status != 0:
            assert self._process.stderr is not None
            message = self._process.stderr.read().decode(errors="replace").strip().splitlines()
            raise ZstdError(f"zstd: {message[-1] if message else f'exit status {status}'}")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._feeder.join()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
        super().close()


class ZstdDecompressor:
    """`zstandard.ZstdDecompressor`, as far as `stream_reader` goes."""

    def stream_reader(self, source: IO[bytes], read_across_frames: bool = True) -> _CommandReader:
        # zstd -d reads every frame of its input: read_across_frames=True is what it always does
        return _CommandReader(source)
