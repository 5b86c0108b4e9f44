"""Hostile inputs: decoding bombs, mutated files (the fuzz test, `murmurscope eval fuzz`) and request
bodies that lie about their length (the API limits' test, `murmurscope eval load`).

A bomb is a small file whose header asks the decoder for far more memory than the file holds: a FLAC
whose STREAMINFO claims many channels, a high rate and ten minutes of frames. Mutations are the
usual file-fuzzing moves on real WAV/FLAC/OGG/MP3 seeds: header bytes overwritten, truncation,
splices of two files, random bytes inserted or flipped.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import soundfile as sf

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
           "mp3": ("MP3", "MPEG_LAYER_III")}


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    container, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=container, subtype=subtype)
    return buf.getvalue()


def flac_bomb(rate: int = 96_000, channels: int = 8, seconds: float = 599.0, real_seconds: float = 0.5,
              amplitude: float = 0.0) -> bytes:
    """A FLAC of `real_seconds` of a 50 Hz tone (silence by default) whose STREAMINFO claims
    `channels` x `rate` x `seconds` (0: length unknown).

    The header fields (20-bit rate, 3-bit channels - 1, 36-bit total samples) are rewritten in
    place, so the file stays a few kilobytes while `soundfile.read` would allocate
    seconds x rate x channels x 4 bytes before decoding.
    """
    real_rate = min(rate, 96_000)
    t = np.arange(int(real_seconds * real_rate)) / real_rate
    real = np.repeat((amplitude * np.sin(2 * np.pi * 50 * t))[:, None], channels, 1).astype(np.float32)
    data = bytearray(encode(real, real_rate, "flac"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must be the first metadata block"
    at = 8 + 10  # after "fLaC", the block header and the block/frame size fields
    total = int(seconds * rate)
    bits = int.from_bytes(data[at:at + 8], "big")
    bps_minus_1 = (bits >> 36) & 0x1F
    bits = (rate << 44) | ((channels - 1) << 41) | (bps_minus_1 << 36) | total
    data[at:at + 8] = bits.to_bytes(8, "big")
    return bytes(data)


def seeds(rate: int = 4000, seconds: float = 3.0, seed: int = 0) -> dict[str, bytes]:
    """One short heart-like recording per format: the files the mutations start from."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.4 * np.sin(2 * np.pi * 60 * t) * (np.sin(2 * np.pi * 1.2 * t) > 0.8) + 0.01 * rng.standard_normal(t.size)
    return {fmt: encode(x.astype(np.float32), rate if fmt != "mp3" else 8000, fmt)
            for fmt in FORMATS} | {"wav_stereo": encode(np.stack([x, -x], 1).astype(np.float32), rate, "wav")}


def _header_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(0, min(len(b), 64)))] = int(rng.integers(0, 256))
    return bytes(b)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _splice(data: bytes, rng: np.random.Generator, other: bytes) -> bytes:
    return data[: int(rng.integers(0, len(data)))] + other[int(rng.integers(0, len(other))):]


def _random_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 33))):
        at = int(rng.integers(0, len(b)))
        if rng.random() < 0.5:
            b[at] = int(rng.integers(0, 256))
        else:
            b[at:at] = rng.bytes(int(rng.integers(1, 16)))
    return bytes(b)


def _garbage(data: bytes, rng: np.random.Generator) -> bytes:
    return data[:4] + rng.bytes(int(rng.integers(0, 4096)))


MUTATIONS: dict[str, Callable[..., bytes]] = {"header": _header_bytes, "truncate": _truncate, "splice": _splice,
                                              "random": _random_bytes, "garbage": _garbage}


@dataclass(frozen=True)
class FuzzCase:
    index: int
    seed_format: str
    mutation: str
    data: bytes

    @property
    def suffix(self) -> str:
        return "." + self.seed_format.split("_")[0]


def fuzz_cases(n: int, seed: int = 0) -> Iterator[FuzzCase]:
    """`n` mutated files, reproducible from `seed`, cycling through the seed formats and mutations."""
    rng = np.random.default_rng(seed)
    base = seeds(seed=seed)
    formats, names = list(base), list(MUTATIONS)
    for k in range(n):
        fmt, name = formats[k % len(formats)], names[(k // len(formats)) % len(names)]
        other = base[formats[int(rng.integers(0, len(formats)))]]
        mutate = MUTATIONS[name]
        data = mutate(base[fmt], rng, other) if name == "splice" else mutate(base[fmt], rng)
        yield FuzzCase(k, fmt, name, data)


def raw_post(url: str, path: str, headers: dict[str, str], chunks: Iterable[bytes],
             timeout: float = 5.0) -> tuple[int, dict, float]:
    """POST `chunks` over a plain socket, as an HTTP client that lies about the length would."""
    u = urlparse(url)
    start = time.perf_counter()
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((head + "\r\n").encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                if time.perf_counter() - start > timeout:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is already on the way
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or len(reply) < reply.index(b"\r\n\r\n") + 4 + _length(reply):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except (ConnectionResetError, TimeoutError):
            pass
    elapsed = time.perf_counter() - start
    status = int(reply.split(b" ", 2)[1])
    body = reply.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body[: _length(reply)]), elapsed


def _length(reply: bytes) -> int:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return next((int(line.split(":")[1]) for line in head.split("\r\n") if line.startswith("content-length")), 0)


def chunked(total: int, size: int = 1 << 20):
    piece = b"{" + b" " * (size - 1)
    for _ in range(total // size):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"
