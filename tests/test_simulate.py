"""The platform simulator: reproducible bodies in the spec's shapes, merge limits, duplicates, bad inputs."""

from __future__ import annotations

import json

from callstream.sim_calls import MAX_CDRS_PER_PUSH, build_pushes, generate_calls, parse_mix


def test_same_seed_same_bodies() -> None:
    a = build_pushes(generate_calls(7, 120), 7)
    b = build_pushes(generate_calls(7, 120), 7)
    c = build_pushes(generate_calls(8, 120), 8)
    assert [p.body for p in a.pushes] == [p.body for p in b.pushes]
    assert [p.body for p in a.pushes] != [p.body for p in c.pushes]


def test_bodies_match_spec_shapes() -> None:
    calls = generate_calls(3, 300, "voice=1,privacy=1")
    assert {c.service for c in calls} == {"voice", "privacy"}
    assert {c.outcome for c in calls} >= {"answered", "busy", "no_answer", "rejected"}
    assert len({c.session_id for c in calls}) == len(calls) and len({c.icid for c in calls}) == len(calls)
    assert {c.cdr["serviceType"] for c in calls if c.service == "voice"} == {"001", "002", "003"}
    for call in calls:
        types = [e["eventType"] for e in call.events]
        assert types[-1] == "disconnect" and set(types) <= {"callin", "callout", "alerting", "answer",
                                                            "collectInfo", "disconnect"}
        assert all(e["statusInfo"]["sessionId"] == call.session_id for e in call.events)
        keys = {(e["eventType"], e["statusInfo"].get("called"), e["statusInfo"]["timestamp"]) for e in call.events}
        assert len(keys) == len(call.events), "events of one call must be distinct"
        cdr = call.cdr
        assert {"appKey", "icid", "sessionId", "callerNum", "calleeNum", "callEndTime", "bindNum"} <= set(cdr)
        if call.kind == "callback":
            assert types.count("callout") == 2 and cdr["serviceType"] == "002"
        if call.service == "privacy":
            assert types[0] == "callin" and "subscriptionId" in cdr
        if call.outcome == "answered":
            assert int(call.events[-1]["statusInfo"]["stateCode"]) == 0
        else:
            assert "failTime" in cdr and cdr["sipStatusCode"] in (486, 480, 603)
        if call.outcome == "busy":
            assert int(call.events[-1]["statusInfo"]["stateCode"]) == 8102
    odd = [c for c in calls if any("  " in str(v) for v in c.cdr.values()) or isinstance(c.cdr["direction"], str)]
    assert odd, "odd-but-valid variants are generated"


def test_pushes_merge_duplicate_and_bad() -> None:
    calls = generate_calls(11, 400)
    plan = build_pushes(calls, 11, bad_fraction=0.03, duplicate_fraction=0.05)
    cdr_pushes = [p for p in plan.pushes if p.kind == "cdr"]
    sizes = [len(json.loads(p.body)["feeLst"]) for p in cdr_pushes]
    assert max(sizes) <= MAX_CDRS_PER_PUSH and max(sizes) > 1
    for push in cdr_pushes:
        fees = json.loads(push.body)["feeLst"]
        if push.duplicate_of is None:
            assert len({f["callEndTime"] for f in fees}) == 1 and len({f["appKey"] for f in fees}) == 1
    first = [p for p in cdr_pushes if p.duplicate_of is None]
    assert sorted(s for p in first for s in p.session_ids) == sorted(c.session_id for c in calls)
    assert any(p.duplicate_of is not None and p.duplicate_of >= 0 for p in plan.pushes)
    assert any(p.duplicate_of == -1 for p in plan.pushes), "a CDR re-merged into another push"
    bad = [p for p in plan.pushes if not p.expect_ok]
    assert {p.bad for p in bad} == {"not_json", "unknown_event", "bad_signature"}
    assert plan.expected()["call_events"] == sum(1 for p in plan.pushes if p.kind == "event" and p.duplicate_of is None)
    assert plan.numbers and len(set(plan.numbers)) == len(plan.numbers)
    voice_events = [p for p in plan.pushes if p.kind == "event" and p.service == "voice"]
    assert all(p.retry_delays_min == () for p in voice_events), "voice status is never re-pushed"


def test_parse_mix() -> None:
    assert parse_mix("voice=1") == {"voice": 1.0}
    assert parse_mix(None) == {"voice": 0.5, "privacy": 0.5}


def test_re_push_schedule_matches_the_platform() -> None:
    """Voice status: never; privacy events: 1, 4, 9, 106, 203, 300 min, except the X-mode callin (Block
    mode, not re-pushed); CDRs always (voice hourly, privacy on the event schedule)."""
    calls = generate_calls(21, 600, "voice=1,privacy=3")
    plan = build_pushes(calls, 21)
    by_session = {c.session_id: c for c in calls}
    seen = set()
    for push in plan.pushes:
        if push.kind != "event" or push.duplicate_of is not None:
            continue
        call = by_session[push.session_ids[0]]
        event_type = json.loads(push.body)["eventType"]
        if call.service == "voice" or (call.kind == "X" and event_type == "callin"):
            assert push.retry_delays_min == (), (call.kind, event_type)
        else:
            assert push.retry_delays_min == (1, 4, 9, 106, 203, 300), (call.kind, event_type)
        seen.add((call.kind, event_type))
    assert ("X", "callin") in seen and ("AXB", "callin") in seen and ("X", "disconnect") in seen
    assert all(p.retry_delays_min for p in plan.pushes if p.kind == "cdr")
