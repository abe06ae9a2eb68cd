"""XEP-0163 Personal Eventing Protocol with slixmpp's xep_0060, xep_0163, xep_0115, xep_0084, xep_0402 and
xep_0049 plugins: an OMEMO device list and bundle published by one contact reach the other (notification, then a
fetch), a stranger is refused the owner's presence-access node, XEP-0402 bookmarks are published and read back,
kept in step with XEP-0049 private XML by a server that advertises `urn:xmpp:bookmarks:1#compat`, XEP-0084
avatar metadata reaches a contact, and (XEP-0398) a vCard-temp PHOTO becomes the XEP-0084 avatar.

Notifications depend on the receiver's interest (XEP-0163 section 4.3 "filtered notifications"): each session here
announces XEP-0115 caps whose disco#info lists `<node>+notify` for what it wants, and re-sends its presence once
those caps are computed, so the server learns them from the presence it already routes to the publisher.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

from .. import scenario
from ..client import Session, open_session
from ..scenario import Context, Scenario, expect
from .roster import make_mutual

WAIT = 10.0
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
EVENT_NS = "http://jabber.org/protocol/pubsub#event"
CAPS_NS = "http://jabber.org/protocol/caps"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
PRIVATE_NS = "jabber:iq:private"
# OMEMO as deployed (XEP-0384 version 0.3, "eu.siacs.conversations.axolotl"): a device list node and one bundle
# node per device.
OMEMO_NS = "eu.siacs.conversations.axolotl"
DEVICELIST_NODE = f"{OMEMO_NS}.devicelist"
BUNDLES_NODE = f"{OMEMO_NS}.bundles"
AVATAR_METADATA_NS = "urn:xmpp:avatar:metadata"
AVATAR_DATA_NS = "urn:xmpp:avatar:data"
BOOKMARKS2_NS = "urn:xmpp:bookmarks:1"
BOOKMARKS_COMPAT = f"{BOOKMARKS2_NS}#compat"
LEGACY_BOOKMARKS_NS = "storage:bookmarks"
VCARD_CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
VCARD_UPDATE_NS = "vcard-temp:x:update"
PEP_PLUGINS = ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0402", "xep_0049")


async def login_pep(ctx: Context, role: str, interests: tuple[str, ...] = (), resource: str | None = None) -> Session:
    """A session with the PEP plugins whose caps announce `<ns>+notify` for each of `interests` (XEP-0163
    section 4.3; xep_0084 adds avatar metadata for every session). Its presence is sent again once the caps
    hash is computed, so the server sees the final caps whatever the order slixmpp computed them in."""

    def setup(session: Session) -> None:
        ctx.sessions.append(session)
        for plugin in PEP_PLUGINS:
            session.xmpp.register_plugin(plugin)

    jid = ctx.jid(role) if resource is None else f"{ctx.jid(role)}/{resource}"
    session = await open_session(ctx.endpoint, jid, ctx.password, on_created=setup)
    for namespace in interests:
        session.xmpp["xep_0163"].add_interest(namespace)
    await session.xmpp["xep_0115"].update_caps(broadcast=False)
    session.xmpp.send_presence()
    await session.sync()
    return session


async def mutual_contacts(ctx: Context, a: Session, b: Session) -> None:
    """Mutual subscription, then each re-sends presence and waits until the other has it with caps: from then on
    the server has the caps it needs to filter notifications for either (XEP-0163 section 4.3)."""
    await make_mutual(ctx, a, b)
    for sender, receiver in ((a, b), (b, a)):
        mark = receiver.presences.mark()
        sender.xmpp.send_presence()
        await receiver.presences.wait_for(
            lambda p, s=sender: p["from"] == s.jid and p.xml.find(f"{{{CAPS_NS}}}c") is not None,
            WAIT,
            f"presence with caps from {sender.jid} at {receiver.jid.bare}",
            after=mark,
        )


def publish_options(**fields: str):
    """A publish-options form (XEP-0060 section 7.1.5)."""
    form = ET.Element("{jabber:x:data}x", {"type": "submit"})
    for var, value in (("FORM_TYPE", f"{PUBSUB_NS}#publish-options"), *fields.items()):
        field = ET.SubElement(form, "{jabber:x:data}field", {"var": var})
        if var == "FORM_TYPE":
            field.set("type", "hidden")
        ET.SubElement(field, "{jabber:x:data}value").text = value
    return form


async def publish(session: Session, node: str, item_id: str, payload, what: str, options=None) -> None:
    """XEP-0163 section 4.1: publish to the user's own PEP service (no 'to'), with optional publish-options."""
    iq = session.xmpp.make_iq_set()
    pubsub = ET.SubElement(iq.xml, f"{{{PUBSUB_NS}}}pubsub")
    target = ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}publish", {"node": node})
    ET.SubElement(target, f"{{{PUBSUB_NS}}}item", {"id": item_id}).append(payload)
    if options is not None:
        ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}publish-options").append(options)
    await session.iq(iq.send(timeout=10), what)


