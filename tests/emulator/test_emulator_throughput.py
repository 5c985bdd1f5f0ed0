"""The send path stays cheap: a token is verified once, batches of 100 go through quickly."""

from __future__ import annotations

import time

from airflow_provider_voxsms.emulator import auth


def test_many_full_batches_reuse_one_verified_token(api, monkeypatch):
    decodes = []
    real = auth.jwt.decode
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: decodes.append(1) or real(*a, **k))
    start = time.perf_counter()
    for i in range(200):
        dst = ";".join(f"4475{i:04d}{j:04d}" for j in range(100))
        api.call("A2PSendSms", src_number="VoxDemo", dst_numbers=dst, text="load")
    elapsed = time.perf_counter() - start
    stats = api.introspect("stats")
    assert stats["accepted"] == 20_000 and stats["max_batch_size"] == 100
    assert stats["distinct_tokens"] == 1 and len(decodes) == 1
    assert elapsed < 10, f"200 requests of 100 took {elapsed:.1f}s"
    ids = [m.message_id for m in api.server.state.messages]
    assert len(set(ids)) == 20_000 and ids == sorted(ids)
