"""Bad recipients and texts through A2PSendSmsOperator.execute() against the emulator over HTTP.

The property, for every input: the operator either sends exactly the valid recipients (each
exactly once, nothing else) or fails before the first request with an input error that names
the problem. Input validation never causes a partial send, and no number the validation let
through is refused by the API as unroutable.

Each example runs the real execute() path (prepare, plan, dispatch through a VoximplantHook over
HTTP) with a fake task instance; the emulator is reset inside the test body because
function-scoped fixtures are not reset between Hypothesis examples. The expected outcome is
computed per value by a small reference below (``phonenumbers`` where a number is meant to be
valid, unicodedata for digits), not by the code under test.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from string import Formatter

import numpy as np
import pandas as pd
import phonenumbers
import pytest
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException
from dag_runs import xcom
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_voxsms.errors import InputError
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.sms.values import is_null_marker

SENDER = "VoxDemo"
EMULATED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNT_KEYS = (
    "accepted",
    "failed",
    "unknown",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
)


# -- harness -------------------------------------------------------------------------------------


@dataclass
class FakeTI:
    """Records XCom pushes the way a task instance would take them (one push per key)."""

    pushed: dict = field(default_factory=dict)

    def xcom_push(self, key, value):
        assert key not in self.pushed, f"XCom {key!r} pushed twice"
        self.pushed[key] = value


@dataclass
class Run:
    summary: dict | None
    error: BaseException | None
    ti: FakeTI
    messages: list[dict]
    stats: dict


def execute(server, recipients, **kwargs) -> Run:
    """Reset the emulator, run the operator's execute() once, and collect what the API saw."""
    server.state.reset()
    kwargs.setdefault("src_number", SENDER)
    if "text_column" not in kwargs:
        kwargs.setdefault("text", "hi")
    ti = FakeTI()
    summary = error = None
    try:
        op = A2PSendSmsOperator(task_id="send", recipients=recipients, **kwargs)
        summary = op.execute({"ti": ti})
    except Exception as exc:
        error = exc
    return Run(summary, error, ti, server.state.messages_snapshot(), server.state.stats_snapshot())


def assert_refused_before_sending(run: Run, *words: str) -> None:
    """An input error, raised before the first request, whose message names the problem."""
    assert run.error is not None, f"expected an input error, got {run.summary}"
    if isinstance(run.error, AirflowFailException):  # raised by execute(): never retried
        assert isinstance(run.error.__cause__, InputError), repr(run.error.__cause__)
    else:  # raised by __init__, when the DAG file is parsed
        assert isinstance(run.error, ValueError), repr(run.error)
    message = str(run.error)
    for word in words:
        assert word.lower() in message.lower(), message
    assert run.stats["requests"] == 0, run.stats
    assert run.messages == []
    assert run.ti.pushed == {}, "nothing is reported for a run that never started"


def assert_sent_exactly(run: Run, expected: Counter, rows: int) -> None:
    """Every expected (number, text) accepted exactly once; nothing else; the counts add up."""
    assert run.error is None, repr(run.error)
    got = Counter((m["destination_number"], m["text"]) for m in run.messages)
    assert set(got.values()) <= {1}, f"sent more than once: {[k for k, n in got.items() if n > 1]}"
    assert set(got) == set(expected), (
        f"missing {set(expected) - set(got)}; unexpected {set(got) - set(expected)}"
    )
    s = run.summary
    assert s["accepted"] == len(got) == run.stats["accepted"]
    assert s["failed"] == 0 and s["unknown"] == 0, "validation let through a number the API refused"
    assert run.stats["failed_numbers"] == 0
    assert sum(s[k] for k in COUNT_KEYS) == s["recipients"] == rows
    assert s["valid"] == len(got)
    accepted = run.ti.pushed["accepted_numbers"]
    assert Counter(accepted["destination_number"]) == Counter(n for n, _ in got)
    assert set(accepted["message_id"]) == {m["message_id"] for m in run.messages}
    failed = run.ti.pushed["failed_numbers"]
    assert len(failed) == s["invalid"] and set(failed["stage"]) <= {"validation"}
    assert run.ti.pushed["unknown_numbers"].empty


# -- reference ("oracle") ------------------------------------------------------------------------

