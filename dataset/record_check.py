"""Turning bad record files into one clear :class:`~dataset.errors.DatasetError`.

Two layers, because TensorFlow reports bad record files badly: a truncated or
corrupted file gives ``DataLossError: truncated record at 36260`` without the
file's name, a file that holds no records ends the input pipeline (an
``OutOfRangeError: End of sequence`` inside the train step), and the records'
own checks (:mod:`dataset.detection_parser`) arrive as an
``InvalidArgumentError`` with a graph dump around them.

* :func:`check_record_files` — a cheap pre-flight check at start-up. For each
  file it reads only the first record with plain Python (12-byte header: length
  and its masked CRC-32C, then the record) and ``tf.train.Example.FromString``,
  with no ``tf.data`` graph, so 2000 local shards take a fraction of a second.
  It finds empty files, files that are not TFRecords (a JPEG renamed to
  ``.tfrecord``, a GZIP-compressed file), a truncated first record, and
  records of the other task (classification records given to the detector and
  the reverse). ``full_scan=True`` walks every record's framing as well
  (truncation anywhere, and a record count) for about one 12-byte read per
  record.
* :func:`explain_data_error` — translates an error raised mid-run (by
  iterating the dataset or inside the train / eval step) into a
  :class:`DatasetError`, or returns ``None`` when the error is not about the
  data. For a ``DataLossError`` it finds the file by walking the record framing
  of every candidate file (the error carries only the byte offset); for a
  failed record check it names the record and, when the data are small enough
  to search (:data:`SEARCH_BUDGET_BYTES`), the record file and record index.

:func:`explained_data_errors` wraps a block of code with the second one.
"""
from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import re
import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from google.protobuf.message import DecodeError

from dataset.errors import DatasetError
from dataset.input_utils import list_files

logger = logging.getLogger("dataset")

TASKS = ("detection", "classification")
HEADER_BYTES = 12  # uint64 length + masked CRC-32C of the length
FOOTER_BYTES = 4  # masked CRC-32C of the data
# After an error, the raw record files are searched for the failing record only
# up to this many bytes in total, so that naming the file never costs more than
# a few seconds of reading; beyond it the message names the record only.
SEARCH_BUDGET_BYTES = 2 << 30
MAX_LISTED = 5

_DETECTION_CONVERTERS = "dataset/create_coco_tfrecord.py or dataset/create_pascal_tfrecord.py"
_CLASSIFICATION_CONVERTER = "dataset/create_classification_tfrecord.py"
_ANY_CONVERTER = "dataset/create_*_tfrecord.py"
_FILES_TIP = "point the file pattern at the .tfrecord files written by " + _ANY_CONVERTER

FilesArg = Union[None, str, Sequence[str]]

# --------------------------------------------------------------------------
# TFRecord framing
# --------------------------------------------------------------------------


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord framing stores (pure Python: only for
    the 8-byte length fields, which keeps the framing checks fast)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: str):
    # Local files through the OS (fast seeks); gs:// and other schemes through TF.
    if "://" in path:
        return tf.io.gfile.GFile(path, "rb")
    return open(path, "rb")


def _size(path: str) -> int:
    if "://" in path:
        return int(tf.io.gfile.stat(path).length)
    return os.path.getsize(path)


def _header_length(header: bytes) -> Optional[int]:
    """The record length from a 12-byte header, or None when its CRC fails."""
    (length,) = struct.unpack("<Q", header[:8])
    (crc,) = struct.unpack("<I", header[8:])
    return length if masked_crc32c(header[:8]) == crc else None


_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a GZIP-compressed file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"<", "an XML / HTML text file"),
    (b"{", "a JSON text file"),
    (b"[", "a JSON text file"),
)


def _sniff(head: bytes) -> str:
    """What a file that is not a TFRecord looks like, from its first bytes."""
    stripped = head.lstrip()
    for magic, what in _MAGIC:
        if head.startswith(magic) or (magic in (b"<", b"{", b"[") and stripped.startswith(magic)):
            return what
    if head[:2] == b"BM":
        return "a BMP image"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "unknown binary data"


