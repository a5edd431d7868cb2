"""TIFF structure, read and written directly: IFDs, tags and tile offsets.

GDAL's COG driver can only make a COG by re-encoding a finished source, so every pixel
would be compressed twice. Instead each pyramid level is compressed once — by the worker's
tile encoder (tiles.py), or by GDAL into a plain tiled GeoTIFF — and `assemble` moves the
compressed tiles, untouched, into one file in the Cloud-Optimized layout: all IFDs first,
then the tiles of the smallest overview up to the full resolution, each tile with GDAL's
size leader and trailer, under GDAL's structural-metadata header. The same reader backs
the independent COG checker.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

TAG_SUBFILE, TAG_WIDTH, TAG_HEIGHT = 254, 256, 257
TAG_STRIP_OFFSETS, TAG_STRIP_COUNTS = 273, 279
TAG_TILE_W, TAG_TILE_H, TAG_TILE_OFFSETS, TAG_TILE_COUNTS = 322, 323, 324, 325
#: tags that only belong to the full-resolution image (georeferencing, GDAL metadata)
MAIN_ONLY_TAGS = {33550, 33922, 34264, 34735, 34736, 34737, 42112}

# TIFF field type → (struct code, values per count unit)
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 1), 4: ("I", 1), 5: ("I", 2), 6: ("b", 1),
          7: ("B", 1), 8: ("h", 1), 9: ("i", 1), 10: ("i", 2), 11: ("f", 1), 12: ("d", 1),
          16: ("Q", 1), 17: ("q", 1), 18: ("Q", 1)}
_LONG, _LONG8 = 4, 16
#: the largest byte offset a classic TIFF can hold (32 bits); beyond it, BigTIFF
CLASSIC_LIMIT = 0xFFFFFFFF


def largest_size(sizes: Sequence[tuple[int, int]], count: int, itemsize: int,
                 blocksize: int) -> int:
    """The most bytes a tiled pyramid of levels `sizes` (width, height) could take once
    compressed, known before any pixel is written: every tile (edge tiles are whole) at its
    raw size, plus 1/64 for a compressor expanding data it cannot shrink (deflate and zstd
    add far less) and for the IFDs (16 bytes a tile), and each tile's 8-byte leader and
    trailer."""
    tiles = sum(-(-w // blocksize) * -(-h // blocksize) for w, h in sizes)
    raw = tiles * blocksize * blocksize * count * itemsize
    return raw + raw // 64 + 8 * tiles


@dataclass
class Field:
    tag: int
    type: int
    count: int
    values: tuple | bytes  # bytes for ASCII/UNDEFINED, a tuple otherwise

    def payload(self, order: str) -> bytes:
        code, per = _TYPES[self.type]
        if code == "s":
            return bytes(self.values)
        return struct.pack(order + code * (self.count * per), *self.values)


@dataclass
class Ifd:
    offset: int
    fields: dict[int, Field]

    def value(self, tag: int, default: int = 0) -> int:
        field = self.fields.get(tag)
        return int(field.values[0]) if field and field.values else default

    def array(self, tag: int) -> tuple:
        field = self.fields.get(tag)
        return tuple(field.values) if field else ()


@dataclass
class TiffInfo:
    order: str
    bigtiff: bool
    ifds: list[Ifd]
    header: bytes  # what follows the TIFF header (GDAL's structural metadata, if any)


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    """`size` bytes, or ValueError saying that the file ends inside `what`."""
    data = fh.read(size)
    if len(data) != size:
        raise ValueError(f"the file ends inside {what} (truncated?)")
    return data


def read_structure(fh: BinaryIO, max_ifds: int = 64) -> TiffInfo:
    """Every IFD of a TIFF with its fields (values decoded), plus the bytes after the header.

    ValueError when the file is not a TIFF or ends inside its header or an IFD.
    """
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        raise ValueError("not a TIFF file")
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic not in (42, 43):
        raise ValueError("not a TIFF file")
    big = magic == 43
    if big and len(head) < 16:
        raise ValueError("the file ends inside the BigTIFF header (truncated?)")
    ptr, cnt_fmt, entry_size = ("Q", "Q", 20) if big else ("I", "H", 12)
    offset = struct.unpack(order + ptr, head[8:16] if big else head[4:8])[0]
    fh.seek(16 if big else 8)
    after_header = fh.read(200)
    ifds: list[Ifd] = []
    seen: set[int] = set()
    while offset and len(ifds) < max_ifds:
        if offset in seen:
            raise ValueError(f"the IFD chain loops back to byte {offset}")
        seen.add(offset)
        where = f"IFD {len(ifds)} (at byte {offset})"
        fh.seek(offset)
        count = struct.unpack(order + cnt_fmt,
                              _read_exact(fh, struct.calcsize(cnt_fmt), where))[0]
        raw = _read_exact(fh, count * entry_size, where)
        next_offset = struct.unpack(order + ptr,
                                    _read_exact(fh, struct.calcsize(ptr), where))[0]
        fields = {}
        for i in range(count):
            entry = raw[i * entry_size:(i + 1) * entry_size]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            if typ not in _TYPES:
                continue
            n = struct.unpack(order + ptr, entry[4:12] if big else entry[4:8])[0]
            code, per = _TYPES[typ]
            nbytes = struct.calcsize(code) * n * per
            inline = entry[12:20] if big else entry[8:12]
            if nbytes <= len(inline):
                data = inline[:nbytes]
            else:
                fh.seek(struct.unpack(order + ptr, inline)[0])
                data = _read_exact(fh, nbytes, f"the values of tag {tag} of {where}")
            values: tuple | bytes = data if code == "s" else struct.unpack(
                order + code * (n * per), data)
            fields[tag] = Field(tag, typ, n, values)
        ifds.append(Ifd(offset, fields))
        offset = next_offset
    return TiffInfo(order, big, ifds, after_header)


def _ghost_header() -> bytes:
    """GDAL's structural metadata: tells readers the layout may be trusted (COG)."""
    body = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
            "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
    return (f"GDAL_STRUCTURAL_METADATA_SIZE={len(body):06d} bytes\n" + body).encode("ascii")