# Real, valid numbers (phonenumbers says so) in digits-only E.164.
POOL = [f"4474433322{i:02d}" for i in range(10, 40)] + ["12015550123", "4915123456789"]
assert all(phonenumbers.is_valid_number(phonenumbers.parse("+" + n)) for n in POOL)


def _fullwidth(digits: str) -> str:
    return "".join(chr(0xFF10 + int(d)) for d in digits)


def _arabic_indic(digits: str) -> str:
    return "".join(chr(0x0660 + int(d)) for d in digits)


# Ways to write a valid number that must all come out as its digits.
SPELLINGS = [
    lambda n: n,
    lambda n: "+" + n,
    lambda n: "00" + n,
    lambda n: f"+{n[:2]} {n[2:6]} {n[6:]}",
    lambda n: f"(+{n[:2]}) {n[2:6]}-{n[6:]}",
    lambda n: f"  +{n[:2]}.{n[2:6]}.{n[6:]}\t",
    lambda n: f"+{n[:2]}\u00a0{n[2:6]}\u2011{n[6:]}",  # no-break space, non-breaking hyphen
    lambda n: f"+{n[:2]}\u200b{n[2:]}",  # zero-width space
    lambda n: "+" + _fullwidth(n),
    lambda n: "\uff0b" + n,  # full-width plus
    lambda n: _arabic_indic(n),
    lambda n: n + ".0",
    lambda n: int(n),
    lambda n: float(n),
    lambda n: np.int64(n),
    lambda n: np.float64(n),
]

# Values that are never a phone number.
REFUSED = [
    None,
    float("nan"),
    float("inf"),
    float("-inf"),
    pd.NA,
    "",
    "   ",
    "\t\n",
    "nan",
    "None",
    "null",
    True,
    False,
    -447443332212,
    447443332212.5,
    4.47443332212e11 + 0.25,
    "4.47443332212e11",
    "+44 7443 33221x",
    "+44 7443 ++332212",
    "12345",
    "1234567890123456",
    "+",
    "00",
    "0800 123 456",  # national format without default_region
    b"447443332212",
    ["447443332212"],
    {"phone": "447443332212"},
    # Numerals that are not decimal digits: phonenumbers refuses them, so must we.
    "447443332212\u00b2",  # superscript two
    "447443332212\u2460",  # circled digit one
    "4474433322\U00010a402",  # Kharosthi digit one
    "447443332212\u1369",  # Ethiopic digit one
    "4474\u00bd43332212",  # vulgar fraction one half
]


def decimal_digits(value) -> str | None:
    """Digits of a value as phonenumbers reads them: Unicode decimal digits only; None if none."""
    if isinstance(value, bool | np.bool_) or value is None:
        return None
    if isinstance(value, int | np.integer):
        return str(int(value)) if value >= 0 else None
    if isinstance(value, float | np.floating):
        ok = math.isfinite(value) and value >= 0 and value == math.floor(value)
        return str(int(value)) if ok else None
    if isinstance(value, str):
        return "".join(
            str(unicodedata.decimal(ch))
            for ch in value
            if unicodedata.decimal(ch, None) is not None
        )
    return None


def is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


