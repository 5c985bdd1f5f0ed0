"""EarlierTries (the compact index a retry reads the ledger into) answers as the frame of every
claimed number did before it: the same statuses, ids, failures and claim times, and the same
split by ``resume()``, on random mixes of claims and outcomes."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.sms.model import ACCEPTED, FAILED, IN_FLIGHT, UNKNOWN, text_hash
from airflow_provider_voxsms.sms.resume import resume
from airflow_provider_voxsms.storage.earlier import COLUMNS, ClaimsReader, EarlierTries

TEXTS = ["hi", "bye", "Hi {name}, 50% off"]
NUMBERS = [str(447700900000 + i) for i in range(40)] + ["12025550123", "861391234567800"]
FAILURES = [(509, "A2P SMS disabled"), (127, "no money"), (None, "validation"), (404, None)]


# -- the frame earlier builds built (the reference) ---------------------------------------------


def reference(claims: list, outcomes: list) -> pd.DataFrame:
    """``SendLedger.previous`` as it was: one pandas row per number and text claimed."""
    numbers, hashes, claimed_at = [], [], []
    times = pd.to_datetime(pd.Series([at for _, _, at in claims], dtype=object), utc=True)
    seconds = ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).tolist()
    for (tx, raw, _), at in zip(claims, seconds, strict=True):
        batch = json.loads(raw)
        numbers += batch
        hashes += [tx] * len(batch)
        claimed_at += [at] * len(batch)
    one_text = len({tx for tx, _, _ in claims}) <= 1

    def keys_of(numbers, hashes):
        if one_text:
            return pd.Index(numbers, dtype=object, name="destination_number")
        return pd.Index([n + h for n, h in zip(numbers, hashes, strict=True)], name="key")

    n = len(numbers)
    found = pd.DataFrame(
        {
            "destination_number": pd.Series(numbers, dtype=object),
            "text_hash": pd.Series(hashes, dtype=object),
            "status": IN_FLIGHT,
            "message_id": pd.array([None] * n, dtype="Int64"),
            "error_code": pd.array([None] * n, dtype="Int64"),
            "error_description": pd.Series([None] * n, dtype=object),
            "claimed_at": pd.Series(claimed_at, dtype="float64"),
        }
    ).set_index(keys_of(numbers, hashes))
    found = found[~found.index.duplicated(keep="first")]
    parsed = [(tx, as_columns(json.loads(raw))) for tx, raw in outcomes]
    for status in (UNKNOWN, FAILED, ACCEPTED):  # rising precedence: the most definite last
        fields: list[list] = [[], [], []]
        hashes = []
        for tx, payload in parsed:
            if columns := payload.get(status):
                for values, column in zip(fields, columns, strict=False):
                    values += column
                hashes += [tx] * len(columns[0])
        if not hashes:
            continue
        where = found.index.get_indexer(keys_of(fields[0], hashes))
        mine = where >= 0
        rows = where[mine]
        found.iloc[rows, found.columns.get_loc("status")] = status
        if status == ACCEPTED:
            ids = pd.array(fields[1], dtype="Int64")[mine]
            found.iloc[rows, found.columns.get_loc("message_id")] = ids
        if status == FAILED:
            codes = pd.array(fields[1], dtype="Int64")[mine]
            found.iloc[rows, found.columns.get_loc("error_code")] = codes
            whys = pd.Series(fields[2], dtype=object)[mine].array
            found.iloc[rows, found.columns.get_loc("error_description")] = whys
    return found[list(COLUMNS)]


def as_columns(payload: dict) -> dict:
    if payload.pop("v", None) == 2:
        return payload
    return {s: [list(c) for c in zip(*rows, strict=True)] for s, rows in payload.items() if rows}


# -- random ledgers ------------------------------------------------------------------------------


def random_ledger(rng: random.Random) -> tuple[list, list]:
    """Claim rows (in claim order) and outcome rows, as a ledger's tables hold them: numbers
    claimed again in settle rounds, several texts or one, outcomes as columns or as rows."""
    texts = rng.sample(TEXTS, rng.randint(1, len(TEXTS)))
    claims, outcomes, second = [], [], 0
    for _ in range(rng.randint(1, 12)):
        text = rng.choice(texts)
        numbers = rng.sample(NUMBERS, rng.randint(1, 8))
        second += rng.choice([0, 0, 1, 7])  # several claims share a second
        claims.append((text_hash(text), json.dumps(numbers), f"2026-01-05 10:00:{second:02d}"))
        answered = [n for n in numbers if rng.random() < 0.8]
        if rng.random() < 0.2:  # an outcome for a number nobody claimed: ignored
            answered.append("449999999999")
        if answered:
            outcomes.append((text_hash(text), random_outcome(rng, answered)))
    rng.shuffle(outcomes)  # the outcomes table has no order
    return claims, outcomes


def random_outcome(rng: random.Random, numbers: list[str]) -> str:
    entries: dict[str, list] = {ACCEPTED: [], FAILED: [], UNKNOWN: []}
    for number in numbers:
        status = rng.choice([ACCEPTED, ACCEPTED, FAILED, UNKNOWN])
        if status == ACCEPTED:
            entries[status].append([number, rng.randint(1, 2**53)])
        elif status == FAILED:
            entries[status].append([number, *rng.choice(FAILURES)])
        else:
            entries[status].append([number, "connection reset"])
    entries = {status: rows for status, rows in entries.items() if rows}
    if rng.random() < 0.5:  # written as rows, before version 2
        return json.dumps(entries)
    columns = {s: [list(c) for c in zip(*rows, strict=True)] for s, rows in entries.items()}
    return json.dumps({"v": 2, **columns})


def index_of(claims: list, outcomes: list, rng: random.Random) -> EarlierTries:
    """The index, fed in blocks of random size as ``fetchmany`` gives them."""
    reader = ClaimsReader()
    for block in blocks(claims, rng):
        reader.add(block)
    index = reader.finish()
    for block in blocks(outcomes, rng):
        index.add_outcomes(block)
    return index


def blocks(rows: list, rng: random.Random):
    start = 0
    while start < len(rows):
        size = rng.randint(1, 4)
        yield rows[start : start + size]
        start += size


def recipients(rng: random.Random) -> pd.DataFrame:
    """A chunk of a retry: numbers claimed or not, with texts claimed or not."""
    pairs = {(rng.choice(NUMBERS), rng.choice(TEXTS)) for _ in range(rng.randint(0, 60))}
    return pd.DataFrame(sorted(pairs), columns=["phone", "text"])


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(300))
def test_the_index_answers_as_the_frame_of_every_claimed_number_did(seed):
    rng = random.Random(seed)
    claims, outcomes = random_ledger(rng)
    old = reference(claims, outcomes)
    index = index_of(claims, outcomes, rng)
    valid = recipients(rng)

    new = index.of(valid)
    assert list(new.columns) == list(COLUMNS)
    assert new.index.is_unique
    expected = old.reset_index(drop=True)
    expected = expected.set_index(expected["destination_number"] + expected["text_hash"])
    asked = valid["phone"] + valid["text"].map(text_hash)
    assert set(new.index) == set(expected.index) & set(asked), "exactly the rows asked about"
    for key, row in new.iterrows():
        was = expected.loc[key]
        assert (row.status, row.claimed_at) == (was.status, was.claimed_at), key
        if row.status == ACCEPTED:
            assert row.message_id == was.message_id, key
        if row.status == FAILED:
            code = None if pd.isna(was.error_code) else int(was.error_code)
            assert (row.error_code if pd.notna(row.error_code) else None) == code, key
            assert row.error_description == was.error_description, key

    assert split(resume(valid, new, settle_delay_s=5)) == split(
        resume(valid, old, settle_delay_s=5)
    )
    statuses = old["status"]
    assert len(index) == len(old)
    assert index.settled == int(statuses.isin([ACCEPTED, FAILED]).sum())
    assert index.open == int(statuses.isin([IN_FLIGHT, UNKNOWN]).sum())


def split(resumed) -> tuple:
    """What a retry does with the rows: sends, reports as settled, looks up as open."""
    settled = resumed.settled
    return (
        sorted(map(tuple, resumed.to_send[["phone", "text"]].to_numpy().tolist())),
        sorted(settled.accepted) if settled else [],
        sorted(settled.failed, key=repr) if settled else [],
        sorted((o.number, o.text, o.since, o.ready_at) for o in resumed.open_numbers),
    )


def test_an_empty_ledger_and_an_empty_chunk_know_nothing():
    empty = EarlierTries.empty()
    assert len(empty) == 0 and empty.settled == 0 and empty.first_claimed_at is None
    rows = pd.DataFrame({"phone": ["447700900001"], "text": ["hi"]})
    assert empty.of(rows).empty and list(empty.of(rows).columns) == list(COLUMNS)
    claims = [(text_hash("hi"), '["447700900001"]', "2026-01-05 10:00:00")]
    index = index_of(claims, [], random.Random(0))
    assert index.of(rows.iloc[:0]).empty
    assert index.of(rows)["status"].tolist() == [IN_FLIGHT]


def test_a_million_numbers_take_tens_of_bytes_each():
    """The retry of a million-recipient campaign holds its ledger in ~40 MB, not a frame of
    Python strings (~300 MB)."""
    n, per_claim = 1_000_000, 100
    numbers = np.arange(447700000000, 447700000000 + n).astype(str)
    tx = text_hash("hi")
    reader = ClaimsReader()
    for start in range(0, n, per_claim * 1000):  # blocks of 1,000 claim rows
        reader.add(
            [
                (tx, json.dumps(numbers[i : i + per_claim].tolist()), "2026-01-05 10:00:00")
                for i in range(start, min(start + per_claim * 1000, n), per_claim)
            ]
        )
    index = reader.finish()
    accepted = json.dumps({"v": 2, "accepted": [numbers[:1000].tolist(), list(range(1000))]})
    index.add_outcomes([(tx, accepted)])
    assert len(index) == n and index.settled == 1000
    assert index.nbytes / n < 40
    chunk = pd.DataFrame({"phone": numbers[:2000], "text": "hi"})
    found = index.of(chunk)
    assert len(found) == 2000 and (found["status"] == ACCEPTED).sum() == 1000
