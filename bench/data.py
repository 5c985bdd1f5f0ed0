"""Recipient lists for the benchmarks: unique clean numbers, and a realistic messy mix.

Numbers are UK mobiles in the 07400-07409 block (valid for ``phonenumbers`` with region GB), made
unique by a stride through 10**7 suffixes, so any N up to ten million is reproducible and cheap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEXT = "Your order has shipped. Track it at https://example.test/t"
SENDER = "VoxDemo"  # a SenderID the emulator accepts
REGION = "GB"
_BASE = 447_400_000_000  # 44 740x xxxxxx
_SPAN = 10**7
_STRIDE = 7919  # prime, coprime with 10**7: i -> i * stride mod 10**7 is a permutation

#: What the mixed input holds, as shares of the rows (the rest are plain international digits).
MIX = {
    "'+44 7400 123456' (separators)": 0.15,
    "'0044-7400-123-456' (00 prefix, dashes)": 0.05,
    "'+44 (0)7400 123456' (trunk zero)": 0.05,
    "'07400 123456' (national, parsed by phonenumbers)": 0.02,
    "duplicates (an earlier number, another format)": 0.05,
    "invalid ('n/a', too short, letters, empty)": 0.03,
}
MIX_DESCRIPTION = "; ".join(f"{share:.0%} {what}" for what, share in MIX.items()) + (
    f"; {1 - sum(MIX.values()):.0%} bare international digits '447400123456'"
)


def unique_digits(n: int, offset: int = 0) -> np.ndarray:
    """``n`` distinct 12-digit numbers ``44 740x xxxxxx`` as int64."""
    if n + offset > _SPAN:
        raise ValueError(f"at most {_SPAN} distinct numbers")
    return _BASE + (np.arange(offset, offset + n, dtype=np.int64) * _STRIDE) % _SPAN


def unique_numbers(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct numbers as digit strings (what the vendor client is given)."""
    return unique_digits(n, offset).astype(str).tolist()


def clean_frame(n: int, offset: int = 0) -> pd.DataFrame:
    """``n`` distinct recipients in international format ("+4474..."), one per row."""
    phones = ["+" + d for d in unique_numbers(n, offset)]
    return pd.DataFrame({"phone": phones, "customer_id": np.arange(n)})


def mixed_frame(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` rows in the formats real exports contain, in the shares of :data:`MIX`."""
    rng = np.random.default_rng(seed)
    digits = unique_numbers(n)
    out = np.array(digits, dtype=object)
    shares = [1 - sum(MIX.values()), *MIX.values()]
    kind = rng.choice(len(shares), size=n, p=shares)
    rules = {
        1: lambda d: f"+{d[:2]} {d[2:6]} {d[6:]}",
        2: lambda d: f"00{d[:2]}-{d[2:6]}-{d[6:9]}-{d[9:]}",
        3: lambda d: f"+{d[:2]} (0){d[2:6]} {d[6:]}",
        4: lambda d: f"0{d[2:6]} {d[6:]}",
    }
    for code, rule in rules.items():
        rows = np.flatnonzero(kind == code)
        out[rows] = [rule(digits[i]) for i in rows]
    rows = np.flatnonzero(kind == 5)
    earlier = (rng.random(len(rows)) * np.maximum(rows, 1)).astype(np.int64)
    out[rows] = [f"+{digits[i][:2]} {digits[i][2:]}" for i in earlier]
    rows = np.flatnonzero(kind == 6)
    junk = np.array(["n/a", "12345", "+44 7400 12345x", ""], dtype=object)
    out[rows] = junk[rng.integers(0, len(junk), len(rows))]
    return pd.DataFrame({"phone": out, "customer_id": np.arange(n)})
