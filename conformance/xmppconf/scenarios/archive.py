"""Message archive scenario: XEP-0313 querying by contact with XEP-0059 paging, the results carrying the
XEP-0359 stanza ids the messages were delivered with. The IQ and the results are read as plain XML (the
wire format of XEP-0313 sections 4.2 and 4.3), so nothing in slixmpp's own MAM helper is assumed.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

from ..scenario import Context, Scenario, expect

WAIT = 10.0
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


async def _query(session, with_jid: str, rsm: str):
    """Runs one query; returns [(archive id, body)] of its results in arrival order, and the <fin/>."""
    query_id = secrets.token_hex(4)
    mark = session.messages.mark()
    iq = session.xmpp.make_iq_set()
    iq.xml.append(
        ET.fromstring(
            f"<query xmlns='{MAM}' queryid='{query_id}'>"
            f"<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
            f"<field var='with'><value>{with_jid}</value></field></x>"
            f"<set xmlns='{RSM}'>{rsm}</set></query>"
        )
    )
    answer = await session.iq(iq.send(timeout=10), "MAM query")
    fin = answer.xml.find(f"{{{MAM}}}fin")
    expect(fin is not None, "the query result has no <fin/>")
    results = []
    for message in session.messages.matching(lambda m: m.xml.find(f"{{{MAM}}}result") is not None, mark):
        result = message.xml.find(f"{{{MAM}}}result")
        if result.get("queryid") != query_id:
            continue
        body = result.find(f"{{{FORWARD}}}forwarded/{{{CLIENT}}}message/{{{CLIENT}}}body")
        results.append((result.get("id"), None if body is None else body.text))
    return results, fin


def _rsm(fin, name: str) -> str | None:
    element = fin.find(f"{{{RSM}}}set/{{{RSM}}}{name}")
    return None if element is None else element.text


async def archive_paging(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    bob_jid = bob.jid.bare
    # Once bob's round trip is answered his initial presence was handled (RFC 6120 section 10.1), so the
    # messages below are delivered live rather than racing the hand-over of offline messages.
    await bob.sync()
    texts = [f"archived {i} {secrets.token_hex(3)}" for i in range(3)]
    delivered_ids = []
    for text in texts:
        alice.xmpp.send_message(mto=bob_jid, mbody=text, mtype="chat")
        got = await bob.messages.wait_for(_body(text), WAIT, f"{text!r} at bob")
        ids = [e.get("id") for e in got.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == bob_jid]
        expect(len(ids) == 1, f"delivered message carries {len(ids)} stanza-ids by {bob_jid}")
        delivered_ids.append(ids[0])

    first, fin = await _query(bob, alice.jid.bare, "<max>2</max>")
    expect([b for _, b in first] == texts[:2], f"first page bodies {[b for _, b in first]}")
    expect([i for i, _ in first] == delivered_ids[:2], "first page ids differ from the delivered stanza-ids")
    expect(fin.get("complete") not in ("true", "1"), "first page of three claims to be complete")
    last = _rsm(fin, "last")
    expect(last == delivered_ids[1], f"RSM <last/> is {last!r}")

    second, fin = await _query(bob, alice.jid.bare, f"<max>2</max><after>{last}</after>")
    expect([i for i, _ in second] == delivered_ids[2:], f"second page {second}")
    expect(fin.get("complete") in ("true", "1"), "the last page is not marked complete")
    return "three messages in two pages, ids as delivered"


SCENARIOS = [
    Scenario(
        name="mam_query_paging",
        description="XEP-0313: bob pages through alice's messages two at a time; ids match the stanza-ids",
        run=archive_paging,
        accounts=("alice", "bob"),
    ),
]