async def items(session: Session, owner: str, node: str, what: str) -> list:
    """XEP-0060 section 6.5.2: every item of `node` at `owner`'s PEP service, as <item/> elements."""
    result = await session.iq(session.xmpp["xep_0060"].get_items(owner, node, timeout=10), what)
    found = result.xml.find(f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}items")
    expect(found is not None, f"{what}: result has no <items/>")
    expect(found.get("node") == node, f"{what}: <items node={found.get('node')!r}>, not {node!r}")
    return found.findall(f"{{{PUBSUB_NS}}}item")


def event_items(message, node: str):
    """The <items/> of a pubsub event notification (XEP-0060 section 7.1.2.1) for `node`, or None."""
    for found in message.xml.findall(f"{{{EVENT_NS}}}event/{{{EVENT_NS}}}items"):
        if found.get("node") == node:
            return found
    return None


def notification(publisher: str, node: str, predicate):
    def match(message) -> bool:
        found = event_items(message, node)
        return (
            found is not None
            and message["from"].bare == publisher
            and any(predicate(item) for item in found.findall(f"{{{EVENT_NS}}}item"))
        )

    return match


def device_list(device_id: int):
    devices = ET.Element(f"{{{OMEMO_NS}}}list")
    ET.SubElement(devices, f"{{{OMEMO_NS}}}device", {"id": str(device_id)})
    return devices


def bundle(identity_key: str):
    """A bundle with the parts XEP-0384 (0.3) section 4.3 names; the key material is random text."""
    b = ET.Element(f"{{{OMEMO_NS}}}bundle")
    ET.SubElement(b, f"{{{OMEMO_NS}}}signedPreKeyPublic", {"signedPreKeyId": "1"}).text = secrets.token_hex(16)
    ET.SubElement(b, f"{{{OMEMO_NS}}}signedPreKeySignature").text = secrets.token_hex(32)
    ET.SubElement(b, f"{{{OMEMO_NS}}}identityKey").text = identity_key
    prekeys = ET.SubElement(b, f"{{{OMEMO_NS}}}prekeys")
    for n in (1, 2):
        ET.SubElement(prekeys, f"{{{OMEMO_NS}}}preKeyPublic", {"preKeyId": str(n)}).text = secrets.token_hex(16)
    return b


def _lists_device(device_id: int):
    def match(item) -> bool:
        devices = item.find(f"{{{OMEMO_NS}}}list")
        return devices is not None and any(
            d.get("id") == str(device_id) for d in devices.findall(f"{{{OMEMO_NS}}}device")
        )

    return match