class _Plan:
    """Where each IFD and each tile of the output goes, computed before anything is written."""

    def __init__(self, levels: list[TiffInfo], bigtiff: bool) -> None:
        self.bigtiff = bigtiff
        self.ptr = "Q" if bigtiff else "I"
        self.entry = 20 if bigtiff else 12
        self.inline = 8 if bigtiff else 4
        self.fields: list[list[Field]] = []
        for index, info in enumerate(levels):
            ifd = info.ifds[0]
            if TAG_TILE_OFFSETS not in ifd.fields:
                raise ValueError("pyramid levels must be tiled")
            fields = dict(ifd.fields)
            if index > 0:
                for tag in MAIN_ONLY_TAGS:
                    fields.pop(tag, None)
                fields[TAG_SUBFILE] = Field(TAG_SUBFILE, _LONG, 1, (1,))
            else:
                fields.pop(TAG_SUBFILE, None)
            self.fields.append([fields[tag] for tag in sorted(fields)])

    def ifd_size(self, fields: Sequence[Field]) -> int:
        count = 8 if self.bigtiff else 2
        size = count + len(fields) * self.entry + struct.calcsize(self.ptr)
        for field in fields:
            n = self._nbytes(field)
            if n > self.inline:
                size += n + (n & 1)  # word-aligned out-of-line values
        return size

    def _nbytes(self, field: Field) -> int:
        if field.tag in (TAG_TILE_OFFSETS, TAG_TILE_COUNTS):
            return field.count * (8 if self.bigtiff else 4)
        code, per = _TYPES[field.type]
        return struct.calcsize(code) * field.count * per


