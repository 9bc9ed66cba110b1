"""Shamir secret sharing over the ristretto255 scalar field, with error-tolerant reconstruction.

A scheme on top of modular integer arithmetic (Python ints modulo the group order), not a primitive.
:func:`robust_reconstruct` runs Berlekamp-Welch decoding so that shares that are not on the polynomial
(the random shares of synthetic vouchers) are found and set aside: with ``n`` shares of which ``e`` are
wrong it recovers a degree ``< k`` polynomial when ``n >= k + 2e``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from .group import ORDER

P = ORDER
Share = tuple[int, int]


def random_polynomial(secret: int, k: int) -> list[int]:
    """Coefficients ``[secret, a1, ..., a_{k-1}]`` (degree ``k - 1``) with uniformly random ``a_i``."""
    if k < 1:
        raise ValueError("threshold must be >= 1")
    return [secret % P] + [secrets.randbelow(P) for _ in range(k - 1)]


def evaluate(coefficients: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % P
    return acc


def interpolate_at_zero(shares: Sequence[Share]) -> int:
    """Lagrange interpolation at 0 (the shares' x values must be distinct and non-zero)."""
    total = 0
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                num = num * (-xj) % P
                den = den * (xi - xj) % P
        total = (total + yi * num * pow(den, -1, P)) % P
    return total


def interpolate_polynomial(shares: Sequence[Share]) -> list[int]:
    """Coefficients of the unique polynomial of degree ``< len(shares)`` through ``shares``."""
    k = len(shares)
    coeffs = [0] * k
    for i, (xi, yi) in enumerate(shares):
        basis = [1]  # prod_{j != i} (x - xj), lowest degree first
        den = 1
        for j, (xj, _) in enumerate(shares):
            if i == j:
                continue
            basis = [(a - xj * b) % P for a, b in zip([0, *basis], [*basis, 0], strict=True)]
            den = den * (xi - xj) % P
        scale = yi * pow(den, -1, P) % P
        coeffs = [(c + scale * b) % P for c, b in zip(coeffs, basis, strict=True)]
    return coeffs


def _solve(rows: list[list[int]], n_unknowns: int) -> list[int] | None:
    """One solution of the augmented linear system ``rows`` mod P (free variables set to 0)."""
    m = [r[:] for r in rows]
    pivots: list[int] = []
    r = 0
    for c in range(n_unknowns):
        piv = next((i for i in range(r, len(m)) if m[i][c] % P), None)
        if piv is None:
            continue
        m[r], m[piv] = m[piv], m[r]
        inv = pow(m[r][c], -1, P)
        m[r] = [v * inv % P for v in m[r]]
        for i in range(len(m)):
            if i != r and m[i][c]:
                f = m[i][c]
                m[i] = [(a - f * b) % P for a, b in zip(m[i], m[r], strict=True)]
        pivots.append(c)
        r += 1
        if r == len(m):
            break
    for i in range(r, len(m)):
        if m[i][n_unknowns] % P:
            return None  # inconsistent
    sol = [0] * n_unknowns
    for i, c in enumerate(pivots):
        sol[c] = m[i][n_unknowns]
    return sol


def _poly_divmod(num: list[int], den: list[int]) -> tuple[list[int], list[int]]:
    """Polynomial division mod P; coefficient lists are lowest degree first."""
    num = num[:]
    while len(den) > 1 and den[-1] == 0:
        den = den[:-1]
    inv = pow(den[-1], -1, P)
    q = [0] * max(1, len(num) - len(den) + 1)
    for i in range(len(num) - len(den), -1, -1):
        coef = num[i + len(den) - 1] * inv % P
        q[i] = coef
        for j, d in enumerate(den):
            num[i + j] = (num[i + j] - coef * d) % P
    return q, num[: len(den) - 1]


def robust_reconstruct(shares: Sequence[Share], k: int) -> list[int] | None:
    """The degree ``< k`` polynomial through all but at most ``(n - k) // 2`` of ``shares``, or None.

    Berlekamp-Welch: find ``E`` (monic, degree ``e``) and ``Q`` (degree ``< k + e``) with
    ``Q(x_i) = y_i E(x_i)`` for every share; then ``f = Q / E``. The answer is accepted only when at least
    ``max(k, n - e)`` shares lie on ``f``. Shares must have distinct x values.
    """
    n = len(shares)
    if n < k:
        return None
    e = (n - k) // 2
    while e >= 0:
        unknowns = k + e + e  # q_0..q_{k+e-1}, eps_0..eps_{e-1}
        rows = []
        for x, y in shares:
            row = [pow(x, j, P) for j in range(k + e)]
            row += [(-y * pow(x, j, P)) % P for j in range(e)]
            row.append(y * pow(x, e, P) % P)
            rows.append(row)
        sol = _solve(rows, unknowns)
        if sol is not None:
            q_poly = sol[: k + e]
            e_poly = [*sol[k + e :], 1]
            f, rem = _poly_divmod(q_poly, e_poly)
            if not any(rem):
                f = (f + [0] * k)[:k]
                agree = sum(1 for x, y in shares if evaluate(f, x) == y)
                if agree >= max(k, n - e):
                    return f
        e -= 1
    return None