@dataclasses.dataclass
class RecordFileScan:
    """The framing of one record file, walked from its start.

    Attributes:
        path: the file.
        size: its size in bytes.
        offsets: byte offset of each whole record (header and data present).
        problem: ``None`` (framing fine), ``"truncated"`` (a record or header
            is cut short by the end of the file) or ``"bad_header"`` (a
            header's CRC fails: not a TFRecord file when at offset 0, else
            corrupted).
        problem_offset: byte offset of the bad record.
        needed: for ``"truncated"``, the bytes the cut record needs.
        head: the file's first bytes (to say what a non-TFRecord file is).
    """

    path: str
    size: int
    offsets: List[int]
    problem: Optional[str] = None
    problem_offset: Optional[int] = None
    needed: Optional[int] = None
    head: bytes = b""

    @property
    def num_records(self) -> int:
        """Whole records before any problem (all of them when ``max_records`` did not stop the walk)."""
        return len(self.offsets)

    def describe(self) -> Optional[Tuple[str, str]]:
        """``(what is wrong, how to fix it)`` for the problem, without the path; None when fine."""
        if self.problem is None:
            return None
        index, offset = self.num_records, self.problem_offset
        if self.problem == "bad_header" and offset == 0 and self.head.startswith(b"\x1f\x8b"):
            return ("is GZIP-compressed (TFRecordOptions compression); the input pipelines read uncompressed "
                    "TFRecords", "decompress it (gunzip) or re-create it without compression")
        if self.problem == "bad_header" and offset == 0:
            return f"is not a TFRecord file (it starts like {_sniff(self.head)})", _FILES_TIP
        if self.problem == "bad_header":
            return (f"is corrupted: the header of record {index} (at byte {offset}) fails its checksum",
                    f"copy it again or re-create it with {_ANY_CONVERTER}")
        if offset == 0 and self.size < HEADER_BYTES:
            what = f"is truncated: {self.size} bytes, shorter than one record header ({HEADER_BYTES} bytes)"
        else:
            what = (f"is truncated: record {index} (at byte {offset}) needs {self.needed} bytes but the file "
                    f"ends at byte {self.size}")
        before = ""
        if index:
            before = f" (the {index} records before it are fine)" if index > 1 else " (the record before it is fine)"
        return what, f"the copy or the converter run was cut short; copy it again or re-run the converter{before}"


def scan_record_file(path: str, max_records: Optional[int] = None) -> RecordFileScan:
    """Walks the framing of one file: record lengths and header CRCs.

    Reads 12 bytes per record and seeks over the data, so it is cheap even for
    large shards; the data CRCs are not checked (TensorFlow does that when it
    reads, see :func:`explain_data_error`).

    Args:
        path: the record file (local or any ``tf.io.gfile`` scheme).
        max_records: stop after this many whole records (``1``: only the
            first record's framing).

    Raises:
        OSError, tf.errors.OpError: the file cannot be read.
    """
    size = _size(path)
    scan = RecordFileScan(path, size, [])
    offset = 0
    with _open(path) as handle:
        while offset < size and (max_records is None or len(scan.offsets) < max_records):
            handle.seek(offset)
            header = handle.read(HEADER_BYTES)
            if offset == 0:
                scan.head = header
            if len(header) < HEADER_BYTES:
                # TensorFlow reads a cut header as a clean end of file: the
                # records before it are read, this one is lost silently.
                scan.problem, scan.problem_offset, scan.needed = "truncated", offset, HEADER_BYTES
                break
            length = _header_length(header)
            if length is None:
                scan.problem, scan.problem_offset = "bad_header", offset
                break
            end = offset + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                scan.problem, scan.problem_offset = "truncated", offset
                scan.needed = HEADER_BYTES + length + FOOTER_BYTES
                break
            scan.offsets.append(offset)
            offset = end
    return scan


