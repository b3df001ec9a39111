"""Imports of extension modules while failures land (issue 11, the dlopen failure window).

Each import below is a dlopen of a shared object, most with libraries of their own (libcrypto
and libssl, libsqlite3, libffi, libmpdec, libz, libbz2, liblzma, libuuid): ld.so maps,
relocates and write-protects them inside the call, so failures injected early in a run land
inside ld.so. Every module is then used, and what it computes is printed: a relocation lost at
a resume crashes the interpreter or changes the output.
"""
import sys

out = []
import hashlib
out.append(hashlib.sha256(b"zhuque").hexdigest())
out.append(hashlib.md5(b"zhuque").hexdigest())
import ssl
out.append(str(ssl.OPENSSL_VERSION_NUMBER > 0 and ssl.create_default_context().verify_mode))
import sqlite3
db = sqlite3.connect(":memory:")
db.execute("create table t(x)")
db.executemany("insert into t values (?)", [(i,) for i in range(1000)])
out.append(str(db.execute("select sum(x * x) from t").fetchone()[0]))
import zlib, bz2, lzma
data = b"".join(b"%d," % i for i in range(5000))
out.append("%d %d %d" % (zlib.crc32(zlib.compress(data)), len(bz2.decompress(bz2.compress(data))), len(lzma.decompress(lzma.compress(data)))))
import decimal
decimal.getcontext().prec = 50
out.append(str(decimal.Decimal(2).sqrt()))
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"))
out.append(str(libc.abs(-42)))
import json, csv, io, unicodedata, array, uuid
out.append(json.dumps({"a": [1, 2, 3]}, sort_keys=True))
rows = list(csv.reader(io.StringIO("a,b\n1,2\n")))
out.append(repr(rows))
out.append(unicodedata.name("\u6731"))
out.append(str(sum(array.array("q", range(10000)))))
out.append(str(uuid.uuid5(uuid.NAMESPACE_DNS, "zhuque")))
for line in out:
    print(line)
sys.exit(0)