async def omemo_notify_and_fetch(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice")
    bob = await login_pep(ctx, "bob", interests=(DEVICELIST_NODE,))
    await mutual_contacts(ctx, alice, bob)
    device_id = secrets.randbelow(2**31 - 1) + 1
    identity_key = secrets.token_hex(16)
    bundle_node = f"{BUNDLES_NODE}:{device_id}"
    await publish(alice, bundle_node, "current", bundle(identity_key), "publishing the OMEMO bundle")
    await publish(alice, DEVICELIST_NODE, "current", device_list(device_id), "publishing the OMEMO device list")
    await bob.messages.wait_for(
        notification(alice.jid.bare, DEVICELIST_NODE, _lists_device(device_id)),
        WAIT,
        f"a {DEVICELIST_NODE} notification from alice listing device {device_id} at bob",
    )
    fetched = await items(bob, alice.jid.bare, bundle_node, "bob fetching alice's bundle")
    keys = [
        i.find(f"{{{OMEMO_NS}}}bundle/{{{OMEMO_NS}}}identityKey")
        for i in fetched
        if i.find(f"{{{OMEMO_NS}}}bundle") is not None
    ]
    expect(keys, f"alice's bundle node {bundle_node} gave bob no <bundle/> ({len(fetched)} items)")
    expect(
        keys[0] is not None and keys[0].text == identity_key,
        "the bundle bob fetched does not carry the identity key alice published",
    )
    return "device list notification reached the contact; bundle fetched with the published identity key"


async def stranger_refused(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice")
    bob = await login_pep(ctx, "bob", interests=(DEVICELIST_NODE,))
    stranger = await login_pep(ctx, "stranger", interests=(DEVICELIST_NODE,))
    await mutual_contacts(ctx, alice, bob)
    # Directed presence (RFC 6121 section 4.6) carries the stranger's caps to alice's account, so the server
    # knows of its +notify interest: only the access model can keep the notification from it.
    mark = alice.presences.mark()
    stranger.xmpp.send_presence(pto=alice.jid.bare)
    await alice.presences.wait_for(
        lambda p: p["from"] == stranger.jid and p.xml.find(f"{{{CAPS_NS}}}c") is not None,
        WAIT,
        "the stranger's directed presence with caps at alice",
        after=mark,
    )
    device_id = secrets.randbelow(2**31 - 1) + 1
    # No publish-options: the node gets PEP's default access model, "presence" (XEP-0163 section 4.1.1).
    await publish(alice, DEVICELIST_NODE, "current", device_list(device_id), "publishing the OMEMO device list")
    await bob.messages.wait_for(
        notification(alice.jid.bare, DEVICELIST_NODE, _lists_device(device_id)),
        WAIT,
        "the device list notification at alice's contact bob (the control)",
    )
    try:
        await stranger.xmpp["xep_0060"].get_items(alice.jid.bare, DEVICELIST_NODE, timeout=10)
    except IqError as err:
        # XEP-0060 section 6.5.9.8 (presence access model, not subscribed): not-authorized with
        # <presence-subscription-required/>; forbidden is the other authorization refusal servers use.
        expect(
            err.etype == "auth" and err.condition in ("not-authorized", "forbidden"),
            f"stranger's items request refused with {err.condition} ({err.etype}), not an auth error",
        )
        refusal = err.condition
    except IqTimeout:
        expect(False, "stranger's items request: no response")
    else:
        expect(False, "a stranger (no subscription) was given the items of alice's presence-access device list")
    await alice.sync()
    await stranger.sync()
    leaked = stranger.messages.matching(lambda m: event_items(m, DEVICELIST_NODE) is not None)
    expect(not leaked, f"the stranger received {len(leaked)} device list notification(s)")
    return f"stranger refused ({refusal}) and not notified; the subscribed contact was"


def _bookmark(name: str, nick: str):
    conference = ET.Element(f"{{{BOOKMARKS2_NS}}}conference", {"name": name, "autojoin": "true"})
    ET.SubElement(conference, f"{{{BOOKMARKS2_NS}}}nick").text = nick
    return conference


def _bookmark_options():
    # XEP-0402 section 3.2 (adding a bookmark): the publish-options every bookmark is published with.
    return publish_options(
        **{
            "pubsub#persist_items": "true",
            "pubsub#max_items": "max",
            "pubsub#send_last_published_item": "never",
            "pubsub#access_model": "whitelist",
        }
    )


async def bookmarks2(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice", resource="laptop")
    room = f"room-{secrets.token_hex(3)}@conference.{ctx.domain}"
    name = f"Room {secrets.token_hex(3)}"
    await publish(alice, BOOKMARKS2_NS, room, _bookmark(name, "al"), "publishing a bookmark", _bookmark_options())
    # Another client of the same account reads the bookmarks back (XEP-0402 section 3.1).
    phone = await login_pep(ctx, "alice", resource="phone")
    found = await items(phone, phone.jid.bare, BOOKMARKS2_NS, "retrieving the bookmarks")
    ours = [i for i in found if i.get("id") == room]
    expect(ours, f"no item {room} among {[i.get('id') for i in found]}")
    conference = ours[0].find(f"{{{BOOKMARKS2_NS}}}conference")
    expect(conference is not None, f"item {room} holds no <conference xmlns='{BOOKMARKS2_NS}'/>")
    expect(conference.get("name") == name, f"bookmark name {conference.get('name')!r}, not {name!r}")
    expect(conference.get("autojoin") in ("true", "1"), f"bookmark autojoin {conference.get('autojoin')!r}, not true")
    nick = conference.find(f"{{{BOOKMARKS2_NS}}}nick")
    expect(nick is not None and nick.text == "al", "bookmark nick not kept")
    return "bookmark published with XEP-0402 publish-options and read back by another resource"


async def _account_features(session: Session) -> list[str]:
    info = await session.iq(
        session.xmpp["xep_0030"].get_info(jid=session.jid.bare, timeout=10), "disco#info on the account"
    )
    return [f.get("var") for f in info.xml.findall(f"{{{DISCO_INFO_NS}}}query/{{{DISCO_INFO_NS}}}feature")]


async def _private_bookmarks(session: Session):
    """The XEP-0048 <storage xmlns='storage:bookmarks'/> from XEP-0049 private XML storage."""
    iq = session.xmpp.make_iq_get()
    iq["private"].xml.append(ET.Element(f"{{{LEGACY_BOOKMARKS_NS}}}storage"))
    result = await session.iq(iq.send(timeout=10), "private XML get of storage:bookmarks")
    storage = result.xml.find(f"{{{PRIVATE_NS}}}query/{{{LEGACY_BOOKMARKS_NS}}}storage")
    expect(storage is not None, "private XML get returned no <storage xmlns='storage:bookmarks'/>")
    return storage


async def bookmarks2_private_compat(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice")
    features = await _account_features(alice)
    expect(
        BOOKMARKS_COMPAT in features,
        f"the account does not advertise {BOOKMARKS_COMPAT}: bookmarks 2 and private XML are not kept in step",
    )
    # XEP-0402 section on compatibility, publishing via this specification: the item appears in the
    # storage:bookmarks list with the item id as its jid.
    room = f"pep-{secrets.token_hex(3)}@conference.{ctx.domain}"
    name = f"From PEP {secrets.token_hex(3)}"
    await publish(alice, BOOKMARKS2_NS, room, _bookmark(name, "al"), "publishing a bookmark", _bookmark_options())
    storage = await _private_bookmarks(alice)
    legacy = [c for c in storage.findall(f"{{{LEGACY_BOOKMARKS_NS}}}conference") if c.get("jid") == room]
    expect(legacy, f"the bookmark {room} published with XEP-0402 is not in private XML storage:bookmarks")
    expect(legacy[0].get("name") == name, f"private XML has name {legacy[0].get('name')!r}, not {name!r}")
    expect(legacy[0].get("autojoin") in ("true", "1"), "private XML lost autojoin")
    # Publishing via the old specification: a storage:bookmarks list stored with XEP-0049 becomes items.
    old_room = f"old-{secrets.token_hex(3)}@conference.{ctx.domain}"
    old_name = f"From private XML {secrets.token_hex(3)}"
    replacement = ET.Element(f"{{{LEGACY_BOOKMARKS_NS}}}storage")
    for jid, title in ((room, name), (old_room, old_name)):
        conference = ET.SubElement(
            replacement, f"{{{LEGACY_BOOKMARKS_NS}}}conference", {"jid": jid, "name": title, "autojoin": "true"}
        )
        ET.SubElement(conference, f"{{{LEGACY_BOOKMARKS_NS}}}nick").text = "al"
    await alice.iq(alice.xmpp["xep_0049"].store(replacement, timeout=10), "private XML set of storage:bookmarks")
    found = await items(alice, alice.jid.bare, BOOKMARKS2_NS, "retrieving the bookmarks")
    by_id = {i.get("id"): i.find(f"{{{BOOKMARKS2_NS}}}conference") for i in found}
    expect(old_room in by_id, f"the bookmark {old_room} stored with XEP-0049 is not a XEP-0402 item ({sorted(by_id)})")
    expect(
        by_id[old_room] is not None and by_id[old_room].get("name") == old_name,
        f"the XEP-0402 item {old_room} does not carry the name stored with XEP-0049",
    )
    return "XEP-0402 bookmark visible in private XML, and a private XML bookmark visible as a XEP-0402 item"


async def avatar_metadata(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice")
    bob = await login_pep(ctx, "bob", interests=(AVATAR_METADATA_NS,))
    await mutual_contacts(ctx, alice, bob)
    image = secrets.token_bytes(64)
    avatar_id = hashlib.sha1(image).hexdigest()
    avatar = alice.xmpp["xep_0084"]
    # XEP-0084 section 4.1 then 4.2: the data first, then the metadata pointing at it.
    await alice.iq(avatar.publish_avatar(image, timeout=10), "publishing avatar data")
    info = {"id": avatar_id, "type": "image/png", "bytes": len(image)}
    await alice.iq(avatar.publish_avatar_metadata(info, timeout=10), "publishing avatar metadata")

    def names_avatar(item) -> bool:
        meta = item.find(f"{{{AVATAR_METADATA_NS}}}metadata/{{{AVATAR_METADATA_NS}}}info")
        return item.get("id") == avatar_id and meta is not None and meta.get("id") == avatar_id

    await bob.messages.wait_for(
        notification(alice.jid.bare, AVATAR_METADATA_NS, names_avatar),
        WAIT,
        f"an avatar metadata notification from alice naming {avatar_id} at bob",
    )
    data = await bob.iq(avatar.retrieve_avatar(alice.jid.bare, avatar_id, timeout=10), "bob fetching the avatar")
    value = data.xml.find(f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}items/{{{PUBSUB_NS}}}item/{{{AVATAR_DATA_NS}}}data")
    expect(value is not None and value.text, "the avatar data item bob fetched is empty")
    expect(base64.b64decode(value.text) == image, "the avatar data bob fetched is not what alice published")
    return "avatar metadata notification reached the contact; data fetched by its id"


async def vcard_photo_to_avatar(ctx: Context) -> str:
    alice = await login_pep(ctx, "alice")
    bob = await login_pep(ctx, "bob", interests=(AVATAR_METADATA_NS,))
    await mutual_contacts(ctx, alice, bob)
    features = await _account_features(alice)
    expect(
        VCARD_CONVERSION in features,
        f"the account does not advertise {VCARD_CONVERSION}: a vCard photo is not published as the avatar",
    )
    image = secrets.token_bytes(64)
    avatar_id = hashlib.sha1(image).hexdigest()
    # XEP-0398 section 3.2: a XEP-0054 vCard set with a PHOTO, as a XEP-0153 client does it.
    iq = alice.xmpp.make_iq_set()
    vcard = ET.SubElement(iq.xml, "{vcard-temp}vCard")
    ET.SubElement(vcard, "{vcard-temp}FN").text = "Alice"
    photo = ET.SubElement(vcard, "{vcard-temp}PHOTO")
    ET.SubElement(photo, "{vcard-temp}TYPE").text = "image/png"
    ET.SubElement(photo, "{vcard-temp}BINVAL").text = base64.b64encode(image).decode()
    mark = bob.presences.mark()
    await alice.iq(iq.send(timeout=10), "vCard set with a PHOTO")

    def names_avatar(item) -> bool:
        meta = item.find(f"{{{AVATAR_METADATA_NS}}}metadata/{{{AVATAR_METADATA_NS}}}info")
        return (
            item.get("id") == avatar_id
            and meta is not None
            and meta.get("id") == avatar_id
            and meta.get("bytes") == str(len(image))
        )

    await bob.messages.wait_for(
        notification(alice.jid.bare, AVATAR_METADATA_NS, names_avatar),
        WAIT,
        f"avatar metadata naming the vCard photo {avatar_id} at bob",
    )
    data = await bob.iq(
        alice.xmpp["xep_0084"].retrieve_avatar(alice.jid.bare, avatar_id, timeout=10), "bob fetching the avatar"
    )
    value = data.xml.find(f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}items/{{{PUBSUB_NS}}}item/{{{AVATAR_DATA_NS}}}data")
    expect(value is not None and value.text, "the avatar data item bob fetched is empty")
    expect(base64.b64decode(value.text) == image, "the avatar data bob fetched is not the vCard photo")
    # XEP-0398 section 4: alice's presence carries the hash (XEP-0153), whether the server sent it again on its own
    # or stamps the next one she sends.
    alice.xmpp.send_presence()

    def with_hash(presence) -> bool:
        found = presence.xml.find(f"{{{VCARD_UPDATE_NS}}}x/{{{VCARD_UPDATE_NS}}}photo")
        return presence["from"].bare == alice.jid.bare and found is not None and found.text == avatar_id

    await bob.presences.wait_for(with_hash, WAIT, f"alice's presence with photo hash {avatar_id} at bob", after=mark)
    return "vCard photo published as XEP-0084 data and metadata, notified, fetched, and its hash in presence"


SCENARIOS = [
    Scenario(
        name="pep_omemo_notify_and_fetch",
        description="XEP-0163: an OMEMO device list notification reaches a subscribed contact with +notify caps, "
        "who then fetches the bundle",
        run=omemo_notify_and_fetch,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="pep_stranger_refused",
        description="XEP-0163/XEP-0060: a stranger is refused the items of a presence-access node and not notified",
        run=stranger_refused,
        accounts=("alice", "bob", "stranger"),
    ),
    Scenario(
        name="pep_bookmarks2",
        description="XEP-0402: a bookmark published with its publish-options is read back by another resource",
        run=bookmarks2,
        accounts=("alice",),
    ),
    Scenario(
        name="pep_bookmarks2_private_compat",
        description="XEP-0402 compatibility (#compat): bookmarks 2 and XEP-0049 storage:bookmarks kept in step",
        run=bookmarks2_private_compat,
        accounts=("alice",),
        requires=(scenario.BOOKMARKS_COMPAT,),
    ),
    Scenario(
        name="pep_avatar_metadata_notify",
        description="XEP-0084: avatar metadata notification reaches a contact, who fetches the data by its id",
        run=avatar_metadata,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="pep_vcard_photo_to_avatar",
        description="XEP-0398: a vCard-temp PHOTO becomes the XEP-0084 avatar, notified to a contact, with its hash "
        "in presence",
        run=vcard_photo_to_avatar,
        accounts=("alice", "bob"),
    ),
]
