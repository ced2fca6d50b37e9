"""SPDY/3.1 framing (pyk8s/kubelet/spdy.py): round trips of every frame kind, header
blocks compressed with the SPDY/3 dictionary, byte-stream reassembly."""
from __future__ import annotations

import struct
import zlib

import pytest

from pyk8s.kubelet import portforward, spdy


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == spdy.DICTIONARY_ADLER32


def test_header_block_round_trip() -> None:
    h = {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"], "multi": ["a", "b"]}
    raw = spdy.encode_header_block(h)
    assert raw[:4] == struct.pack(">I", 4)
    assert spdy.decode_header_block(raw) == h
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(raw[:10])


def test_header_compression_uses_the_dictionary_and_one_context() -> None:
    comp, decomp = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    a = comp.compress({"streamtype": ["error"], "port": ["80"]})
    b = comp.compress({"streamtype": ["data"], "port": ["80"]})
    # zlib header with FDICT set, naming the dictionary by its Adler-32.
    assert a[1] & 0x20 and struct.unpack(">I", a[2:6])[0] == spdy.DICTIONARY_ADLER32
    assert decomp.decompress(a) == {"streamtype": ["error"], "port": ["80"]}
    # The second block continues the same stream (no zlib header of its own).
    assert decomp.decompress(b) == {"streamtype": ["data"], "port": ["80"]}
    # Plain zlib with the dictionary reads the same stream: the format is standard.
    z = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert spdy.decode_header_block(z.decompress(a))["port"] == ["80"]


def test_frames_round_trip() -> None:
    out = spdy.HeaderCompressor()
    frames = b"".join([
        spdy.syn_stream(out, 1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]},
                        flags=spdy.FLAG_FIN, priority=2),
        spdy.syn_reply(out, 1),
        spdy.syn_reply(out, 3, {"x": ["y"]}, fin=True),
        spdy.headers_frame(out, 3, {"k": ["v"]}),
        spdy.data_frame(3, b"hello"),
        spdy.data_frame(3, b"", fin=True),
        spdy.rst_stream(5, spdy.CANCEL),
        spdy.ping(7),
        spdy.goaway(5, 0),
        spdy.window_update(3, 65536),
        spdy.settings([(0, 7, 65536), (1, 4, 100)]),
    ])
    got = spdy.FrameReader().feed(frames)
    assert [f.type for f in got] == [spdy.SYN_STREAM, spdy.SYN_REPLY, spdy.SYN_REPLY,
                                     spdy.HEADERS, 0, 0, spdy.RST_STREAM, spdy.PING,
                                     spdy.GOAWAY, spdy.WINDOW_UPDATE, spdy.SETTINGS]
    syn = got[0]
    assert (syn.stream_id, syn.fin, syn.priority) == (1, True, 2)
    assert syn.headers == {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}
    assert got[1].stream_id == 1 and got[1].headers == {} and not got[1].fin
    assert got[2].headers == {"x": ["y"]} and got[2].fin
    assert got[3].headers == {"k": ["v"]}
    assert (got[4].stream_id, got[4].data, got[4].fin) == (3, b"hello", False)
    assert (got[5].data, got[5].fin) == (b"", True)
    assert (got[6].stream_id, got[6].status) == (5, spdy.CANCEL)
    assert got[7].ping_id == 7
    assert (got[8].stream_id, got[8].status) == (5, 0)
    assert (got[9].stream_id, got[9].delta) == (3, 65536)
    assert got[10].settings == [(0, 7, 65536), (1, 4, 100)]


def test_control_frame_layout() -> None:
    f = spdy.ping(9)
    assert f == bytes([0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 9])
    d = spdy.data_frame(1, b"ab", fin=True)
    assert d == bytes([0, 0, 0, 1, 1, 0, 0, 2]) + b"ab"


def test_reader_reassembles_split_frames() -> None:
    out = spdy.HeaderCompressor()
    stream = (spdy.syn_stream(out, 1, {"streamtype": ["data"]}) + spdy.data_frame(1, b"x" * 100)
              + spdy.ping(1))
    r = spdy.FrameReader()
    got = []
    for i in range(0, len(stream), 7):   # arbitrary message boundaries
        got += r.feed(stream[i:i + 7])
    assert [f.type for f in got] == [spdy.SYN_STREAM, 0, spdy.PING]
    assert got[1].data == b"x" * 100 and not r.buf


def test_reader_rejects_other_versions() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameReader().feed(struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1")


def test_parse_ports() -> None:
    assert portforward.parse_ports(["80,443", "8080"]) == [80, 443, 8080]
    for bad in (["0"], ["70000"], ["x"]):
        with pytest.raises(ValueError):
            portforward.parse_ports(bad)
