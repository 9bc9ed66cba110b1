"""``KeyStore.verify_cached``: the event-loop fast path of authentication. It answers only from
keys this process verified within ``cache_ttl_s`` (the same checks as ``verify``) and returns None
whenever the database would have to be asked."""

from __future__ import annotations

import pytest

from lifeguard.api.keys import InvalidKey, KeyStore
from lifeguard.store.db import Database


def test_verify_cached_answers_only_from_fresh_cache(db: Database) -> None:
    ks = KeyStore(db, cache_ttl_s=60)
    try:
        info, token = ks.create("svc", ["match"])
        assert ks.verify_cached(token) is None  # never verified here: the database must say
        assert ks.verify(token).id == info.id
        cached = ks.verify_cached(token)
        assert cached is not None and cached.id == info.id and cached.scopes == ("match",)

        # A wrong secret for a cached id is refused from the cache, as verify refuses it.
        wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(InvalidKey) as e:
            ks.verify_cached(wrong)
        assert e.value.code == "unknown_key"
        with pytest.raises(InvalidKey) as e:
            ks.verify_cached("lg_nothex_secret")
        assert e.value.code == "malformed_key"

        # Revoking in this process drops the cache entry: the next check goes to the database.
        ks.revoke(info.id)
        assert ks.verify_cached(token) is None
        with pytest.raises(InvalidKey) as e:
            ks.verify(token)
        assert e.value.code == "revoked_key"
        # ... and the revoked key, now cached, is refused from the cache too.
        with pytest.raises(InvalidKey) as e:
            ks.verify_cached(token)
        assert e.value.code == "revoked_key"
    finally:
        ks.close()


def test_verify_cached_expires_with_ttl(db: Database) -> None:
    ks = KeyStore(db, cache_ttl_s=0)
    try:
        _, token = ks.create("svc", ["hash"])
        assert ks.verify(token).scopes == ("hash",)
        assert ks.verify_cached(token) is None  # ttl 0: every check reads the database
    finally:
        ks.close()
