"""Which certificates on a token expire soon (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cert_desk.models import ObjectInfo, ObjectListing

DEFAULT_DAYS = 30


def expiring(listing: ObjectListing, now: datetime, days: int = DEFAULT_DAYS) -> tuple[ObjectInfo, ...]:
    """Certificates whose end of validity is within ``days`` of ``now`` (expired ones included),
    soonest first. A CA certificate without a key on the token is included too: a browser
    that relies on it will stop trusting what it signed."""
    limit = now + timedelta(days=days)
    found = [o for o in listing.objects if o.certificate is not None and o.certificate.not_after <= limit]
    return tuple(sorted(found, key=lambda o: o.certificate.not_after if o.certificate else now))


def describe(o: ObjectInfo, now: datetime) -> str:
    c = o.certificate
    assert c is not None
    who = c.subject_cn or c.subject or o.label
    left = (c.not_after - now).days
    if c.not_after < now:
        return f"{who}: expired on {c.not_after:%Y-%m-%d}"
    if left == 0:
        return f"{who}: expires today ({c.not_after:%H:%M} UTC)"
    return f"{who}: expires in {left} day{'s' if left != 1 else ''} ({c.not_after:%Y-%m-%d})"
