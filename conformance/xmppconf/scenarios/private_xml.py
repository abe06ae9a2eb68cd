"""XEP-0049 Private XML Storage with slixmpp's xep_0049 plugin: a fragment stored is read back (from another
session of the account, not slixmpp's cache), a second store replaces it, a fragment of another namespace is kept
apart, and another user is refused (section 2.3: forbidden, or service-unavailable "in common use").
"""

from __future__ import annotations

import secrets

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET, ElementBase

from ..client import Session, open_session
from ..scenario import Context, Scenario, expect

PRIVATE_NS = "jabber:iq:private"
NOTES_NS = "urn:example:conformance:notes"
PREFS_NS = "urn:example:conformance:prefs"


class Notes(ElementBase):
    namespace = NOTES_NS
    name = "notes"
    plugin_attrib = "conformance_notes"


class Prefs(ElementBase):
    namespace = PREFS_NS
    name = "prefs"
    plugin_attrib = "conformance_prefs"


def _fragment(cls, text: str):
    element = cls()
    ET.SubElement(element.xml, f"{{{cls.namespace}}}text").text = text
    return element


async def _login(ctx: Context, role: str, resource: str) -> Session:
    def setup(session: Session) -> None:
        ctx.sessions.append(session)
        session.xmpp.register_plugin("xep_0049")
        for cls in (Notes, Prefs):
            session.xmpp["xep_0049"].register(cls)

    return await open_session(ctx.endpoint, f"{ctx.jid(role)}/{resource}", ctx.password, on_created=setup)


async def _read(session: Session, cls) -> str | None:
    """The <text/> of the stored fragment of `cls`, None when the fragment comes back empty."""
    result = await session.iq(
        session.xmpp["xep_0049"].retrieve(cls.plugin_attrib, timeout=10), f"private XML get of {cls.namespace}"
    )
    fragment = result.xml.find(f"{{{PRIVATE_NS}}}query/{{{cls.namespace}}}{cls.name}")
    expect(fragment is not None, f"the result holds no <{cls.name} xmlns='{cls.namespace}'/>")
    text = fragment.find(f"{{{cls.namespace}}}text")
    return None if text is None else text.text


async def private_xml(ctx: Context) -> str:
    laptop = await _login(ctx, "alice", "laptop")
    store = laptop.xmpp["xep_0049"].store
    first, second, prefs = (f"{label} {secrets.token_hex(4)}" for label in ("first", "second", "prefs"))
    await laptop.iq(store(_fragment(Notes, first), timeout=10), "storing notes")
    await laptop.iq(store(_fragment(Prefs, prefs), timeout=10), "storing prefs")
    phone = await _login(ctx, "alice", "phone")
    got = await _read(phone, Notes)
    expect(got == first, f"another session read notes {got!r}, not {first!r}")
    await laptop.iq(store(_fragment(Notes, second), timeout=10), "replacing notes")
    got = await _read(phone, Notes)
    expect(got == second, f"after the second store notes read {got!r}, not {second!r}")
    got = await _read(phone, Prefs)
    expect(got == prefs, f"prefs read {got!r} after notes were replaced, not {prefs!r}")

    mallory = await _login(ctx, "mallory", "r")
    for kind in ("get", "set"):
        iq = mallory.xmpp.make_iq(ito=laptop.jid.bare, itype=kind)
        iq["private"].append(_fragment(Notes, "mallory was here") if kind == "set" else Notes())
        try:
            answer = await iq.send(timeout=10)
        except IqError as err:
            expect(
                err.condition in ("forbidden", "service-unavailable"),
                f"another user's {kind} refused with {err.condition}, not forbidden or service-unavailable",
            )
            continue
        except IqTimeout:
            expect(False, f"another user's {kind}: no response")
        expect(False, f"another user's private XML {kind} was answered with a result: {answer.xml}")
    got = await _read(phone, Notes)
    expect(got == second, f"after another user's refused set notes read {got!r}")
    return "stored, read back from another session, replaced, kept apart by namespace; another user refused"


SCENARIOS = [
    Scenario(
        name="private_xml",
        description="XEP-0049: store, read back, replace, two namespaces apart, another user refused",
        run=private_xml,
        accounts=("alice", "mallory"),
    ),
]