def _read_record(path: str, offset: int) -> bytes:
    with _open(path) as handle:
        handle.seek(offset)
        (length,) = struct.unpack("<Q", handle.read(HEADER_BYTES)[:8])
        return handle.read(length)


# --------------------------------------------------------------------------
# Pre-flight check
# --------------------------------------------------------------------------


def record_kind(keys) -> str:
    """The kind of record, from its feature keys.

    Returns:
        ``"detection"`` (``image/object/...`` keys, the TF Object Detection API
        layout), ``"classification"`` (``image/class/label`` and no object
        keys), ``"image"`` (an image without either; a detection record of an
        image without objects may look like this) or ``"other"`` (no
        ``image/encoded``).
    """
    keys = set(keys)
    if "image/encoded" not in keys:
        return "other"
    if any(key.startswith("image/object/") for key in keys):
        return "detection"
    if "image/class/label" in keys:
        return "classification"
    return "image"


@dataclasses.dataclass
class _FileCheck:
    path: str
    empty: bool = False
    num_records: Optional[int] = None
    kind: Optional[str] = None
    problem: Optional[Tuple[str, str]] = None  # (what is wrong, the fix), see RecordFileScan.describe


def _kind_problem(kind: str, keys: Sequence[str], task: str) -> Optional[Tuple[str, str]]:
    if kind == "other":
        shown = ", ".join(sorted(keys)[:8]) or "none"
        return f"does not hold image records (no image/encoded; its first record's keys: {shown})", _FILES_TIP
    if task == "detection" and kind == "classification":
        return ("holds classification records (image/class/label)",
                f"detection needs records from {_DETECTION_CONVERTERS}")
    if task == "classification" and kind == "detection":
        return ("holds detection records (image/object/...)",
                f"classification needs records from {_CLASSIFICATION_CONVERTER}")
    if task == "classification" and kind == "image":
        return ("holds records without a label (no image/class/label)",
                f"classification needs records from {_CLASSIFICATION_CONVERTER}")
    return None


def _check_file(path: str, task: str, full_scan: bool) -> _FileCheck:
    """Checks one file (never raises for bad data: the problem is returned)."""
    result = _FileCheck(path)
    try:
        scan = scan_record_file(path, None if full_scan else 1)
        if scan.size == 0:
            result.empty = True
            result.num_records = 0
            return result
        if full_scan:
            result.num_records = scan.num_records
        result.problem = scan.describe()
        if result.problem:
            return result
        data = _read_record(path, 0)
    except OSError as error:  # permissions, vanished, I/O error
        result.problem = (f"cannot be read ({error})", "check the path and its permissions")
        return result
    except tf.errors.OpError as error:  # the same through tf.io.gfile (gs:// ...)
        result.problem = (f"cannot be read ({error.message})", "check the path and its permissions")
        return result
    try:
        keys = list(tf.train.Example.FromString(data).features.feature.keys())
    except DecodeError:
        result.problem = "holds records that are not tf.train.Example protos", _FILES_TIP
        return result
    result.kind = record_kind(keys)
    result.problem = _kind_problem(result.kind, keys, task)
    return result


