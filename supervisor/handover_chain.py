"""The handover log's verifier: walk the hash chain and name the first entry tampered with.

``verify`` reads ``handovers.jsonl`` (format: ``handover_entries``) and checks
that every line parses, its ``seq`` is its line index and its ``prev`` is the
sha256 of the line before; the first line that breaks this is named with what
happened to it (edited, removed, reordered, duplicated). ``head`` is the
(seq, sha256) of the last complete line: the anchor to publish.

Integrity limit: an edit to line k is caught by line k+1's ``prev``, so the
last entry is protected only by an external anchor: publish ``head()`` (e.g.
in the supervisor's status) and pass it to ``verify(path, anchor=...)``.
Anyone able to rewrite the whole file can re-chain it; the anchor catches that.

Boundary: reads only (the CLI runs it with the supervisor stopped); a torn
last fragment is reported, never repaired here (the writer repairs it when it
opens the log). A read error becomes ``HomeError``.
"""

from __future__ import annotations

import dataclasses
import os

from .handover_entries import ZERO_HASH, digest, parse_entry, read_lines

__all__ = ["VerifyResult", "head", "verify"]


def head(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(seq, sha256 hex) of the last complete line; (-1, ZERO_HASH) for an empty or missing log."""
    lines, _ = read_lines(path)
    if not lines:
        return -1, ZERO_HASH
    entry = parse_entry(lines[-1])
    return (entry["seq"] if entry else len(lines) - 1), digest(lines[-1])


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number
    bad_seq: int | None = None  # the seq that line holds, when it parses
    reason: str = ""  # "line L (seq S): what is wrong", or a summary when ok
    torn: bool = False  # a torn last fragment (crash mid-append), repaired at the next open
    head_seq: int = -1
    head_hash: str = ZERO_HASH


def verify(path: str | os.PathLike[str], *, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Check the chain; name the first entry edited, removed or reordered.

    ``anchor`` is a (seq, sha256 or its prefix) published earlier by ``head()``:
    it extends the check to the last entry and to entries cut off the end.
    """
    lines, torn = read_lines(path)
    entries = [parse_entry(line) for line in lines]
    hashes = [digest(line) for line in lines]
    n = len(lines)

    def bad(i: int, what: str) -> VerifyResult:  # i: 0-based index of the bad line
        seq = entries[i]["seq"] if entries[i] else None
        label = f"seq {seq}" if seq is not None else f"expected seq {i}"
        return VerifyResult(False, n, i + 1, seq, f"line {i + 1} ({label}): {what}", bool(torn))

    for i, entry in enumerate(entries):
        if entry is None:
            return bad(i, "not a valid entry (edited or corrupt)")
        expected_prev = hashes[i - 1] if i else ZERO_HASH
        linked, in_order = entry["prev"] == expected_prev, entry["seq"] == i
        if linked and in_order:
            continue
        if linked:
            return bad(i, f"edited: seq should be {i}, though its prev still links")
        if in_order:
            if i == 0:
                return bad(0, "edited: the first entry's prev is not 64 zeros")
            return bad(i - 1, f"edited: its hash no longer matches the prev of line {i + 1}")
        later = [j for j in range(i + 1, n) if entries[j] and entries[j]["seq"] == i]
        if later:
            return bad(i, f"out of order: seq {i} belongs here and is at line {later[0] + 1}")
        if entry["seq"] > i:
            return bad(i, f"entries removed before it: seq {i}..{entry['seq'] - 1} missing")
        return bad(i, f"out of order or duplicated: seq {i} belongs here")
    if anchor is not None:
        seq, digest_prefix = anchor
        if len(digest_prefix) < 12:
            raise ValueError("an anchor's hash needs at least 12 hex digits")
        if seq >= n:
            return VerifyResult(False, n, n + 1, None, f"line {n + 1} (seq {n}): removed: the log "
                                f"ends at seq {n - 1} but the published head is seq {seq}", bool(torn))
        if seq >= 0 and not hashes[seq].startswith(digest_prefix.lower()):
            return bad(seq, "edited or replaced: its hash does not match the published head")
    head_seq, head_hash = (n - 1, hashes[-1]) if n else (-1, ZERO_HASH)
    note = f"; a torn last fragment of {len(torn)} bytes (repaired at the next open)" if torn else ""
    return VerifyResult(True, n, None, None, f"chain ok: {n} entries{note}", bool(torn),
                        head_seq, head_hash)
