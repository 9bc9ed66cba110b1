"""Matcher behaviour on both databases: variants, thresholds, allow-lists, live changes, snapshots."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import PHOTOS
from lifeguard.banks import Banks
from lifeguard.banks.media import add_media
from lifeguard.errors import InvalidSignal
from lifeguard.matching import Matcher
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_bytes, hash_file
from lifeguard.signals.pdq import hamming
from lifeguard.store.db import Database

KODAK = sorted((PHOTOS / "kodak").glob("*.png"))


def _jpeg(im: Image.Image, q: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def _edited(path: Path, how: str) -> bytes:
    with Image.open(path) as src:
        im = src.convert("RGB")
    if how == "flip":
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif how == "rot90":
        im = im.transpose(Image.Transpose.ROTATE_90)
    elif how == "pad":
        w, h = im.size
        canvas = Image.new("RGB", (int(w * 1.4), int(h * 1.4)), (255, 255, 255))
        canvas.paste(im, (int(w * 0.2), int(h * 0.2)))
        im = canvas
    elif how == "jpeg":
        return _jpeg(im, 30)
    elif how == "soft":
        from PIL import ImageFilter

        return _jpeg(
            im.filter(ImageFilter.GaussianBlur(4)).resize((im.width // 3, im.height // 3)), 25
        )
    return _jpeg(im)


@pytest.fixture
def banks(db: Database) -> Banks:
    return Banks(db)


@pytest.fixture
def listed(banks: Banks, settings: Settings) -> list[list[int]]:
    """Six Kodak photos listed (PDQ + MD5 entries each); entry ids per photo."""
    banks.create_bank("KNOWN", categories=["A1"])
    ids = []
    for i, p in enumerate(KODAK[:6]):
        res = add_media(banks, "KNOWN", p, settings, external_id=f"k{i}")
        assert sorted(r.entry.signal_type for r in res) == ["md5", "pdq"]
        ids.append([r.entry.id for r in res])
    return ids


def _match(m: Matcher, data: bytes, settings: Settings, variants: bool = True):  # type: ignore[no-untyped-def]
    return m.match_media(
        hash_bytes(data, "q.jpg", settings, query_variants=variants), variants=variants
    )


@pytest.mark.parametrize(
    ("edit", "variant"),
    [("jpeg", "plain"), ("flip", "dihedral"), ("rot90", "dihedral"), ("pad", "trimmed")],
)
def test_edited_copies_match_through_the_right_variant(
    db: Database, settings: Settings, listed: list[list[int]], edit: str, variant: str
) -> None:
    m = Matcher(db, settings)
    res = _match(m, _edited(KODAK[2], edit), settings)
    assert res.matched, res.to_json()
    top = res.matches[0]
    assert top.external_id == "k2" and top.bank == "KNOWN" and top.variant == variant
    assert top.categories == ("A1",)
    assert top.distance <= 31
    # Without variants only the photometric edit still matches.
    plain = _match(m, _edited(KODAK[2], edit), settings, variants=False)
    assert plain.matched == (variant == "plain")


def test_unlisted_photos_do_not_match(
    db: Database, settings: Settings, listed: list[list[int]]
) -> None:
    m = Matcher(db, settings)
    for p in KODAK[6:14]:
        res = m.match_media(hash_file(p, settings, query_variants=True))
        assert not res.matched, (p.name, res.to_json())


def test_live_changes_take_effect_without_rebuild(
    db: Database, settings: Settings, banks: Banks, listed: list[list[int]]
) -> None:
    m = Matcher(db, settings)
    q = hash_file(KODAK[1], settings, query_variants=True)
    assert m.match_media(q).matched
    # Another process (here: another matcher) sees changes after one sync interval.
    other = Matcher(db, settings)
    other.load()
    for e in listed[1]:
        banks.disable_entry(e, reason="test")
    time.sleep(settings.index_sync_interval_s)
    assert not other.match_media(q).matched
    banks.enable_entry(listed[1][0])
    time.sleep(settings.index_sync_interval_s)
    assert [x.signal_type for x in other.match_media(q).matches] == [
        banks.get_entry(listed[1][0]).signal_type
    ]
    for e in listed[1]:
        banks.remove_entry(e, reason="listed in error")
    time.sleep(settings.index_sync_interval_s)
    assert not other.match_media(q).matched
    # A brand-new entry is matched too.
    new = hash_file(KODAK[20], settings)
    assert not other.match_media(new).matched
    banks.add_entry("KNOWN", "pdq", new.pdq or "", external_id="late")
    time.sleep(settings.index_sync_interval_s)
    assert [x.external_id for x in other.match_media(new).matches] == ["late"]


def test_bank_threshold_disable_and_variant_opt_out(
    db: Database, settings: Settings, banks: Banks, listed: list[list[int]]
) -> None:
    m = Matcher(db, settings)
    q = hash_bytes(_edited(KODAK[3], "soft"), "q.jpg", settings, query_variants=True)
    d = m.match_media(q).matches[0].distance
    assert d > 0
    banks.update_bank("KNOWN", match_threshold=d - 1)
    m.sync(force=True)
    assert not m.match_media(q).matched
    banks.update_bank("KNOWN", match_threshold=31, enabled=False)
    m.sync(force=True)
    assert not m.match_media(q).matched
    banks.update_bank("KNOWN", enabled=True, match_variants=False)
    m.sync(force=True)
    assert m.match_media(q).matched
    flipped = hash_bytes(_edited(KODAK[3], "flip"), "f.jpg", settings, query_variants=True)
    assert not m.match_media(flipped).matched


def test_allow_list_suppresses_known_false_positive(
    db: Database, settings: Settings, banks: Banks, listed: list[list[int]]
) -> None:
    banks.create_bank("REVIEWED_OK", kind="allow")
    h = hash_file(KODAK[4], settings)
    banks.add_entry("REVIEWED_OK", "pdq", h.pdq or "", note="false positive")
    m = Matcher(db, settings)
    res = m.match_media(hash_file(KODAK[4], settings, query_variants=True))
    assert not res.matched
    assert [x.external_id for x in res.suppressed][:1] == ["k4"]
    assert res.allowed and res.allowed[0].bank == "REVIEWED_OK"
    assert res.suppressed[0].suppressed_by == (res.allowed[0].entry_id,)
    # Other listed media is unaffected.
    assert m.match_media(hash_file(KODAK[5], settings)).matched


def test_match_signals_exact_and_pdq(
    db: Database, settings: Settings, listed: list[list[int]]
) -> None:
    m = Matcher(db, settings)
    h = hash_file(KODAK[0], settings)
    assert m.match_signals([("md5", h.md5)]).matches[0].variant == "exact"
    assert not m.match_signals([("sha256", h.sha256)]).matched  # SHA-256 not listed by default
    near = f"{int(h.pdq or '', 16) ^ 0b1011:064x}"
    res = m.match_signals([("pdq", near)])
    assert res.matches[0].distance == hamming(near, h.pdq or "") == 3
    with pytest.raises(InvalidSignal):
        m.match_signals([("pdq", "xyz")])
    with pytest.raises(InvalidSignal):
        m.match_signals([("photodna", "00")])


def test_snapshot_round_trip_then_deltas(
    db: Database, settings: Settings, banks: Banks, listed: list[list[int]]
) -> None:
    m = Matcher(db, settings)
    m.load()
    m.save_snapshot()
    for e in listed[0]:
        banks.remove_entry(e)
    late = hash_file(KODAK[21], settings)
    banks.add_entry("KNOWN", "pdq", late.pdq or "")
    fresh = Matcher(db, settings)
    fresh.load()  # snapshot + changes since it
    assert fresh.revision == banks.current_revision()
    assert not fresh.match_media(hash_file(KODAK[0], settings)).matched
    assert fresh.match_media(late).matched
    assert fresh.match_media(hash_file(KODAK[1], settings)).matched
    # A damaged snapshot costs a rebuild, never a wrong answer.
    for f in (
        (settings.index_dir / "pdq").rglob("*")
        if (settings.index_dir / "pdq").is_dir()
        else [settings.index_dir / "pdq"]
    ):
        if f.is_file():
            f.write_bytes(b"garbage")
    broken = Matcher(db, settings)
    broken.load()
    assert broken.match_media(late).matched
    assert not broken.match_media(hash_file(KODAK[0], settings)).matched


def test_build_saves_a_snapshot_for_big_indexes(
    db: Database, settings: Settings, listed: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lifeguard.matching.matcher as matcher_mod

    monkeypatch.setattr(matcher_mod, "AUTO_SNAPSHOT_ITEMS", 10**9)
    Matcher(db, settings).load()
    assert not (settings.index_dir / "meta.json").exists()
    monkeypatch.setattr(matcher_mod, "AUTO_SNAPSHOT_ITEMS", 1)
    m = Matcher(db, settings)
    m.load()
    assert (settings.index_dir / "meta.json").exists()
    leftovers = [
        p.name
        for p in settings.index_dir.parent.iterdir()
        if p.name != "index" and "index" in p.name
    ]
    assert leftovers == []
    again = Matcher(db, settings)
    again.load()
    assert len(again.pdq) == len(m.pdq) and again.revision == m.revision


def test_matching_does_not_wait_for_a_writer(
    db: Database, settings: Settings, listed: list[list[int]]
) -> None:
    """A long write (e.g. an import) holds the write lock; matches keep being answered."""
    import threading

    from lifeguard.store.db import bump_revision

    m = Matcher(db, settings)
    m.load()
    q = hash_file(KODAK[2], settings, query_variants=True)
    holding = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with db.session() as s:
            bump_revision(s)
            holding.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert holding.wait(10)
        done: list[bool] = []
        reader = threading.Thread(target=lambda: done.append(m.match_media(q).matched))
        reader.start()
        reader.join(5)
        assert done == [True], "a match waited for the writer's lock"
    finally:
        release.set()
        t.join()