def plausible(number: str, value) -> bool:
    """What an arbitrary value may at most turn into: 8-15 ASCII digits with a real country
    code, every digit taken in order from the value's own decimal digits."""
    if not (number.isascii() and number.isdigit() and 8 <= len(number) <= 15):
        return False
    if not any(number.startswith(str(cc)) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        return False
    digits = decimal_digits(value)
    return digits is not None and is_subsequence(number, digits)


# -- strategies ----------------------------------------------------------------------------------

TRICKY = "0123456789+-() .\u00a0\u2011\u200b\u0664\uff14\u00b2\u2460\U00010a40\u1369ax#\x00\ud800"


@st.composite
def valid_values(draw):
    number = draw(st.sampled_from(POOL))
    return draw(st.sampled_from(SPELLINGS))(number), ("valid", number)


refused_values = st.sampled_from(REFUSED).map(lambda v: (v, ("refused", None)))
arbitrary_values = st.one_of(
    st.text(max_size=20),  # every Unicode category, lone surrogates included
    st.text(st.sampled_from(TRICKY), min_size=8, max_size=18),
    st.integers(min_value=-(10**16), max_value=10**17),
    st.floats(allow_nan=True, allow_infinity=True),
).map(lambda v: (v, ("any", None)))
tagged_values = st.one_of(valid_values(), refused_values, arbitrary_values)
CONTAINERS = ["list", "tuple", "series", "frame", "dicts"]


def wrap(values: list, container: str):
    if container == "list":
        return list(values)
    if container == "tuple":
        return tuple(values)
    if container == "series":
        return pd.Series(values, dtype=object, index=np.arange(len(values)) * 7 + 3)
    if container == "frame":
        return pd.DataFrame(
            {
                "name": [f"n{i}" for i in range(len(values))],
                "phone": pd.Series(values, dtype=object),
            }
        )
    return [{"phone": v, "row": i} for i, v in enumerate(values)]


def check_phones(run: Run, tagged: list, text: str = "hi") -> None:
    """The sent numbers against the reference, value by value."""
    assert run.error is None, repr(run.error)
    sent = Counter(m["destination_number"] for m in run.messages)
    assert set(sent.values()) <= {1}, f"sent twice: {[n for n, c in sent.items() if c > 1]}"
    must = {number for _, (kind, number) in tagged if kind == "valid"}
    assert must <= set(sent), f"valid numbers not sent: {must - set(sent)}"
    arbitrary = [value for value, (kind, _) in tagged if kind == "any"]
    extra = set(sent) - must
    for number in extra:
        assert any(plausible(number, v) for v in arbitrary), (
            f"sent {number!r}, which no input value can be: {[v for v, _ in tagged]!r}"
        )
    expected = Counter({(n, text): 1 for n in sent})
    assert_sent_exactly(run, expected, len(tagged))
    assert run.summary["invalid"] >= sum(1 for _, (kind, _) in tagged if kind == "refused")


# -- property tests ------------------------------------------------------------------------------


@EMULATED
@given(tagged=st.lists(tagged_values, max_size=60), container=st.sampled_from(CONTAINERS))
@example(tagged=[(v, ("refused", None)) for v in REFUSED], container="list")
@example(tagged=[(v, ("refused", None)) for v in REFUSED], container="dicts")
@example(
    tagged=[(s(n), ("valid", n)) for s in SPELLINGS for n in POOL[:2]],
    container="frame",
)
def test_any_recipients_send_exactly_the_valid_numbers_once(voximplant_conn, tagged, container):
    values = [v for v, _ in tagged]
    run = execute(voximplant_conn, wrap(values, container), batch_size=7)
    dicts = [isinstance(v, dict) for v in values]
    if container in ("list", "tuple") and any(dicts) and not all(dicts):
        # A dict among plain numbers reads as a row-of-dicts input gone wrong: refused whole.
        assert_refused_before_sending(run, "mixes dicts and plain values")
    elif container in ("list", "tuple") and dicts and all(dicts):
        # Only dicts: a list of rows. Each row is valid exactly when it has a valid phone.
        check_phones(run, [(v.get("phone"), ("any", None)) for v in values])
    else:
        check_phones(run, tagged)


def template_problem(text: str) -> str | None:
    """The documented template rules for one text= given with a plain list of numbers: braces
    must pair up, placeholders are plain names, and a list has no columns to fill them from.
    A text without placeholders is sent as it is (``{{`` included)."""
    try:
        pieces = list(Formatter().parse(text))
    except ValueError:
        return "brace"
    fields = [(name, spec, conv) for _, name, spec, conv in pieces if name is not None]
    if not fields:
        return None
    if any(
        not name.isidentifier() or not name.isascii() or spec or conv for name, spec, conv in fields
    ):
        return "plain column name"
    return "placeholders"


def text_problem(text, *, as_template: bool = False) -> str | None:
    """The documented text rules, written out plainly: which word the error must contain."""
    if text is None:
        return "exactly one of text="
    if not isinstance(text, str):
        return "not a string"
    if as_template and (problem := template_problem(text)):
        return problem
    if not text.strip():
        return "empty"
    if len(text) > 1600:
        return "too long"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return "surrogate"
    if any((ord(ch) < 0x20 and ch not in "\t\n\r\f") or 0x7F <= ord(ch) <= 0x9F for ch in text):
        return "control character"
    return None


EDGE_TEXTS = [
    "",
    " ",
    "\t\n\r ",
    "\u3000",  # ideographic space: whitespace only
    "a" * 1600,
    "a" * 1601,
    "€" * 1600,  # GSM-7 extension: 3200 septets, still 1600 characters
    "€" * 1601,
    "{[~]}|^\\€\f",
    "😀" * 1600,  # astral: 3200 UTF-16 units
    "😀" * 1601,
    "Привет, 世界 👋🏽",
    "a\ud800b",
    "\udfff",
    "a\x00b",
    "esc\x1b[0m",
    "del\x7f",
    "nel\x85",
    "line\r\nbreak\ttab",
    "\u200b",  # zero-width space: not whitespace to str.strip
    "  padded  ",
    "%s {{ ds }} &cmd=GetAccountInfo;447443332299",
    "Hi {first_name}",  # a placeholder: a plain list of numbers has no columns
    "Hi {a.b} {0} {x:>3} {y!r}",
    "unpaired { brace",
    "closing } alone",
    "{{literal}} braces, no placeholder",
    None,
    7,
]
texts = st.one_of(
    st.sampled_from(EDGE_TEXTS),
    st.text(max_size=30),
    st.text(st.sampled_from("a€😀 \x00\ud800"), min_size=1595, max_size=1605),
)


@EMULATED
@given(text=texts)
def test_one_text_is_sent_verbatim_or_refused_before_sending(voximplant_conn, text):
    numbers = POOL[:3] + ["not a number", POOL[0]]
    run = execute(voximplant_conn, numbers, text=text)
    problem = text_problem(text, as_template=True)
    if problem is not None:
        assert_refused_before_sending(run, "text", problem)
    else:
        assert_sent_exactly(run, Counter({(n, text): 1 for n in POOL[:3]}), len(numbers))
        assert {m["text"] for m in run.messages} == {text}, "the text changed on the way"


@EMULATED
@given(
    rows=st.lists(
        st.tuples(st.one_of(valid_values(), refused_values), texts), min_size=1, max_size=30
    ),
    as_dicts=st.booleans(),
)
def test_per_row_texts_send_each_good_pair_once(voximplant_conn, rows, as_dicts):
    phones = [value for (value, _), _ in rows]
    row_texts = [t for _, t in rows]
    if as_dicts:
        recipients = [{"phone": p, "text": t} for p, t in zip(phones, row_texts, strict=True)]
    else:
        recipients = pd.DataFrame({"phone": phones, "text": row_texts}, dtype=object)
    # Each good (number, text) pair once: what dedupe="number_and_text" promises (the default,
    # "number", sends a number's first good row only).
    run = execute(
        voximplant_conn, recipients, text_column="text", batch_size=3, dedupe="number_and_text"
    )
    expected = Counter(
        {
            (number, t): 1
            for (_, (kind, number)), t in rows
            if kind == "valid" and text_problem(t) is None and not is_null_marker(t)
        }
    )
    assert_sent_exactly(run, expected, len(rows))


# -- deterministic cases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["447443332212\u00b2", "447443332212\u2460", "4474433322\U00010a402", "447443332212\u1369"],
    ids=["superscript", "circled", "kharosthi", "ethiopic"],
)
def test_numerals_that_are_not_decimal_digits_are_never_sent(voximplant_conn, value):
    """BUG (fixed by the proposed recipients.py diff): pyarrow's isdigit and NFKC let these
    through; the first two became a different number, the last two reached the API, which
    refuses them (506) after the request was spent."""
    run = execute(voximplant_conn, [value, POOL[0]])
    assert_sent_exactly(run, Counter({(POOL[0], "hi"): 1}), 2)
    reason = run.ti.pushed["failed_numbers"]["error_description"].iloc[0]
    assert "unexpected character" in reason, reason


