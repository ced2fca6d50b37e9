"""SPDY/3.1 framing, as much as Kubernetes port-forward needs (upstream uses
`github.com/moby/spdystream`): control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS,
PING, GOAWAY, HEADERS, WINDOW_UPDATE) and DATA frames, with name/value header blocks
compressed by zlib seeded with the SPDY/3 dictionary (one compression context per direction
for the whole connection, each block ending with a sync flush).

kubectl ≥ 1.31 carries these frames inside WebSocket binary messages
(`SPDY/3.1+portforward.k8s.io`); the messages are a byte stream, not frame-aligned, so
`FrameReader` buffers."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION = 1, 2, 3, 4
CANCEL, INTERNAL_ERROR = 5, 6

MAX_DATA = (1 << 24) - 1

# The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): length-prefixed
# words, then a run of common value fragments. It must be byte-exact: the peer's zlib
# stream names it by its Adler-32.
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status").split() + ["200 OK"] + (
    "version HTTP/1.1 url public set-cookie keep-alive origin").split()
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
DICTIONARY_ADLER32 = 0xE3C6A7C2


class ProtocolError(Exception):
    pass


Headers = dict[str, list[str]]


@dataclass
class Frame:
    """A decoded frame. `type` is 0 for DATA."""
    type: int
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""                                   # DATA payload
    headers: Headers = field(default_factory=dict)      # SYN_STREAM / SYN_REPLY / HEADERS
    associated_id: int = 0                              # SYN_STREAM
    priority: int = 0                                   # SYN_STREAM
    status: int = 0                                     # RST_STREAM / GOAWAY
    ping_id: int = 0                                    # PING
    delta: int = 0                                      # WINDOW_UPDATE
    settings: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: names lowercased, multiple values NUL-joined."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\0".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(raw: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (m,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4:pos + 4 + m].decode()
            pos += 4 + m
            if pos > len(raw):
                raise ProtocolError("truncated header block")
            headers.setdefault(name.lower(), []).extend(value.split("\0"))
        return headers
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None


class HeaderCompressor:
    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                   zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            return decode_header_block(self._z.decompress(data))
        except zlib.error as e:
            raise ProtocolError(f"header decompression: {e}") from None


def _control(type_: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(body)) + body


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    if len(data) > MAX_DATA:
        raise ValueError("data frame too large")
    return struct.pack(">II", stream_id & 0x7FFFFFFF,
                       ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def syn_stream(comp: HeaderCompressor, stream_id: int, headers: Headers,
               flags: int = 0, associated_id: int = 0, priority: int = 0) -> bytes:
    body = struct.pack(">IIBB", stream_id & 0x7FFFFFFF, associated_id & 0x7FFFFFFF,
                       (priority & 7) << 5, 0) + comp.compress(headers)
    return _control(SYN_STREAM, flags, body)


def syn_reply(comp: HeaderCompressor, stream_id: int, headers: Headers | None = None,
              fin: bool = False) -> bytes:
    body = struct.pack(">I", stream_id & 0x7FFFFFFF) + comp.compress(headers or {})
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, body)


def headers_frame(comp: HeaderCompressor, stream_id: int, headers: Headers,
                  fin: bool = False) -> bytes:
    body = struct.pack(">I", stream_id & 0x7FFFFFFF) + comp.compress(headers)
    return _control(HEADERS, FLAG_FIN if fin else 0, body)


def rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))


def ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def goaway(last_good: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good & 0x7FFFFFFF, status))


def window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF,
                                                   delta & 0x7FFFFFFF))


def settings(values: list[tuple[int, int, int]], flags: int = 0) -> bytes:
    body = struct.pack(">I", len(values)) + b"".join(
        struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in values)
    return _control(SETTINGS, flags, body)


class FrameReader:
    """Feed bytes, get whole frames (header blocks decompressed with this connection's
    inbound context)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.decomp = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames = []
        while len(self.buf) >= 8:
            w1, w2 = struct.unpack_from(">II", self.buf, 0)
            length = w2 & 0xFFFFFF
            if len(self.buf) < 8 + length:
                break
            body = bytes(self.buf[8:8 + length])
            del self.buf[:8 + length]
            flags = w2 >> 24
            if not w1 & 0x80000000:
                frames.append(Frame(0, flags, w1 & 0x7FFFFFFF, data=body))
                continue
            version, type_ = (w1 >> 16) & 0x7FFF, w1 & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"unsupported SPDY version {version}")
            frames.append(self._control(type_, flags, body))
        return frames

    def _control(self, type_: int, flags: int, body: bytes) -> Frame:
        try:
            if type_ == SYN_STREAM:
                sid, assoc, prio, _slot = struct.unpack_from(">IIBB", body, 0)
                return Frame(type_, flags, sid & 0x7FFFFFFF, associated_id=assoc & 0x7FFFFFFF,
                             priority=prio >> 5, headers=self.decomp.decompress(body[10:]))
            if type_ in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", body, 0)
                return Frame(type_, flags, sid & 0x7FFFFFFF,
                             headers=self.decomp.decompress(body[4:]))
            if type_ in (RST_STREAM, GOAWAY):
                sid, status = struct.unpack_from(">II", body, 0)
                return Frame(type_, flags, sid & 0x7FFFFFFF, status=status)
            if type_ == PING:
                return Frame(type_, flags, ping_id=struct.unpack_from(">I", body, 0)[0])
            if type_ == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", body, 0)
                return Frame(type_, flags, sid & 0x7FFFFFFF, delta=delta & 0x7FFFFFFF)
            if type_ == SETTINGS:
                (n,) = struct.unpack_from(">I", body, 0)
                vals = []
                for i in range(n):
                    fid, v = struct.unpack_from(">II", body, 4 + 8 * i)
                    vals.append((fid >> 24, fid & 0xFFFFFF, v))
                return Frame(type_, flags, settings=vals)
        except struct.error as e:
            raise ProtocolError(f"short control frame type {type_}: {e}") from None
        return Frame(type_, flags, data=body)   # unknown control frames are ignored
