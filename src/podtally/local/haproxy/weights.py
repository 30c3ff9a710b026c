"""Server weights for the tracks' split: integers HAProxy accepts that give each track its share.

Pure arithmetic, shared by the configuration (a server line's ``weight``), the runtime API
(``set weight`` when replicas come and go) and the stack's configuration check (a split that
cannot be met closely enough).
"""

from __future__ import annotations

from collections.abc import Sequence

# A server's weight in HAProxy is an integer from 1 to 256 (0 would take it out of rotation).
MAX_WEIGHT = 256
# How far (relative) a track's share may be from the one configured when weights are rounded.
MAX_SHARE_ERROR = 0.01


def server_weights(tracks: Sequence[tuple[float, int]]) -> tuple[list[int], float]:
    """Integer server weights that give each track its share of the requests.

    ``tracks`` holds ``(share, servers)`` pairs (shares in any unit, servers in rotation). Under
    a weighted round robin a track's share is its servers' weight sum over everyone's, so each
    server of a track gets ``share / servers``, scaled to integers in 1..:data:`MAX_WEIGHT`.
    Every scale is tried; the one with the smallest worst relative error of a track's share
    wins, the smallest weights among equals (equal tracks of one server each get weight 1).
    Returns the weight per track (0 for a track without servers) and that worst error.
    """
    live = [(share, count) for share, count in tracks if count > 0 and share > 0]
    if not live:
        return [0 for _ in tracks], 0.0
    total_share = sum(share for share, _ in live)
    ideal = [share / count for share, count in live]
    top = max(ideal)

    def candidate(largest: int) -> tuple[float, list[int]]:
        weights = [max(1, min(MAX_WEIGHT, round(largest * w / top))) for w in ideal]
        total = sum(w * count for w, (_, count) in zip(weights, live, strict=True))
        error = max(
            abs(w * count / total - share / total_share) / (share / total_share)
            for w, (share, count) in zip(weights, live, strict=True)
        )
        return round(error, 12), weights

    # min() keeps the first of equals: the smallest weights.
    best = min((candidate(m) for m in range(1, MAX_WEIGHT + 1)), key=lambda c: c[0])
    chosen = iter(best[1])
    return [next(chosen) if count > 0 and share > 0 else 0 for share, count in tracks], best[0]
