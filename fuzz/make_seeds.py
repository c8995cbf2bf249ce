#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/corpus/<target>/ (run from anywhere; stdlib only).

The seeds are small valid (and a few edge-case) inputs per target; libFuzzer mutates
them. The layout of each target's input is described in its fuzz_targets/*.rs.
"""
import gzip
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def w(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixstr(s):
    b = s.encode()
    return bytes([0xA0 | len(b)]) + b


def fixmap(pairs):
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def fixarr(items):
    return bytes([0x90 | len(items)]) + b"".join(items)


def u32(n):
    return b"\xce" + struct.pack(">I", n)


for i, q in enumerate([
    'portal_type:"Data Stream" AND title:%sensor%',
    "modification_date:>=2026-01-01 OR NOT (id:a AND reference:[a TO b])",
    "owner:in (alice, bob) AND description:NULL",
    "boiler temperature",
    "title:!=x (",
    "validation_state:validated",
]):
    w("query", f"seed{i}", q)

evtime = b"\xd7\x00" + struct.pack(">II", 1700000000, 5)
rec1 = fixarr([u32(1700000000), fixmap([(fixstr("seq"), b"\x01"),
                                         (fixstr("v"), b"\xcb" + struct.pack(">d", 1.5))])])
rec2 = fixarr([evtime, fixmap([(fixstr("msg"), fixstr("hello")),
                               (fixstr("b"), b"\xc4\x03abc"), (fixstr("n"), b"\xc0")])])
deep = b"\x91" * 99 + b"\x90"
# msgpack_validate: the first byte says how many piece sizes follow (0-3).
w("msgpack_validate", "records", b"\x00" + rec1 + rec2)
w("msgpack_validate", "deep", b"\x02\x05\x07" + deep)
w("msgpack_validate", "ext_str16", b"\x01\x03" + b"\xda\x00\x05hello" + b"\xc7\x02\x05ab"
  + b"\xdc\x00\x02\xc2\xc3")
w("msgpack_read", "records", rec1 + rec2)
w("msgpack_read", "deep", deep)
w("msgpack_read", "cut", rec1 + rec2[:7])

# forward, forward_handshake: the first byte says how many piece sizes follow (0-7).
tag = fixstr("pydata.sensor1.temp")
opts = fixmap([(fixstr("chunk"), fixstr("c1")), (fixstr("size"), b"\x02")])
fwd = fixarr([tag, fixarr([rec1, rec1]), opts])
packed = rec1 + rec2
pf = fixarr([tag, b"\xc4" + bytes([len(packed)]) + packed, opts])
gz = gzip.compress(packed, mtime=0)
cpf = fixarr([tag, b"\xc4" + bytes([len(gz)]) + gz,
              fixmap([(fixstr("chunk"), fixstr("c2")), (fixstr("compressed"), fixstr("gzip"))])])
msg = fixarr([tag, u32(1700000000), fixmap([(fixstr("seq"), b"\x07")]), opts])
w("forward", "forward", b"\x00" + fwd)
w("forward", "packed", b"\x02\x01\x03" + pf)
w("forward", "compressed", b"\x00" + cpf)
w("forward", "message_then_forward", b"\x01\x05" + msg + fwd)
ping = fixarr([fixstr("PING"), fixstr("client"), fixstr("salt"), b"\xd9\x80" + b"0" * 128,
               fixstr(""), fixstr("")])
w("forward_handshake", "ping", b"\x00" + ping)
w("forward_handshake", "ping_pieces", b"\x03\x01\x02\x05" + ping)
w("forward_handshake", "big_declared", b"\x00\x94\xdb\x40\x00\x00\x00xxxx")


def npy(descr, shape, nbytes, ver=1):
    dims = "(%s)" % (", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, dims)
    head = 10 if ver == 1 else 12
    d = d + " " * ((64 - (head + len(d) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(d)) if ver == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([ver, 0]) + size + d.encode() + b"\x00" * nbytes


w("npy", "f8_2x3", npy("<f8", [2, 3], 48))
w("npy", "i4_4", npy("<i4", [4], 16))
w("npy", "u1_scalar_v2", npy("|u1", [], 1, 2))
w("npy", "c16_empty", npy("<c16", [0, 5], 0))


# region: the first byte is the number of dimensions, then 2 bytes per dimension.
def region(shape, text):
    return bytes([len(shape)]) + b"".join(struct.pack("<H", s) for s in shape) + text.encode()


w("region", "slice", region([1000, 3], "0:1000:10,2"))
w("region", "neg", region([50], "-10:"))
w("region", "steps", region([100, 100, 4], "::2, 5:, -1"))
w("region", "huge", region([0x8001, 7], "-5:,3:1"))

# http_range: first byte even: the size is the second byte; odd: the next 8 bytes.
w("http_range", "range", b"\x00\x64bytes=0-9")
w("http_range", "suffix", b"\x00\x64bytes=-10")
w("http_range", "content_range", b"\x00\x14bytes 10-19/20")
w("http_range", "status", b"\x00\x00bytes */*")
w("http_range", "big", b"\x01" + struct.pack("<Q", 2**63) + b"bytes=9223372036854775807-")

for i, k in enumerate(["zarr.json", "c/0/0", "c/10/2/3", ".zarray", "c/../x", "c/0/.wtmp.x", "c//0"]):
    w("zarr_key", f"seed{i}", k)

# form: first byte: bit 0 body (0) or query string (1), the rest picks the portal type.
w("form", "edit", b"\x00title=Boiler+1&description=hall%203&reference=boiler1&csrf_token=x")
w("form", "query", b"\x03title=a&size=12&date=2026-01-02&when=2026-01-02T03:04&on=on")
w("form", "json", b"\x0ashape=%5B2%2C3%5D&dtype=float64&chunk_shape=&fill_value=0.5"
  b"&aggregate=data_stream_module%2F1%2C+data_stream_module%2F2")