def _listed(paths: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def resolve_files(files: FilesArg) -> List[str]:
    """A sorted list of files from a list of paths, a glob or comma-separated globs.

    Raises:
        DatasetError: a glob that matches nothing (names it).
    """
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        return list_files(os.fspath(files))
    return sorted({os.fspath(f) for f in files})


@dataclasses.dataclass
class RecordCheck:
    """What :func:`check_record_files` found (when it did not raise).

    Attributes:
        files: the files checked, sorted.
        empty_files: those of 0 bytes (they hold no records).
        kinds: record kind (:func:`record_kind`) → number of files.
        num_records: records in all files (``full_scan`` only, else None).
    """

    files: List[str]
    empty_files: List[str]
    kinds: Dict[str, int]
    num_records: Optional[int] = None


def check_record_files(files: FilesArg, task: str, full_scan: bool = False, max_workers: int = 16) -> RecordCheck:
    """The start-up check of the record files of one pipeline (module docstring).

    Args:
        files: paths, or a glob / comma-separated globs.
        task: ``"detection"`` or ``"classification"``.
        full_scan: walk the framing of every record, not only the first one
            (finds files truncated or damaged further in, and counts the
            records; about one 12-byte read per record, fine for local disks,
            slow for remote storage).
        max_workers: threads reading the files (the reads wait on disk or
            network, so threads overlap them).

    Returns:
        A :class:`RecordCheck`. Empty files while others hold records only
        log a warning (the pipeline reads them as zero records).

    Raises:
        DatasetError: no files; every file empty; any file not a TFRecord,
            truncated (in its first record; anywhere with ``full_scan``),
            unreadable, or holding records of the other task. One message
            names the files (the first few when many) and says how to fix
            them.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    paths = resolve_files(files)
    if not paths:
        raise DatasetError(f"no {task} record files given; set the file pattern to the .tfrecord files "
                           f"written by {_ANY_CONVERTER}.")
    work = functools.partial(_check_file, task=task, full_scan=full_scan)
    if len(paths) > 1 and max_workers > 1:
        with concurrent.futures.ThreadPoolExecutor(min(max_workers, len(paths))) as pool:
            checks = list(pool.map(work, paths))
    else:
        checks = [work(p) for p in paths]

    bad = [c for c in checks if c.problem]
    if len(bad) == 1:
        what, fix = bad[0].problem
        raise DatasetError(f"{bad[0].path} {what} — {fix}.")
    if bad:
        shown = "; ".join(f"{c.path} {c.problem[0]}" for c in bad[:3])
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        fixes = "; ".join(dict.fromkeys(c.problem[1] for c in bad[:3]))
        raise DatasetError(f"{len(bad)} of {len(paths)} {task} record files are unusable: {shown}{more} — {fixes}.")

    empty = [c.path for c in checks if c.empty]
    converter = _DETECTION_CONVERTERS if task == "detection" else _CLASSIFICATION_CONVERTER
    if len(empty) == len(paths):
        raise DatasetError(f"all {len(paths)} {task} record files are empty (0 bytes, no records): "
                           f"{_listed(empty)} — re-run the converter ({converter}) and check that it finished.")
    if empty:
        logger.warning("%d of %d %s record files are empty (0 bytes, no records): %s", len(empty), len(paths),
                       task, _listed(empty))
    kinds: Dict[str, int] = {}
    for check in checks:
        if check.kind:
            kinds[check.kind] = kinds.get(check.kind, 0) + 1
    total = sum(c.num_records for c in checks) if full_scan else None
    return RecordCheck(paths, empty, kinds, total)


# --------------------------------------------------------------------------
# Errors raised mid-run
# --------------------------------------------------------------------------

_DATA_LOSS = re.compile(r"(truncated|corrupted) record at (\d+)")
_ASSERTION = re.compile(r"assertion failed: (.*)")
_BRACKETED = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]")
_DETECTION_RECORD = re.compile(r"source_id '(.*?)' file '(.*?)'")
_CLASSIFICATION_RECORD = re.compile(r"file '(.*?)' \(class text '(.*?)'\)")
# TensorFlow's own messages for bytes that claim to be an image but do not decode.
_DECODE_FAILURES = ("Invalid JPEG data", "jpeg::Uncompress failed", "Invalid PNG data", "Invalid GIF data",
                    "Failed to decode GIF", "Invalid BMP", "Unknown image file format")
# tf.io.parse_single_example on a record of another layout or type.
_PARSE_FAILURES = ("Can't parse serialized Example", "Could not parse example input",
                   "Data types don't match", "Name: <unknown>, Feature: image/")


def _message(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error)


def _assertion_parts(message: str) -> Optional[List[str]]:
    """The bracketed values of a failed ``tf.debugging.Assert``, unescaped."""
    match = _ASSERTION.search(message)
    if not match:
        return None
    line = match.group(1).split("\n")[0]
    return [part.replace("\\'", "'").replace('\\"', '"') for part in _BRACKETED.findall(line)]


def _render_assertion(parts: List[str]) -> Optional[Tuple[str, str, str]]:
    """``(record, what is wrong, the fix)`` from the parts of a record check.

    The project's record checks print ``[<what> in record] [<record>]
    [<values> …] [- <fix>]`` (:mod:`dataset.detection_parser`,
    :func:`dataset.input_utils.check_image_bytes`,
    :mod:`dataset.classification_input`); ``None`` for other assertions.
    """
    index = next((i for i, part in enumerate(parts) if part.endswith(" in record")), None)
    if index is None or index + 1 >= len(parts):
        return None
    fix = ""
    rest = parts[index + 2:]
    if rest and rest[-1].startswith("- "):
        fix, rest = rest[-1][2:], rest[:-1]

    def word(part):
        # Vectors print as "1 3"; bracket them so they read as one value.
        return f"[{part}]" if re.fullmatch(r"[-0-9.e+ ]+", part) and " " in part.strip() else part

    what = " ".join(word(p) for p in parts[:index] + [parts[index][:-len(" in record")]])
    what = re.sub(r"\s+\)", ")", what)
    if rest:
        what += ": " + " ".join(word(p) for p in rest)
    return parts[index + 1], what, fix


def _feature_pattern(value: bytes) -> bytes:
    """How a one-value ``BytesList`` feature with ``value`` is serialized.

    Searching for this (lengths included) instead of the bare value avoids
    matching ``1.jpg`` inside ``11.jpg`` or inside image bytes.
    """
    def varint(number):
        out = bytearray()
        while True:
            byte = number & 0x7F
            number >>= 7
            out.append(byte | (0x80 if number else 0))
            if not number:
                return bytes(out)

    inner = b"\x0a" + varint(len(value)) + value
    return b"\x0a" + varint(len(inner)) + inner


def _find_in_file(path: str, pattern: bytes, chunk: int = 8 << 20) -> Iterator[int]:
    """Byte offsets of ``pattern`` in a file, read in chunks."""
    with _open(path) as handle:
        base, tail = 0, b""
        while True:
            block = handle.read(chunk)
            if not block:
                return
            data = tail + block
            start = 0
            while True:
                found = data.find(pattern, start)
                if found < 0:
                    break
                yield base - len(tail) + found
                start = found + 1
            keep = len(pattern) - 1
            tail = data[-keep:] if keep else b""
            base += len(block)


def _matches(record: bytes, wanted: dict) -> bool:
    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return False
    for key, value in wanted.items():
        values = features[key].bytes_list.value if key in features else []
        if value.encode("utf-8") not in values:
            return False
    return True


def locate_record(files: Sequence[str], wanted: dict,
                  budget_bytes: int = SEARCH_BUDGET_BYTES) -> Optional[Tuple[str, int]]:
    """The ``(file, record index)`` of the first record whose bytes features equal ``wanted``.

    Args:
        files: record files to search, in order.
        wanted: feature key → text value, e.g. ``{"image/filename": "a.jpg",
            "image/source_id": "7"}``; the first non-empty value is searched for
            in the raw bytes and every candidate record is parsed to confirm.
        budget_bytes: give up (``None``) when the files are larger than this
            in total.
    """
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted or not files:
        return None
    try:
        if sum(_size(path) for path in files) > budget_bytes:
            return None
        pattern = _feature_pattern(next(iter(wanted.values())).encode("utf-8"))
        for path in files:
            scan = None
            for position in _find_in_file(path, pattern):
                scan = scan or scan_record_file(path)
                index = _record_containing(scan.offsets, position)
                if index is not None and _matches(_read_record(path, scan.offsets[index]), wanted):
                    return path, index
    except (OSError, tf.errors.OpError):  # files changed or vanished since the error: name the record only
        return None
    return None


def _record_containing(offsets: List[int], position: int) -> Optional[int]:
    index = bisect.bisect_right(offsets, position) - 1
    return index if index >= 0 else None


def _record_location(files: List[str], record: str) -> str:
    """`` in FILE (record N)`` for the record named in a check's message, or ``""``."""
    match = _DETECTION_RECORD.search(record)
    if match:
        wanted = {"image/filename": match.group(2), "image/source_id": match.group(1)}
    else:
        match = _CLASSIFICATION_RECORD.search(record)
        if not match:
            return ""
        wanted = {"image/filename": match.group(1), "image/class/text": match.group(2)}
    found = locate_record(files, wanted)
    return f" in {found[0]} (record {found[1]})" if found else ""


def _explain_data_loss(kind: str, offset: int, message: str, files: List[str]) -> DatasetError:
    """The file and record behind ``truncated/corrupted record at <offset>``."""
    named = [path for path in files if path in message]  # should a TF version name the file
    scans = []
    for path in named or files:
        try:
            scans.append(scan_record_file(path))
        except (OSError, tf.errors.OpError):  # vanished since: cannot be the one to name
            continue
    # The file whose framing breaks at the reported offset; else any broken one.
    broken = [s for s in scans if s.problem and s.problem_offset == offset] or [s for s in scans if s.problem]
    if broken:
        what, fix = broken[0].describe()
        others = f" ({len(broken) - 1} more of the files are damaged too)" if len(broken) > 1 else ""
        return DatasetError(f"{broken[0].path} {what}{others} — {fix}.")
    if kind == "corrupted":
        # The framing is fine, so a record's data fails its checksum: TF reports
        # the offset of the data, 12 bytes after the record's start. Let TF check
        # the candidates (it verifies the CRCs, in C++) up to that record.
        start = offset - HEADER_BYTES
        for scan in scans:
            index = bisect.bisect_left(scan.offsets, start)
            if index < len(scan.offsets) and scan.offsets[index] == start:
                try:
                    tf.data.TFRecordDataset(scan.path).take(index + 1).reduce(0, lambda n, _: n + 1)
                except tf.errors.DataLossError:
                    return DatasetError(
                        f"{scan.path} is corrupted: record {index} (at byte {start}) fails its checksum — copy it "
                        f"again or re-create it with {_ANY_CONVERTER}.")
    return DatasetError(
        f"a record file is {kind} (record at byte {offset}) but TensorFlow does not say which, and none of the "
        f"{len(files)} files given ({_listed(files)}) shows it now — check that the files are not rewritten "
        "while they are read.")


def explain_data_error(error: BaseException, files: FilesArg) -> Optional[DatasetError]:
    """A :class:`DatasetError` for an error caused by the record files, else ``None``.

    Understands:

    * ``DataLossError`` (``truncated record at N`` / ``corrupted record at N``,
      which do not name the file): the file is found by walking the framing of
      each of ``files`` (:func:`scan_record_file`) — or, for a data checksum
      failure, by letting TensorFlow re-read the candidates up to that record;
    * ``InvalidArgumentError`` from the records' own checks (class id outside
      ``1 … num_classes``, box outside the image, bytes that are not an image,
      classification records given to the detector, …): the record is named,
      and its file and index when found (:func:`locate_record`);
    * ``InvalidArgumentError`` from TensorFlow's image decoders or example
      parser on a damaged record;
    * ``OutOfRangeError`` (the pipeline ended, e.g. ``End of sequence`` inside
      the train step) when ``files`` hold no records at all.

    Args:
        error: the exception caught around the training / evaluation loop.
        files: the record files that the failing pipeline reads (paths or a
            glob); used to find the damaged file.

    Returns:
        The error to raise instead (``raise explained from None``), or ``None``
        when ``error`` is not about the data (re-raise it unchanged).
    """
    if isinstance(error, DatasetError):
        return error
    message = _message(error)
    try:
        paths = resolve_files(files)
    except DatasetError:  # the pattern matches nothing any more: explain without file names
        paths = []

    loss = _DATA_LOSS.search(message)
    if loss and (isinstance(error, tf.errors.DataLossError) or not isinstance(error, tf.errors.OpError)):
        return _explain_data_loss(loss.group(1), int(loss.group(2)), message, paths)

    if isinstance(error, tf.errors.InvalidArgumentError):
        parts = _assertion_parts(message)
        rendered = _render_assertion(parts) if parts else None
        if rendered:
            record, what, fix = rendered
            location = _record_location(paths, record)
            return DatasetError(f"bad record {record}{location}: {what}" + (f" — {fix}." if fix else "."))
        failure = next((f for f in _DECODE_FAILURES if f in message), None)
        if failure:
            return DatasetError(
                f"an image in the records ({_listed(paths)}) does not decode (TensorFlow: "
                f"{_tf_line(message, failure)}) — its image/encoded bytes are damaged; re-create the records with "
                f"{_ANY_CONVERTER} (python -m dataset.inspect_tfrecords shows records one by one).")
        failure = next((f for f in _PARSE_FAILURES if f in message), None)
        if failure:
            return DatasetError(
                f"a record in {_listed(paths)} does not have the expected layout (TensorFlow: "
                f"{_tf_line(message, failure)}) — re-create the records with {_ANY_CONVERTER}.")
        return None

    if isinstance(error, tf.errors.OutOfRangeError) and paths:
        return _explain_no_records(paths)
    return None


def _explain_no_records(paths: List[str]) -> Optional[DatasetError]:
    """An error when none of ``paths`` holds a record (the pipeline ended at once), else None."""
    scans = []
    for path in paths:
        try:
            scan = scan_record_file(path, max_records=1)
        except (OSError, tf.errors.OpError):
            return None  # cannot tell; leave the original error
        if scan.num_records:
            return None  # there is data: the end of the pipeline has another cause
        scans.append(scan)
    damaged = [s for s in scans if s.problem]
    if damaged:
        what, fix = damaged[0].describe()
        return DatasetError(f"the input pipeline ran out of data: none of the {len(paths)} record files holds a "
                            f"readable record; {damaged[0].path} {what} — {fix}.")
    return DatasetError(f"the input pipeline ran out of data: the {len(paths)} record files hold no records "
                        f"({_listed(paths)}) — re-run the converter that writes them and check that it finished.")


def _tf_line(message: str, marker: str) -> str:
    """The line of TensorFlow's message holding ``marker``, without graph decoration."""
    for line in message.splitlines():
        if marker in line:
            line = re.sub(r"\{\{[^}]*\}\}", "", line)
            line = re.sub(r"\s*\[(Op|\[)[^\]]*\]+.*$", "", line)
            return line.strip().rstrip(".")
    return marker


@contextlib.contextmanager
def explained_data_errors(files: FilesArg):
    """Runs the block, turning data errors into :class:`DatasetError` (:func:`explain_data_error`).

    Example::

        with explained_data_errors(train_files):
            loop.run(stages, num_epochs)
    """
    try:
        yield
    except tf.errors.OpError as error:
        explained = explain_data_error(error, files)
        if explained is None:
            raise
        raise explained from None


class RecordChecker:
    """The record checks of one task, handed to the training runtime by an experiment.

    Args:
        task: ``"detection"`` or ``"classification"``.
    """

    def __init__(self, task: str):
        self.task = task

    def check(self, files: FilesArg) -> RecordCheck:
        """Pre-flight: :func:`check_record_files` for this task."""
        return check_record_files(files, self.task)

    def explain(self, error: BaseException, files: FilesArg) -> Optional[DatasetError]:
        """:func:`explain_data_error`: a one-line user error, or None (not a data error)."""
        return explain_data_error(error, files)