def _layout(levels: list[TiffInfo], tiles: list[list[tuple[int, int]]],
            bigtiff: bool) -> tuple[_Plan, list[int], list[list[int]], int]:
    """Where every IFD and tile goes: (plan, IFD offsets, tile offsets per level, end)."""
    plan = _Plan(levels, bigtiff)
    cursor = (16 if bigtiff else 8) + len(_ghost_header())
    ifd_offsets = []
    for fields in plan.fields:
        cursor += cursor & 1
        ifd_offsets.append(cursor)
        cursor += plan.ifd_size(fields)
    # tile data: smallest overview first, full resolution last
    new_offsets: list[list[int]] = [[] for _ in levels]
    for index in reversed(range(len(levels))):
        for _, size in tiles[index]:
            if size == 0:
                new_offsets[index].append(0)
                continue
            new_offsets[index].append(cursor + 4)  # after the 4-byte size leader
            cursor += size + 8
    return plan, ifd_offsets, new_offsets, cursor


def _needs_64_bits(levels: list[TiffInfo]) -> bool:
    """Whether a tag other than the tile offsets holds 64-bit values (BigTIFF only)."""
    return any(field.type in (16, 17, 18) and tag not in (TAG_TILE_OFFSETS, TAG_TILE_COUNTS)
               for info in levels for tag, field in info.ifds[0].fields.items())


def assemble(level_paths: Sequence[str], dest: str, *, bigtiff: bool | None = None,
             classic_limit: int = CLASSIC_LIMIT,
             tiles: Sequence[tuple[str, Sequence[tuple[int, int]]]] | None = None) -> None:
    """Write `dest` as a COG from single-image tiled TIFFs: full resolution first, then
    each overview, all with the same tiling, compression and bands.

    `tiles`, when given, holds each level's compressed tiles apart from its TIFF (whose
    own tiles are then empty): (file, [(offset, size) of each tile, row-major]), as the
    worker's tile encoder (tiles.py) writes them.

    BigTIFF when asked, or (`bigtiff` None) when the classic layout, planned exactly from
    the tiles' sizes before anything is written, would end beyond `classic_limit` bytes (a
    big AOI's mosaic passes 4 GiB; tests lower the limit to see the switch)."""
    handles = [open(path, "rb") for path in level_paths]  # noqa: SIM115 - closed below
    try:
        levels = [read_structure(fh, max_ifds=1) for fh in handles]
        order = levels[0].order
        if tiles is None:
            places = [list(zip(info.ifds[0].array(TAG_TILE_OFFSETS),
                               info.ifds[0].array(TAG_TILE_COUNTS))) for info in levels]
            sources = list(level_paths)
        else:
            places = [list(level) for _, level in tiles]
            sources = [path for path, _ in tiles]
            for fh in handles:
                fh.close()
            handles = [open(path, "rb") for path in sources]  # noqa: SIM115 - closed below
            for info, level in zip(levels, places):
                if len(level) != len(info.ifds[0].array(TAG_TILE_OFFSETS)):
                    raise ValueError("a level's tiles do not match its IFD's tile count")
        if bigtiff is None:
            bigtiff = _needs_64_bits(levels) or _layout(levels, places, False)[3] > classic_limit
        plan, ifd_offsets, new_offsets, end = _layout(levels, places, bigtiff)
        if not bigtiff and end > CLASSIC_LIMIT:
            raise ValueError("output exceeds 4 GB; BigTIFF needed")
        ghost = _ghost_header()
        with open(dest, "wb") as out:
            if bigtiff:
                out.write(struct.pack(order + "HHHHQ", 0x4949 if order == "<" else 0x4D4D,
                                      43, 8, 0, ifd_offsets[0]))
            else:
                out.write(struct.pack(order + "HHI", 0x4949 if order == "<" else 0x4D4D, 42,
                                      ifd_offsets[0]))
            out.write(ghost)
            for index, fields in enumerate(plan.fields):
                following = ifd_offsets[index + 1] if index + 1 < len(ifd_offsets) else 0
                _write_ifd(out, order, plan, fields, ifd_offsets[index], following,
                           new_offsets[index], [s for _, s in places[index]])
            out.flush()
            tiles_out = _TileCopier(out.fileno(), order)
            for index in reversed(range(len(levels))):
                for (offset, size), target in zip(places[index], new_offsets[index]):
                    if size == 0:
                        continue
                    if tiles_out.position != target - 4:
                        raise AssertionError("COG layout plan and writer disagree")
                    tiles_out.copy(handles[index].fileno(), offset, size, sources[index])
    finally:
        for fh in handles:
            fh.close()


