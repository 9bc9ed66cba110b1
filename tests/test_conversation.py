"""Conversation risk scoring: obfuscation, incremental == batch, state round trips, the
evaluation goals computed from tests/data/conversations, and the HTTP endpoint."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api_live import live_server
from lifeguard.safety.conversation import (
    ConversationScorer,
    InvalidConversation,
    ScoringConfig,
    disclosed_ages,
    score_conversation,
)
from lifeguard.safety.embed import embedding_available
from lifeguard.safety.evaluate import load_dir, report, run
from lifeguard.safety.lexicon import (
    TACTICS,
    Lexicon,
    LexiconError,
    compile_pattern,
    default_lexicon,
)
from lifeguard.safety.model import ModelError, TacticModel, default_model
from lifeguard.safety.normalize import fold
from lifeguard.safety.training.synth import obfuscate
from lifeguard.settings import Settings

DATA = Path(__file__).parent / "data" / "conversations"
TRAIN = Path(__file__).parents[1] / "src" / "lifeguard" / "safety" / "training" / "train.jsonl"


@pytest.fixture(scope="module")
def eval_convs() -> list[dict[str, Any]]:
    return load_dir(DATA)


@pytest.fixture(scope="module")
def eval_report(eval_convs: list[dict[str, Any]]) -> dict[str, Any]:
    return report(run(eval_convs))


# ----------------------------------------------------------------------------- data set
def test_eval_set_shape(eval_convs: list[dict[str, Any]]) -> None:
    assert len(eval_convs) >= 200
    kinds = {c["kind"] for c in eval_convs}
    assert kinds == {"grooming", "sextortion", "hard_negative"}
    cats = {c["category"] for c in eval_convs if c["kind"] == "hard_negative"}
    assert cats == {"parent_pickup", "teen_flirt", "sex_ed", "gaming", "adult_chat"}
    labelled = {t for c in eval_convs for m in c["messages"] for t in m["tactics"]}
    assert labelled == set(TACTICS), "every tactic is covered"
    assert sum(c["source"] == "handwritten" for c in eval_convs) >= 30
    assert all(c["flag"] == (c["kind"] != "hard_negative") for c in eval_convs)


def test_eval_texts_not_in_training_set(eval_convs: list[dict[str, Any]]) -> None:
    train = {
        fold(m["text"])
        for line in TRAIN.read_text(encoding="utf-8").splitlines()
        for m in json.loads(line)["messages"]
        if m["tactics"]
    }
    tactic_msgs = [fold(m["text"]) for c in eval_convs for m in c["messages"] if m["tactics"]]
    overlap = [t for t in tactic_msgs if t in train]
    # Short child replies ("13") may coincide; tactic phrasings must not.
    assert len(overlap) <= 0.05 * len(tactic_msgs), overlap[:10]


# ----------------------------------------------------------------------------- goals
HOLDOUT6 = Path(__file__).parent / "data" / "conversations_holdout6"


@pytest.mark.skipif(not embedding_available(), reason="the full head needs all-MiniLM-L6-v2")
def test_goals_on_holdout6() -> None:
    """The issue's goals on the blind set written for v4 (evaluated once, blind, before this test
    existed; a regression test from then on): recall >= 0.85 at <= 3 % false flags, and threats
    flagged at the first threatening message (40 of 42 when measured)."""
    rep = report(run(load_dir(HOLDOUT6)))
    assert rep["conversations"] == 246
    assert rep["flag_recall"] >= 0.85, rep["missed_ids"]
    assert rep["false_flag_rate"] <= 0.03, rep["false_flag_ids"]
    assert rep["sextortion_at_first_threat"] >= 0.95, rep["late_threat_ids"]


def test_goal_recall_and_false_flags(eval_report: dict[str, Any]) -> None:
    # The evaluation set is training data from v4 on: this only guards against regressions.
    assert eval_report["flag_recall"] >= 0.85, eval_report["missed_ids"]
    assert eval_report["false_flag_rate"] <= 0.03, eval_report["false_flag_ids"]


def test_goal_sextortion_flagged_at_first_threat(eval_report: dict[str, Any]) -> None:
    assert eval_report["threat_conversations"] >= 40
    assert eval_report["sextortion_at_first_threat"] == 1.0, eval_report["late_threat_ids"]


def test_report_is_computed_from_the_data(eval_convs: list[dict[str, Any]]) -> None:
    """Flip the labels: the same detector now 'misses' everything it flagged."""
    flipped = [dict(c, flag=not c["flag"]) for c in eval_convs[:40]]
    rep = report(run(flipped))
    straight = report(run(eval_convs[:40]))
    assert rep["flag_recall"] != straight["flag_recall"]


# ----------------------------------------------------------------------------- obfuscation
BASE = [
    ("dont tell your parents about us", "secrecy"),
    ("add me on snapchat", "isolation"),
    ("send me a selfie", "photo_request"),
    ("how old are you", "age"),
    ("i will send your pictures to all your friends", "threat_share"),
    ("i have your photos", "claims_images"),
    ("we should meet up this weekend", "meeting"),
    ("you are so mature for your age", "sexualisation"),
    ("i can buy you robux", "gifts"),
    ("you have 2 hours", "deadline"),
]
HAND_VARIANTS = [
    ("d0nt t3ll ur p4r3nts ab0ut us", "secrecy"),
    ("a d d me on s n a p c h a t", "isolation"),
    ("seeeend meee a selfieeee", "photo_request"),
    ("һоw оld аrе уоu", "age"),  # Cyrillic homoglyphs
    ("i will send your 📸 to all your friends", "threat_share"),
    ("𝐢 𝐡𝐚𝐯𝐞 𝐲𝐨𝐮𝐫 𝐩𝐡𝐨𝐭𝐨𝐬", "claims_images"),
    ("we should m.e.e.t up this weekend", "meeting"),
    ("ur s0 matur3 4 ur age", "sexualisation"),
    ("i ca\u200bn buy u r0bux", "gifts"),
    ("U HAVE 2 HOURS!!!", "deadline"),
]


@pytest.mark.parametrize(("text", "tactic"), BASE + HAND_VARIANTS)
def test_lexicon_finds_tactic_through_obfuscation(text: str, tactic: str) -> None:
    assert tactic in default_lexicon().tactics(text)


def test_random_obfuscations_fold_to_the_same_tactics() -> None:
    lex = default_lexicon()
    rng = random.Random(7)
    misses = []
    total = 0
    for text, tactic in BASE:
        for _ in range(20):
            variant = obfuscate(text, rng)
            total += 1
            if tactic not in lex.tactics(variant):
                misses.append(variant)
    assert len(misses) <= 0.02 * total, misses


def test_scorer_sees_obfuscated_threat_at_once() -> None:
    for text in [
        "i will send your pics to all your friends",
        "1 w1ll s3nd ur p1cs 2 all ur fr1ends",
    ]:
        a = ConversationScorer().add({"id": "m1", "sender": "x", "text": text})
        assert a.flagged and a.sextortion and a.flagged_at == "m1"
        assert a.evidence_message_ids == ["m1"] and "threat_share" in a.tactics


def test_cues_cancel_lexicon_hits() -> None:
    lex = default_lexicon()
    assert "secrecy" in lex.tactics("dont tell your mom")
    assert "secrecy" not in lex.tactics("dont tell your mom about the surprise party")
    assert "photo_request" not in lex.tactics("send me a photo of the receipt")
    assert "threat_share" not in lex.tactics(
        "if someone threatens to share your pictures with your friends, report it"
    )


def test_disclosed_ages() -> None:
    assert disclosed_ages(fold("I'm 13")) == [13]
    assert disclosed_ages(fold("im 24 years old")) == [24, 24]
    assert disclosed_ages(fold("i have 3 cats")) == []
    assert disclosed_ages(fold("im in 8th grade")) == [13]
    assert disclosed_ages(fold("I'm in Year 9")) == [14]
    assert disclosed_ages(fold("i'm still in middle school")) == [12]
    assert disclosed_ages(fold("im in my twenties lol")) == [25]
    assert disclosed_ages(fold("my sister is in year 8")) == []


# ----------------------------------------------------------------------------- scorer
def test_incremental_equals_batch_and_state_round_trip(eval_convs: list[dict[str, Any]]) -> None:
    for c in eval_convs[::5]:
        parts, msgs = c["participants"], c["messages"]
        batch = score_conversation(msgs, parts)
        inc = ConversationScorer(parts)
        for i, m in enumerate(msgs):
            a = inc.add(m)
            if i == len(msgs) // 2:  # persist mid-conversation as a device would
                inc = ConversationScorer.from_json(json.loads(json.dumps(inc.to_json())))
        # batch scoring embeds the messages in one batch: the same up to float rounding
        same: dict[str, Any] = {"message_id": None, "message_tactics": [], "score": None}
        assert a.to_json() | same == batch.to_json() | same
        assert a.score == pytest.approx(batch.score, abs=1e-5) and a.tactics == batch.tactics


def test_state_holds_no_text() -> None:
    s = ConversationScorer([{"id": "b", "age_band": "13-15"}])
    s.add({"id": "m1", "sender": "a", "text": "dont tell your parents about our secret"})
    blob = json.dumps(s.to_json())
    assert "parents" not in blob and 'secret"' not in blob
    assert s.to_json()["bands"] == {"b": "minor"}


def test_age_gap_escalates() -> None:
    msgs = [
        {"id": "m1", "sender": "a", "text": "how old are you"},
        {"id": "m2", "sender": "b", "text": "im 13"},
        {"id": "m3", "sender": "a", "text": "im 27. dont tell your mom we talk"},
        {"id": "m4", "sender": "a", "text": "send me a selfie"},
    ]
    rules = ConversationScorer(config=ScoringConfig.v3()).add_many(msgs)
    assert rules.age_gap and rules.flagged and rules.score >= 0.9  # v3's escalation rule
    a = score_conversation(msgs)
    assert a.flagged and {"age", "secrecy", "photo_request"} <= set(a.tactics)
    assert {"age", "secrecy", "photo_request"} <= set(a.tactics)
    assert a.evidence_message_ids[0] == "m1"


def test_single_ordinary_tactic_does_not_flag() -> None:
    a = score_conversation([{"id": "1", "sender": "a", "text": "ill pick you up at 5"}])
    assert not a.flagged and a.level in ("none", "low", "medium")


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 99},
        {"version": 1},
        {"version": 2, "evidence": {"a": {"nonsense": ["m1"]}}},
        {"version": 2, "bands": {"a": "teenager"}},
        {"version": 2, "messages_seen": "many"},
        {"version": 2, "stats": {"a": {"n": 1, "maxs": [0.5]}}},
        {"version": 2, "stats": {"a": {"n": 1, "maxs": [2.0] * 11}}},
        {"version": 2, "stats": {"a": {"n": 1, "maxs": [0.0] * 11, "tm": 5}}},
        {"version": 2, "stats": {"a": {"n": 1, "maxs": [0.0] * 11, "ep": "nan"}}},
        {"version": 2, "stats": "x"},
        [],
    ],
)
def test_bad_state_is_refused(state: Any) -> None:
    with pytest.raises(InvalidConversation):
        ConversationScorer.from_json(state)


@pytest.mark.parametrize(
    "msg",
    [
        {"sender": "a", "text": "hi"},
        {"id": "1", "sender": "a", "text": 5},
        {"id": "", "sender": "a", "text": "hi"},
        {"id": "1", "sender": "a", "text": "x" * 20_001},
        "hello",
    ],
)
def test_bad_message_is_refused(msg: Any) -> None:
    with pytest.raises(InvalidConversation):
        ConversationScorer().add(msg)


def test_context_threat_needs_a_sextortion_context() -> None:
    # "you know what happens" is no threat on its own ...
    alone = score_conversation([{"id": "1", "sender": "x", "text": "you know what happens"}])
    assert not alone.sextortion and "threat_share" not in alone.tactics
    # ... but it is from a sender who has just claimed to hold the child's pictures.
    s = ConversationScorer()
    s.add({"id": "1", "sender": "x", "text": "i saved everything you sent me"})
    s.add({"id": "2", "sender": "kid", "text": "what do you mean"})
    a = s.add({"id": "3", "sender": "x", "text": "you know what happens"})
    assert a.sextortion and a.flagged and a.message_tactics == ["threat_share"]
    # after a mere payment request a context threat must name the reader
    owes = frozenset({"payment_demand"})
    assert "threat_share" not in s.message_tactics("ill send the pics now", owes)[0]
    assert "threat_share" in s.message_tactics("ill put it all on ur story", owes)[0]
    # the child's own words never inherit the other sender's context
    b = s.add({"id": "4", "sender": "kid", "text": "please dont, you know what happens"})
    assert b.message_tactics == []


def test_threat_without_context_must_address_the_reader() -> None:
    a = score_conversation(
        [{"id": "1", "sender": "m", "text": "I'll post the group photo on the family chat"}]
    )
    assert not a.sextortion and not a.flagged
    assert "threat_share" not in default_lexicon().tactics(
        "when ur parents get home tell them i called"
    )
    b = score_conversation(
        [{"id": "1", "sender": "x", "text": "I'll post your photos on the family chat"}]
    )
    assert b.sextortion and b.flagged


def test_grooming_context_lets_a_second_tactic_count() -> None:
    # a model that vetoes every lexicon hit, except in a grooming context
    cfg = ScoringConfig(lexicon_veto=1.01, lexicon_veto_by_tactic={}, model_alone=frozenset())
    s = ConversationScorer(config=cfg)
    assert s.message_tactics("move over to telegram")[0] == []
    assert s.message_tactics("move over to telegram", frozenset({"secrecy"}))[0] == ["isolation"]
    off = ConversationScorer(config=replace(cfg, grooming_context_veto=None))
    assert off.message_tactics("move over to telegram", frozenset({"secrecy"}))[0] == []
    # age and the ordinary tactics give no grooming context
    assert s.message_tactics("move over to telegram", frozenset({"age", "gifts"}))[0] == []


def test_lexicon_context_section_is_checked() -> None:
    base: dict[str, Any] = {"tactics": {"secrecy": {"patterns": ["secret"]}}}
    ok = Lexicon(
        {**base, "context": {"threat_share": {"requires": ["deadline"], "patterns": ["or else"]}}}
    )
    assert ok.context_hits(fold("do it or else")) == {"threat_share": frozenset({"deadline"})}
    for bad in [
        {"nonsense": {"requires": ["deadline"], "patterns": ["x"]}},
        {"threat_share": {"requires": ["nonsense"], "patterns": ["x"]}},
        {"threat_share": {"requires": [], "patterns": ["x"]}},
        {"threat_share": {"requires": ["deadline"], "patterns": ["~ x"]}},
    ]:
        with pytest.raises(LexiconError):
            Lexicon({**base, "context": bad})


def test_lexicon_pattern_errors() -> None:
    for bad in ["~ secret", "secret ~", "secret ~x word", "a || b"]:
        with pytest.raises(LexiconError):
            compile_pattern(bad)
    assert compile_pattern("send ~2!me photo*").search(fold("send them photos") + " ")
    assert not compile_pattern("send ~2!me photo*").search(fold("send me photos") + " ")


def test_model_file_round_trip_without_pickle(tmp_path: Path) -> None:
    m = default_model()
    assert m.tactics == TACTICS
    p = tmp_path / "m.npz"
    m.save(p)
    again = TacticModel.load(p)
    text = fold("send me a pic")
    assert again.proba(text) == pytest.approx(m.proba(text))
    with np.load(p, allow_pickle=False) as z:
        assert set(z.files) == {"weights", "bias", "meta"}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        TacticModel.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- HTTP
def test_conversation_endpoint_over_http(sqlite_settings: Settings) -> None:
    with live_server(sqlite_settings, wait_ready=False) as lv, lv.client(lv.key("match")) as c:
        first = c.post(
            "/v1/safety/conversation",
            json={
                "participants": [{"id": "kid", "age_band": "13-15"}],
                "messages": [
                    {"id": "m1", "sender": "x", "text": "hey how old r u"},
                    {"id": "m2", "sender": "kid", "text": "13"},
                ],
            },
        )
        assert first.status_code == 200, first.text
        body = first.json()
        assert not body["flagged"] and "age" in body["tactics"]
        assert [m["id"] for m in body["messages"]] == ["m1", "m2"]
        nxt = c.post(
            "/v1/safety/conversation",
            json={
                "state": body["state"],
                "messages": [
                    {
                        "id": "m3",
                        "sender": "x",
                        "text": "i h4ve ur pics. pay $300 or ur friends see them",
                    }
                ],
            },
        )
        assert nxt.status_code == 200, nxt.text
        b2 = nxt.json()
        assert b2["flagged"] and b2["sextortion"] and b2["flagged_at"] == "m3"
        assert b2["messages_seen"] == 3 and "m3" in b2["evidence_message_ids"]
        assert "threat_share" in b2["messages"][0]["tactics"]

        bad_state = c.post(
            "/v1/safety/conversation", json={"state": {"version": 7}, "messages": []}
        )
        assert bad_state.status_code == 422
        assert bad_state.json()["code"] == "invalid_conversation"
        too_long = c.post(
            "/v1/safety/conversation",
            json={"messages": [{"id": "1", "sender": "a", "text": "x" * 20_001}]},
        )
        assert too_long.status_code == 422
        assert c.post("/v1/safety/conversation", content=b"{").status_code in (400, 415, 422)
    with live_server(sqlite_settings, wait_ready=False) as lv, lv.client(lv.key("bank:read")) as c:
        r = c.post("/v1/safety/conversation", json={"messages": []})
        assert r.status_code == 403
    assert httpx  # imported for the type of the client


def test_training_fits_a_separable_toy_set(tmp_path: Path) -> None:
    """The numpy trainer learns: a few epochs on a toy corpus separate the two kinds."""
    from lifeguard.safety import train
    from lifeguard.safety.model import FeatureSpec

    texts = [fold(t) for t in ["add me on kik", "whats your snap", "nice goal", "see you at lunch"]]
    y = np.zeros((4, len(TACTICS)), dtype=np.float32)
    y[:2, TACTICS.index("isolation")] = 1.0
    spec = FeatureSpec(dim=1 << 12)
    w, b = train.fit(train.Sparse(texts, spec), y, spec.dim, epochs=60, lr=0.1)
    m = TacticModel(tactics=TACTICS, weights=w, bias=b, spec=spec)
    iso = [m.proba(t)["isolation"] for t in texts]
    assert min(iso[:2]) > 0.5 > max(iso[2:])
    m.save(tmp_path / "toy.npz")
    assert TacticModel.load(tmp_path / "toy.npz").spec == spec


# ----------------------------------------------------------------------------- v4 model
GROOMING = [
    {"id": "m1", "sender": "a", "text": "hey saw ur drawings, ur really talented"},
    {"id": "m2", "sender": "kid", "text": "thx!!"},
    {"id": "m3", "sender": "a", "text": "how old r u? u seem really mature"},
    {"id": "m4", "sender": "kid", "text": "13"},
    {"id": "m5", "sender": "a", "text": "this is just between us ok, ur parents wouldnt get it"},
    {"id": "m6", "sender": "a", "text": "add me on snap its more private"},
    {"id": "m7", "sender": "a", "text": "send me a pic of u, just for me"},
]
LESSON = [
    {"id": "m1", "sender": "t", "text": "Today we're talking about staying safe online."},
    {
        "id": "m2",
        "sender": "t",
        "text": "Groomers often ask how old you are and say they're the same age.",
    },
    {
        "id": "m3",
        "sender": "t",
        "text": 'They might say "keep this between us" or "add me on snap".',
    },
    {
        "id": "m4",
        "sender": "t",
        "text": "If someone asks for photos, tell a trusted adult and report it.",
    },
    {"id": "m5", "sender": "kid", "text": "what if they threaten to send pics to your friends?"},
    {
        "id": "m6",
        "sender": "t",
        "text": "Don't pay, save the messages and report. It is not your fault.",
    },
]


@pytest.mark.parametrize("embedding", ["auto", "off"])
def test_model_heads_flag_grooming_not_a_lesson(embedding: str) -> None:
    cfg = ScoringConfig(embedding=embedding)
    g = ConversationScorer([{"id": "kid", "age_band": "13-15"}], config=cfg)
    a = g.add_many(GROOMING)
    assert g.head is not None and (g.head.embedding is not None) == (g.encoder is not None)
    assert a.flagged and {"secrecy", "isolation", "photo_request"} <= set(a.tactics)
    lesson = ConversationScorer(config=cfg).add_many(LESSON)
    assert not lesson.flagged and lesson.tactics == []


def test_reported_speech_shows_no_tactic() -> None:
    s = ConversationScorer()
    for text in [
        "they ask how old you are and then say theyre the same age",
        "he told me to keep it secret from my mum",
        'the lesson said "send me a selfie" is a red flag',
    ]:
        assert s.message_tactics(text)[0] == [], text
    assert "secrecy" in s.message_tactics("dont tell your mum about us ok")[0]
    off = ConversationScorer(config=ScoringConfig(reported_speech=False))
    assert off.message_tactics("he told me to keep it secret from my mum")[0] != []


def test_state_round_trip_keeps_model_inputs_without_text_or_vectors() -> None:
    whole = ConversationScorer([{"id": "kid", "age_band": "13-15"}]).add_many(GROOMING)
    s = ConversationScorer([{"id": "kid", "age_band": "13-15"}])
    s.add_many(GROOMING[:4])
    state = json.loads(json.dumps(s.to_json()))
    blob = json.dumps(state)
    assert "mature" not in blob and "talented" not in blob
    assert set(state["stats"]) == {"a", "kid"} and state["stats"]["a"]["n"] == 2
    # one number per sender stands for the embedding, never the vector itself
    assert all(isinstance(v["ep"], float) for v in state["stats"].values())
    assert len(blob) < 2_000
    again = ConversationScorer.from_json(state).add_many(GROOMING[4:])
    assert again.score == pytest.approx(whole.score, abs=1e-5)
    assert again.flagged == whole.flagged and again.tactics == whole.tactics


def test_conversation_model_file_round_trip(tmp_path: Path) -> None:
    from lifeguard.safety.convmodel import ConversationModel, default_conversation_model

    m = default_conversation_model()
    assert 0 < m.full.sextortion_threshold <= m.full.threshold < 1
    p = tmp_path / "c.npz"
    m.save(p)
    again = ConversationModel.load(p)
    assert np.array_equal(again.full.weights, m.full.weights) and again.info == m.info
    with np.load(p, allow_pickle=False) as z:
        assert set(z.files) == {"full_weights", "full_embedding", "lite_weights", "meta"}
        parts = {k: z[k] for k in z.files}
    meta = json.loads(str(parts["meta"]))
    meta["features"] = meta["features"][:-1]
    np.savez(tmp_path / "old.npz", **{**parts, "meta": np.array(json.dumps(meta))})
    with pytest.raises(ModelError, match="features"):
        ConversationModel.load(tmp_path / "old.npz")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ModelError):
        ConversationModel.load(tmp_path / "bad.npz")


def test_training_helpers_fit_and_respect_the_false_flag_budget() -> None:
    from lifeguard.safety.convmodel import FEATURES
    from lifeguard.safety.train_conversation import Scored, choose_threshold, fit_logistic

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) + 0.3 > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.01)
    assert np.mean(((x @ w + b) > 0) == (y > 0)) > 0.97
    # senders whose first feature carries the label (plus noise), in four author groups
    scored = []
    nf = len(FEATURES)
    for i in range(200):
        pos = i % 2 == 0
        f = rng.normal(scale=0.3, size=nf)
        f[0] += 1.5 if pos else -1.5
        conv: dict[str, Any] = {
            "flag": pos,
            "kind": "grooming" if pos else "hard_negative",
            "messages": [],
        }
        scored.append(
            Scored(conv, f"g{i % 4}", [{"a": f}], [{"a": np.zeros(384)}], {"a"} if pos else set())
        )
    thr, thr_sx, cv = choose_threshold(scored, with_emb=False, l2=0.1, max_ff=0.02)
    assert cv["cv_false_flags"] <= 0.02 and cv["cv_recall"] > 0.9
    assert 0.3 <= thr <= 0.95 and 0 < thr_sx <= thr


def test_http_embedding_fault_is_503_and_lite_head_can_be_chosen(
    sqlite_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifeguard.safety.embed import default_encoder

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    monkeypatch.setenv("LIFEGUARD_EMBED_MODEL_DIR", str(tmp_path))
    default_encoder.cache_clear()
    body = {"messages": [{"id": "m1", "sender": "x", "text": "how old r u"}]}
    try:
        with live_server(sqlite_settings, wait_ready=False) as lv, lv.client(lv.key("match")) as c:
            r = c.post("/v1/safety/conversation", json=body)
            assert r.status_code == 503 and r.json()["code"] == "embedding_unavailable"
            assert "SHA-256" in r.json()["detail"]
        lite = sqlite_settings.model_copy(update={"conversation_embedding": "off"})
        with live_server(lite, wait_ready=False) as lv, lv.client(lv.key("match")) as c:
            r = c.post("/v1/safety/conversation", json=body)
            assert r.status_code == 200 and "age" in r.json()["tactics"]
            assert r.json()["state"]["head"] == "lite"
    finally:
        default_encoder.cache_clear()


def test_cli_scores_a_file_reports_labels_and_names_bad_lines(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifeguard.cli import app

    good = {
        "id": "g1",
        "kind": "grooming",
        "category": "grooming",
        "flag": True,
        "participants": [{"id": "kid", "age_band": "13-15"}],
        "messages": [dict(m, tactics=[]) for m in GROOMING],
    }
    lesson = {
        "id": "l1",
        "kind": "hard_negative",
        "category": "sex_education",
        "flag": False,
        "messages": LESSON,
    }
    f = tmp_path / "c.jsonl"
    lines = [json.dumps(good), "", "{not json", json.dumps({"id": "x", "messages": 3})]
    f.write_text("\n".join([*lines, json.dumps(lesson)]) + "\n")
    r = CliRunner().invoke(app, ["safety", "conversation", str(f), "--head", "lite", "--report"])
    assert r.exit_code == 1  # bad lines make the exit status non-zero ...
    out = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [(o["id"], o["line"], o["flagged"]) for o in out] == [("g1", 1, True), ("l1", 5, False)]
    assert "line 3:" in r.stderr and "line 4:" in r.stderr  # ... and are named
    assert "flag recall: 1.000" in r.stderr and "false flags on hard negatives: 0.000" in r.stderr
    r = CliRunner().invoke(app, ["safety", "conversation", str(f), "--head", "bogus"])
    assert r.exit_code == 2 and "--head" in r.stderr


def test_lengthen_builds_long_chats_without_new_labels() -> None:
    from lifeguard.safety.train_conversation import lengthen

    def conv(cid: str, kind: str, n: int, tactic: str | None = None) -> dict[str, Any]:
        msgs = [
            {"id": f"m{i}", "sender": "xy"[i % 2], "text": f"{cid} line {i}", "tactics": []}
            for i in range(n)
        ]
        if tactic:
            msgs[2]["tactics"] = [tactic]
        return {
            "id": cid,
            "kind": kind,
            "flag": kind != "hard_negative",
            "participants": [{"id": "x"}, {"id": "y", "age_band": "13-15"}],
            "messages": msgs,
        }

    convs = [conv(f"n{i}", "hard_negative", 5) for i in range(6)]
    convs += [conv(f"g{i}", "grooming", 6, "secrecy") for i in range(4)]
    out = lengthen(convs)
    assert out == lengthen(convs)  # deterministic
    longs = [c for c in out if c["kind"] == "hard_negative"]
    grooms = [c for c in out if c["flag"]]
    assert len(longs) == 3 and len(grooms) == 2
    assert all(len(c["messages"]) >= 10 for c in longs)
    assert all(not m["tactics"] for c in longs for m in c["messages"])
    for g in grooms:
        labelled = [m for m in g["messages"] if m["tactics"]]
        assert [m["tactics"] for m in labelled] == [["secrecy"]]  # only the original label
        assert len(g["messages"]) == 16 and {m["sender"] for m in g["messages"]} == {"x", "y"}
        assert [m["id"] for m in g["messages"]] == [f"m{i}" for i in range(1, 17)]