def test_unhashable_text_cells_are_invalid_rows_not_a_crash(voximplant_conn):
    """BUG (fixed by the proposed diff): a list or dict in text_column raised a bare
    ``TypeError: unhashable type`` from pandas.factorize instead of refusing those rows."""
    frame = pd.DataFrame(
        {"phone": POOL[:3], "text": pd.Series([["a"], {"b": 1}, "fine"], dtype=object)}
    )
    run = execute(voximplant_conn, frame, text_column="text")
    assert_sent_exactly(run, Counter({(POOL[2], "fine"): 1}), 3)
    reasons = list(run.ti.pushed["failed_numbers"]["error_description"])
    assert reasons == ["text is not a string: list", "text is not a string: dict"]


@pytest.mark.parametrize(
    "empty",
    [[], (), pd.DataFrame(), pd.DataFrame({"phone": []}), pd.Series([], dtype=object)],
    ids=["list", "tuple", "frame", "frame-with-phone", "series"],
)
@pytest.mark.parametrize("text_column", [None, "text"])
def test_empty_recipients_succeed_with_zero_counts_and_no_request(
    voximplant_conn, empty, text_column
):
    """Decision: nobody to send to is not an error (an empty query result is normal); the task
    succeeds, every count is 0, the output XComs are empty tables, and no request is made."""
    if text_column and isinstance(empty, pd.Series):
        pytest.skip("a Series has no text column: refused by design")
    if text_column and isinstance(empty, pd.DataFrame) and len(empty.columns):
        empty = empty.assign(text=[])
    kwargs = {"text_column": text_column} if text_column else {}
    run = execute(voximplant_conn, empty, **kwargs)
    assert run.error is None, repr(run.error)  # [] with text_column: BUG, see the proposed diff
    assert {
        k: run.summary[k] for k in (*COUNT_KEYS, "recipients", "batches", "valid")
    } == dict.fromkeys((*COUNT_KEYS, "recipients", "batches", "valid"), 0)
    assert run.stats["requests"] == 0
    assert all(frame.empty for frame in run.ti.pushed.values())
    assert set(run.ti.pushed) == {
        "failed_numbers",
        "accepted_numbers",
        "unknown_numbers",
        "deferred_numbers",
    }