class _TileCopier:
    """Tiles appended to the COG with their size leader and trailer, copied file to file
    in the kernel (copy_file_range: the bytes never pass through Python), or read and
    written where the kernel cannot (another file system, an old kernel)."""

    def __init__(self, fd: int, order: str) -> None:
        self.fd, self.order = fd, order
        self.position = os.lseek(fd, 0, os.SEEK_CUR)
        self.in_kernel = hasattr(os, "copy_file_range")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def copy(self, src: int, offset: int, size: int, name: str) -> None:
        tail = min(size, 4)  # the trailer repeats the tile's last 4 bytes (fewer: padded)
        last = os.pread(src, tail, offset + size - tail)
        if len(last) != tail:
            raise ValueError(f"truncated tile in {name}")
        self._write(struct.pack(self.order + "I", size))
        done = 0
        while done < size and self.in_kernel:
            try:
                copied = os.copy_file_range(src, self.fd, size - done, offset + done)
            except OSError as exc:  # EXDEV, ENOSYS, EINVAL…: read and write instead
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                     errno.EOPNOTSUPP):
                    raise
                self.in_kernel = False
                break
            if copied == 0:
                raise ValueError(f"truncated tile in {name}")
            done += copied
        if done < size:
            data = os.pread(src, size - done, offset + done)
            if len(data) != size - done:
                raise ValueError(f"truncated tile in {name}")
            self._write(data)
        self._write(last.rjust(4, b"\0"))
        self.position += size + 8


def _write_ifd(out: BinaryIO, order: str, plan: _Plan, fields: Sequence[Field], at: int,
               following: int, offsets: Sequence[int], counts: Sequence[int]) -> None:
    out.write(b"\0" * (at - out.tell()))
    ptr = plan.ptr
    entries = []
    extra = b""
    extra_at = at + (8 if plan.bigtiff else 2) + len(fields) * plan.entry + struct.calcsize(ptr)
    for field in fields:
        if field.tag in (TAG_TILE_OFFSETS, TAG_TILE_COUNTS):
            typ = _LONG8 if plan.bigtiff else _LONG
            values = offsets if field.tag == TAG_TILE_OFFSETS else counts
            payload = struct.pack(order + ("Q" if plan.bigtiff else "I") * len(values), *values)
            count = len(values)
        else:
            typ, count, payload = field.type, field.count, field.payload(order)
            if not plan.bigtiff and typ in (16, 17, 18):
                raise ValueError(f"tag {field.tag} is 64-bit; BigTIFF needed")
        if len(payload) <= plan.inline:
            value = payload.ljust(plan.inline, b"\0")
        else:
            value = struct.pack(order + ptr, extra_at + len(extra))
            extra += payload + (b"\0" if len(payload) & 1 else b"")
        entries.append(struct.pack(order + "HH", field.tag, typ)
                       + struct.pack(order + ptr, count) + value)
    out.write(struct.pack(order + ("Q" if plan.bigtiff else "H"), len(fields)))
    out.write(b"".join(entries))
    out.write(struct.pack(order + ptr, following))
    out.write(extra)
