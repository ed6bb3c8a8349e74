"""The traffic split, defined once and exactly as nginx's ``split_clients`` computes it.

The built-in router and the nginx traffic engine must send the same request to the same side,
so both use nginx's rule: the key is hashed with nginx's MurmurHash2 (``ngx_murmur_hash2``,
32-bit, seed 0), and a request goes to the candidate when the hash is below
``weight_bp * 0xffffffff // 10000`` (``split_clients`` with the candidate's percentage first,
0.01 % resolution). The key: ``X-Request-ID`` when present and not blank, else
``"<client address> <path>"`` (nginx: ``$remote_addr $uri``).
"""

from __future__ import annotations

BUCKETS = 10_000
"""Weights are in basis points: 0.01 % resolution, as ``split_clients`` percentages."""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur_hash2(data: bytes) -> int:
    """nginx's ``ngx_murmur_hash2`` (MurmurHash2, 32-bit, seed 0, little-endian blocks)."""
    length = len(data)
    h = length & _MASK
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[full:]
    if tail:
        if len(tail) == 3:
            h ^= tail[2] << 16
        if len(tail) >= 2:
            h ^= tail[1] << 8
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def request_key(request_id: str | None, client_host: str, path: str) -> str:
    """The split key: ``X-Request-ID`` when present (and not blank), else ``"<client> <path>"``."""
    if request_id is not None and request_id.strip():
        return request_id
    return f"{client_host} {path}"


def threshold(weight_bp: int) -> int:
    """Hashes below this go to the candidate (``split_clients``' cumulative bound)."""
    return weight_bp * _MASK // BUCKETS


def to_candidate(key: str, weight_bp: int) -> bool:
    """Whether the request with this key goes to the candidate at ``weight_bp``."""
    if weight_bp <= 0:
        return False
    if weight_bp >= BUCKETS:
        return True
    return murmur_hash2(key.encode("utf-8", "surrogateescape")) < threshold(weight_bp)