def test_an_airflow_that_cannot_store_dataframe_xcoms_fails_before_sending(
    voximplant_conn, monkeypatch
):
    """Airflow 3.2's serialiser refuses pandas 3 DataFrames (seen in a real 3.2.2 run): the
    operator must find out before the first SMS, not after the last one."""
    import airflow.sdk.serde as serde
    from airflow.sdk.exceptions import AirflowFailException

    def refuse(o, *args, **kwargs):
        raise TypeError(f"cannot serialize object of type {type(o)}")

    monkeypatch.setattr(serde, "serialize", refuse)
    run = execute(voximplant_conn, POOL[:3])
    assert isinstance(run.error, AirflowFailException), repr(run.error)
    assert "pandas<3" in str(run.error) and "Nothing was sent" in str(run.error)
    assert run.stats["requests"] == 0 and run.messages == [] and run.ti.pushed == {}


BAD_CONTAINERS = [
    ({"phone": POOL[:2]}, ["dict"]),
    (POOL[0], ["str", "wrap a single number in a list"]),
    (int(POOL[0]), ["int", "wrap a single number in a list"]),
    (float(POOL[0]), ["float"]),
    (None, ["exactly one of recipients=", "recipients_sql=", "recipients_path="]),
    (set(POOL[:2]), ["set"]),
    (np.array(POOL[:2]), ["ndarray"]),
    (b"447443332212", ["bytes"]),
    (pd.DataFrame([[POOL[0], POOL[1]]], columns=["phone", "phone"]), ["duplicate column"]),
    (pd.DataFrame({"Phone ": POOL[:2]}), ["phone_column 'phone'", "did you mean"]),
    (pd.DataFrame({"msisdn": []}), ["phone_column 'phone'", "msisdn"]),
    ([{"phone": POOL[0]}, POOL[1]], ["mixes dicts"]),
    ([{"tel": POOL[0]}], ["phone_column 'phone'", "tel"]),
]


@pytest.mark.parametrize(
    ("recipients", "words"), BAD_CONTAINERS, ids=[type(r).__name__ for r, _ in BAD_CONTAINERS]
)
def test_unusable_recipients_fail_before_sending(voximplant_conn, recipients, words):
    assert_refused_before_sending(execute(voximplant_conn, recipients), *words)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"text_column": "body"}, ["text_column 'body'"]),
        ({"default_region": "XX"}, ["default_region", "XX"]),
        ({"src_number": ""}, ["src_number"]),
        ({"src_number": "   "}, ["src_number"]),
        ({"max_recipients": 1}, ["max_recipients", "nothing was sent"]),
    ],
)
def test_bad_settings_fail_before_sending(voximplant_conn, kwargs, words):
    frame = pd.DataFrame({"phone": POOL[:3], "text": ["a", "b", "c"]})
    assert_refused_before_sending(execute(voximplant_conn, frame, **kwargs), *words)


def test_huge_messy_frame_sends_each_valid_number_once(voximplant_conn):
    """50,000 rows: 2,000 distinct valid numbers in many spellings, repeated, among junk."""
    rng = np.random.default_rng(7)
    numbers = [f"4474400{i:05d}" for i in range(2000)]
    spellings = [SPELLINGS[i] for i in (0, 1, 2, 3, 5, 11)]
    values = []
    for _ in range(50_000):
        kind = rng.integers(10)
        if kind < 7:
            values.append(spellings[rng.integers(len(spellings))](numbers[rng.integers(2000)]))
        else:
            values.append(REFUSED[rng.integers(len(REFUSED))])
    values[: len(numbers)] = numbers  # every number appears at least once
    frame = pd.DataFrame({"phone": pd.Series(values, dtype=object), "id": range(len(values))})
    run = execute(voximplant_conn, frame, max_concurrency=8)
    assert_sent_exactly(run, Counter({(n, "hi"): 1 for n in numbers}), len(values))
    assert run.stats["requests"] == 20 and run.stats["max_batch_size"] == 100


# -- XCom-borne input in real DAG runs -----------------------------------------------------------


def test_xcom_borne_bad_and_empty_recipients_in_a_dag_run(voximplant_conn, run_dag, capsys):
    """One dag.test() run with one upstream/send pair per case: a dict, a str, an int, a frame
    without the phone column fail with an error naming the problem; an empty list and an empty
    frame succeed with all-zero counts. The emulator receives no request at all."""
    with DAG("voxsms_test_bad_xcom", schedule=None) as dag:

        @task(multiple_outputs=False)
        def as_dict():
            return {"phone": POOL[:2]}

        @task
        def as_str():
            return POOL[0]

        @task
        def as_int():
            return int(POOL[0])

        @task
        def empty_list():
            return []

        @task
        def empty_frame():
            return pd.DataFrame()

        @task
        def no_phone_column():
            return pd.DataFrame({"mobile": POOL[:2]})

        upstreams = {
            "as_dict": as_dict,
            "as_str": as_str,
            "as_int": as_int,
            "empty_list": empty_list,
            "empty_frame": empty_frame,
            "no_phone_column": no_phone_column,
        }
        for name, upstream in upstreams.items():
            A2PSendSmsOperator(
                task_id=f"send_{name}",
                recipients=upstream(),
                text="hi",
                src_number=SENDER,
            )

    tis = run_dag(dag)
    states = {task_id: ti.state for task_id, ti in tis.items() if task_id.startswith("send_")}
    assert states == {
        "send_as_dict": "failed",
        "send_as_str": "failed",
        "send_as_int": "failed",
        "send_empty_list": "success",
        "send_empty_frame": "success",
        "send_no_phone_column": "failed",
    }
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0
    for task_id in ("send_empty_list", "send_empty_frame"):
        summary = xcom(tis[task_id])
        assert all(summary[k] == 0 for k in (*COUNT_KEYS, "recipients", "batches")), summary
        assert xcom(tis[task_id], "failed_numbers").empty
    out = capsys.readouterr()
    log = out.out + out.err  # task logs and tracebacks go to stdout (structlog)
    for fragment in (
        "recipients must be a pandas DataFrame",
        "got dict",
        "got str; wrap a single number in a list",
        "got int; wrap a single number in a list",
        "phone_column 'phone' is not in recipients; columns are ['mobile']",
    ):
        assert fragment in log, fragment


def test_a_list_of_only_dicts_is_a_list_of_rows(voximplant_conn):
    run = execute(voximplant_conn, [{"phone": "447443332212"}, {"phone": "+44 7443 332213"}])
    assert run.error is None
    assert sorted(m["destination_number"] for m in run.messages) == ["447443332212", "447443332213"]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_run_with_no_valid_recipients_reports_dry_run_only_when_it_was_one(
    voximplant_conn, dry_run
):
    run = execute(voximplant_conn, ["not a number", ""], dry_run=dry_run)
    assert run.error is None, repr(run.error)
    assert run.summary["dry_run"] is dry_run and run.summary["invalid"] == 2
    assert run.stats["requests"] == 0
