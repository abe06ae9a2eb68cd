// Conformance scenarios driven by xmpp.js (@xmpp/client, pinned in package-lock.json), a client library
// Herald did not write, so no result rests on slixmpp's quirks alone. Run by conformance/xmppconf/xmppjs.py:
//
//   node driver.mjs SCENARIO '{"domain":..,"host":..,"c2s_port":..,"direct_tls_port":..,"password":..,
//                               "jids":{"alice":"..@localhost",..}}'
//
// prints one JSON line {"result": "pass"|"fail", "reason": "..."} and exits 0 (1 on a harness error).
// The servers use throwaway self-signed certificates, so the runner sets NODE_TLS_REJECT_UNAUTHORIZED=0;
// every session must still be encrypted (STARTTLS on the c2s port, or XEP-0368 direct TLS), which each
// login checks. Stanzas are awaited as events with a bound, never by sleeping.

import crypto from "node:crypto";
import tlsModule from "node:tls";

import { client, xml } from "@xmpp/client";

const WAIT_MS = 10_000;
const NS = {
  roster: "jabber:iq:roster",
  ping: "urn:xmpp:ping",
  discoInfo: "http://jabber.org/protocol/disco#info",
  delay: "urn:xmpp:delay",
  sid: "urn:xmpp:sid:0",
  mam: "urn:xmpp:mam:2",
  rsm: "http://jabber.org/protocol/rsm",
  forward: "urn:xmpp:forward:0",
  carbons: "urn:xmpp:carbons:2",
  hints: "urn:xmpp:hints",
  data: "jabber:x:data",
};

class Failure extends Error {}

function expect(condition, reason) {
  if (!condition) throw new Failure(reason);
}

const bare = (jid) => String(jid).split("/")[0];

// Every inbound stanza of a session, in arrival order, awaitable by predicate (XML nodes of @xmpp/xml).
class Inbox {
  items = [];
  #waiters = [];
  push(stanza) {
    this.items.push(stanza);
    for (const w of this.#waiters.splice(0)) w();
  }
  mark() {
    return this.items.length;
  }
  matching(pred, after = 0) {
    return this.items.slice(after).filter(pred);
  }
  async waitFor(pred, what, after = 0, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.matching(pred, after);
      if (found.length) return found[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Failure(`timed out after ${ms / 1000}s waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const sessions = [];

// Connect, secure, authenticate with `mechanism` (or the library's choice) and bind; with `presence`,
// fetch the roster and send initial presence (RFC 6121 sections 2.2 and 4.2).
async function login(env, role, { transport = "starttls", mechanism = null, resource, presence = true, password, cb } = {}) {
  const service =
    transport === "directtls" ? `xmpps://${env.host}:${env.direct_tls_port}` : `xmpp://${env.host}:${env.c2s_port}`;
  const username = env.jids[role].split("@")[0];
  const session = { inbox: new Inbox(), mechanism: null };
  const xmpp = client({
    service,
    domain: env.domain,
    resource,
    // xmpp.js waits 2 s by default for each negotiation answer (stream header, <proceed/>); a debug build on a
    // shared machine can take longer, so allow what the scenarios allow any step.
    timeout: WAIT_MS,
    credentials: async (authenticate, mechanisms) => {
      const mech = mechanism ?? mechanisms[0];
      if (!mechanisms.includes(mech)) throw new Failure(`${mech} not offered to xmpp.js (usable: ${mechanisms})`);
      session.mechanism = mech;
      const creds = { username, password: password ?? env.password };
      if (cb) Object.assign(creds, channelBinding(xmpp, cb), { session });
      await authenticate(creds, mech);
    },
  });
  if (cb) xmpp.saslFactory.use(cb.mechanism, scramPlus(cb.mechanism));
  xmpp.on("element", (el) => {
    // The features offering SASL (after TLS), where XEP-0440 lists the channel-binding types.
    if (el.is("features", "http://etherx.jabber.org/streams") && el.getChild("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")) {
      session.features = el;
    }
    if (el.is("success", "urn:ietf:params:xml:ns:xmpp-sasl")) session.saslSuccess = el.text();
  });
  xmpp.reconnect.stop();
  xmpp.on("error", () => {}); // surfaced through start() or the awaited stanzas
  xmpp.on("stanza", (s) => session.inbox.push(s));
  session.xmpp = xmpp;
  sessions.push(session);
  try {
    session.jid = String(await withTimeout(xmpp.start(), 15_000, `${transport} login`));
  } catch (err) {
    if (err instanceof Failure) throw err;
    // A SASL <failure/> has a condition (SASLError); anything else is reported with its name and message.
    throw new Failure(err.condition ? `login failed: ${err.condition}` : `login failed: ${err.name}: ${err.message || err.code || err}`);
  }
  const tls = xmpp.socket?.socket?.getProtocol?.();
  expect(xmpp.isSecure() && tls, "session established without TLS");
  session.tls = tls;
  if (presence) {
    await rosterGet(session);
    const mark = session.inbox.mark();
    await xmpp.send(xml("presence"));
    // RFC 6121 section 4.2.2: the server echoes initial presence to the sender; once it has, the session is
    // available and a message to the bare JID reaches it (not the offline store).
    await session.inbox.waitFor((s) => isPresence("available")(s) && s.attrs.from === session.jid, "own initial presence echoed", mark);
  }
  return session;
}

async function withTimeout(promise, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Failure(`timed out after ${ms / 1000}s: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timer]);
  } finally {
    clearTimeout(t);
  }
}

async function iq(session, stanza, what) {
  try {
    return await session.xmpp.iqCaller.request(stanza, WAIT_MS);
  } catch (err) {
    throw new Failure(`${what}: ${err.condition ? `error ${err.condition}` : err.message}`);
  }
}

async function rosterGet(session) {
  const result = await iq(session, xml("iq", { type: "get" }, xml("query", { xmlns: NS.roster })), "roster get");
  const items = {};
  for (const item of result.getChild("query", NS.roster)?.getChildren("item") ?? []) items[item.attrs.jid] = item;
  return items;
}

// A round trip with core RFC 6121 only (a roster get), so a server without XEP-0199 fails only ping_server:
// RFC 6120 section 10.1 has the server process a stream's stanzas in order.
const sync = (session) => rosterGet(session);

const isPresence = (type) => (s) => s.is("presence") && (s.attrs.type ?? "available") === type;
const from = (jid) => (s) => s.attrs.from === jid || bare(s.attrs.from ?? "") === jid;

// RFC 6121 section 3.1 both ways; waits for the roster push with subscription='both' on each side.
async function subscribeBoth(env, a, b) {
  for (const [x, y] of [
    [a, b],
    [b, a],
  ]) {
    const yMark = y.inbox.mark();
    const xMark = x.inbox.mark();
    await x.xmpp.send(xml("presence", { to: bare(y.jid), type: "subscribe" }));
    await y.inbox.waitFor((s) => isPresence("subscribe")(s) && bare(s.attrs.from) === bare(x.jid), "subscribe", yMark);
    await y.xmpp.send(xml("presence", { to: bare(x.jid), type: "subscribed" }));
    await x.inbox.waitFor((s) => isPresence("subscribed")(s) && bare(s.attrs.from) === bare(y.jid), "subscribed", xMark);
  }
  for (const [x, y] of [
    [a, b],
    [b, a],
  ]) {
    await x.inbox.waitFor(
      (s) =>
        s.is("iq") &&
        s.attrs.type === "set" &&
        s.getChild("query", NS.roster)?.getChildren("item").some((i) => i.attrs.jid === bare(y.jid) && i.attrs.subscription === "both"),
      `roster push subscription=both for ${bare(y.jid)}`,
    );
  }
}

const body = (s) => s.getChildText("body");

// OURS, not xmpp.js's: SCRAM-SHA-1-PLUS / SCRAM-SHA-256-PLUS (RFC 5802 section 6, RFC 7677) as a mechanism for
// xmpp.js's SASL factory, with the binding data from Node's TLS (OpenSSL), a TLS stack other than the rustls
// that Herald and our Rust client (tests/src/bin/herald_cb_client.rs) share. The server's final `v=` is
// checked by the caller against creds.session.expectedServerSignature.
function scramPlus(mechanism) {
  const hash = mechanism.startsWith("SCRAM-SHA-1-") ? "sha1" : "sha256";
  const hmac = (key, data) => crypto.createHmac(hash, key).update(data).digest();
  return class ScramPlus {
    name = mechanism;
    clientFirst = true;
    #serverFirst = null;
    response(creds) {
      if (this.#serverFirst === null) {
        this.nonce = crypto.randomBytes(18).toString("base64");
        this.gs2 = `p=${creds.binding},,`;
        this.firstBare = `n=${creds.username},r=${this.nonce}`;
        return this.gs2 + this.firstBare;
      }
      const attrs = Object.fromEntries(this.#serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
      if (!attrs.r?.startsWith(this.nonce)) throw new Failure("server nonce does not extend ours");
      const salted = crypto.pbkdf2Sync(creds.password, Buffer.from(attrs.s, "base64"), Number(attrs.i), hash === "sha1" ? 20 : 32, hash);
      const clientKey = hmac(salted, "Client Key");
      const storedKey = crypto.createHash(hash).update(clientKey).digest();
      // RFC 5802 section 7: c= is base64(gs2-header || channel-binding data).
      const withoutProof = `c=${Buffer.concat([Buffer.from(this.gs2), creds.bindingData]).toString("base64")},r=${attrs.r}`;
      const authMessage = `${this.firstBare},${this.#serverFirst},${withoutProof}`;
      const signature = hmac(storedKey, authMessage);
      const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
      creds.session.expectedServerSignature = "v=" + hmac(hmac(salted, "Server Key"), authMessage).toString("base64");
      return `${withoutProof},p=${proof.toString("base64")}`;
    }
    challenge(text) {
      this.#serverFirst = text;
      return this;
    }
  };
}

// The binding data from the TLS socket xmpp.js negotiated (OpenSSL): RFC 9266 tls-exporter, or RFC 5929
// section 4.1 tls-server-end-point (the certificate hashed with its signature's hash, SHA-256 for MD5/SHA-1).
function channelBinding(xmpp, { binding, corrupt }) {
  const tls = xmpp.socket.socket;
  let data;
  if (binding === "tls-unique") {
    // RFC 5929 section 3.1: the first Finished message of the handshake, ours on a full handshake; TLS 1.2 only.
    if (tls.getProtocol() !== "TLSv1.2" || tls.isSessionReused()) throw new Failure(`tls-unique needs a full TLS 1.2 handshake`);
    data = tls.getFinished();
  } else if (binding === "tls-exporter") {
    if (tls.getProtocol() !== "TLSv1.3") throw new Failure(`tls-exporter needs TLS 1.3, got ${tls.getProtocol()}`);
    data = tls.exportKeyingMaterial(32, "EXPORTER-Channel-Binding");
  } else {
    const der = tls.getPeerCertificate(true).raw;
    data = crypto.createHash(endPointHash(der)).update(der).digest();
  }
  if (corrupt) data[0] ^= 1;
  return { binding, bindingData: data };
}

// The signatureAlgorithm OID of a DER certificate (RFC 5280 section 4.1: SEQUENCE { tbs, algorithm, value }).
function endPointHash(der) {
  const header = (at) => {
    let len = der[at + 1];
    let start = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i];
      start += n;
    }
    return { start, end: start + len };
  };
  const tbs = header(header(0).start);
  const alg = header(tbs.end);
  const oid = header(alg.start);
  const hex = der.subarray(oid.start, oid.end).toString("hex");
  const byOid = {
    "2a864886f70d01010c": "sha384", // sha384WithRSAEncryption
    "2a8648ce3d040303": "sha384", // ecdsa-with-SHA384
    "2a864886f70d01010d": "sha512", // sha512WithRSAEncryption
    "2a8648ce3d040304": "sha512", // ecdsa-with-SHA512
  };
  return byOid[hex] ?? "sha256";
}

async function cbLogin(env, mechanism, binding, corrupt) {
  // tls-unique exists only up to TLS 1.2 (RFC 9266 section 1); the others are computed over TLS 1.3.
  if (binding === "tls-unique") tlsModule.DEFAULT_MAX_VERSION = "TLSv1.2";
  try {
    const s = await login(env, "user", { mechanism, presence: false, cb: { mechanism, binding, corrupt } });
    if (corrupt) throw new Failure(`${mechanism} with a corrupted ${binding} was ACCEPTED`);
    expect(s.saslSuccess !== undefined && atob(s.saslSuccess) === s.expectedServerSignature, "the server's v= does not prove it knows the password");
    expect(bare(s.jid) === env.jids.user, `bound ${s.jid}`);
    const types = s.features?.getChild("sasl-channel-binding", "urn:xmpp:sasl-cb:0")?.getChildren("channel-binding").map((c) => c.attrs.type);
    return `${mechanism} ${binding} over ${s.tls} (Node/OpenSSL binding data), XEP-0440 types ${JSON.stringify(types ?? [])}`;
  } catch (err) {
    if (!corrupt || err.message.includes("ACCEPTED")) throw err;
    // Any SASL <failure/> refuses it (RFC 5802 section 7 has `e=channel-bindings-dont-match`, which RFC 6120
    // section 6.5 does not map to one condition: Herald says not-authorized, Prosody malformed-request).
    const condition = /^login failed: ([a-z-]+)$/.exec(err.message)?.[1];
    expect(condition, `not refused with a SASL failure: ${err.message}`);
    return `corrupted ${binding} refused with ${condition} (Node/OpenSSL binding data)`;
  }
}

const SCENARIOS = {
  ...Object.fromEntries(
    ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"].flatMap((mech) =>
      ["tls-exporter", "tls-server-end-point", "tls-unique"].flatMap((binding) => {
        const slug = `${mech}_${binding}`.toLowerCase().replaceAll("-", "_");
        return [
          [`ours_${slug}`, (env) => cbLogin(env, mech, binding, false)],
          [`ours_${slug}_wrong_binding_refused`, (env) => cbLogin(env, mech, binding, true)],
        ];
      }),
    ),
  ),
  async auth_scram_sha_1_starttls(env) {
    return authWith(env, "SCRAM-SHA-1", "starttls");
  },
  async auth_scram_sha_1_directtls(env) {
    return authWith(env, "SCRAM-SHA-1", "directtls");
  },
  async auth_plain_starttls(env) {
    return authWith(env, "PLAIN", "starttls");
  },
  async auth_plain_directtls(env) {
    return authWith(env, "PLAIN", "directtls");
  },

  async auth_wrong_password_rejected(env) {
    try {
      await login(env, "user", { password: env.password + "-wrong", presence: false });
    } catch (err) {
      // RFC 6120 section 6.5.10.
      expect(/not-authorized/.test(err.message), `refused, but not with not-authorized: ${err.message}`);
      return "refused with not-authorized";
    }
    throw new Failure("login with a wrong password succeeded");
  },

  async roster_subscription_both(env) {
    const alice = await login(env, "alice");
    const bob = await login(env, "bob");
    await subscribeBoth(env, alice, bob);
    for (const [x, y] of [
      [alice, bob],
      [bob, alice],
    ]) {
      const items = await rosterGet(x);
      const sub = items[bare(y.jid)]?.attrs.subscription;
      expect(sub === "both", `${bare(x.jid)}'s roster shows ${bare(y.jid)} with subscription=${sub}`);
    }
    return "both rosters show subscription='both'";
  },

  async presence_initial_and_unavailable(env) {
    const alice = await login(env, "alice");
    const bob = await login(env, "bob");
    await subscribeBoth(env, alice, bob);
    const mark = alice.inbox.mark();
    const bob2 = await login(env, "bob", { resource: "second" });
    await alice.inbox.waitFor((s) => isPresence("available")(s) && s.attrs.from === bob2.jid, `presence from ${bob2.jid}`, mark);
    await bob2.inbox.waitFor((s) => isPresence("available")(s) && s.attrs.from === alice.jid, `probe answer from ${alice.jid}`);
    await bob2.xmpp.stop();
    await alice.inbox.waitFor((s) => isPresence("unavailable")(s) && s.attrs.from === bob2.jid, `unavailable from ${bob2.jid}`, mark);
    return "initial presence, probe answer and unavailable all seen";
  },

  async chat_between_users(env) {
    const alice = await login(env, "alice");
    const bob = await login(env, "bob");
    const text = `hello ${Math.random()}`;
    await alice.xmpp.send(xml("message", { to: bare(bob.jid), type: "chat" }, xml("body", {}, text)));
    const got = await bob.inbox.waitFor((s) => s.is("message") && body(s) === text, "alice's message");
    expect(got.attrs.from === alice.jid, `from ${got.attrs.from}, expected ${alice.jid}`);
    expect(got.attrs.type === "chat", `type ${got.attrs.type}, expected chat`);
    await bob.xmpp.send(xml("message", { to: alice.jid, type: "chat" }, xml("body", {}, "re: " + text)));
    const reply = await alice.inbox.waitFor((s) => s.is("message") && body(s) === "re: " + text, "bob's reply");
    expect(reply.attrs.from === bob.jid, `reply from ${reply.attrs.from}, expected ${bob.jid}`);
    return "delivered both ways with full JIDs and type chat";
  },

  async offline_delivery_with_delay(env) {
    const alice = await login(env, "alice");
    const text = `while you were away ${Math.random()}`;
    const mark = alice.inbox.mark();
    await alice.xmpp.send(xml("message", { to: env.jids.bob, type: "chat" }, xml("body", {}, text)));
    await sync(alice);
    const bounced = alice.inbox.matching((s) => s.is("message") && s.attrs.type === "error", mark);
    expect(bounced.length === 0, `bounced: ${bounced[0]?.getChild("error")?.children?.[0]?.name}`);
    const bob = await login(env, "bob");
    const got = await bob.inbox.waitFor((s) => s.is("message") && body(s) === text, "the offline message");
    const delay = got.getChild("delay", NS.delay);
    expect(delay, "no XEP-0203 <delay/>");
    // XEP-0082 DateTime.
    const stamp = delay.attrs.stamp ?? "";
    expect(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(stamp) && !isNaN(Date.parse(stamp)), `bad stamp ${stamp}`);
    return `delivered with delay stamp ${stamp}`;
  },

  async ping_server(env) {
    const s = await login(env, "user", { presence: false });
    await iq(s, xml("iq", { type: "get", to: env.domain }, xml("ping", { xmlns: NS.ping })), "ping");
    return "pong";
  },

  async disco_info_server(env) {
    const s = await login(env, "user", { presence: false });
    const res = await iq(s, xml("iq", { type: "get", to: env.domain }, xml("query", { xmlns: NS.discoInfo })), "disco#info");
    const q = res.getChild("query", NS.discoInfo);
    const ids = q?.getChildren("identity") ?? [];
    expect(ids.some((i) => i.attrs.category === "server" && i.attrs.type === "im"), "no identity server/im");
    const features = (q?.getChildren("feature") ?? []).map((f) => f.attrs.var);
    expect(features.includes(NS.discoInfo), "disco#info not among the features");
    return `${features.length} features, identity server/im`;
  },

  async mam_query_paging(env) {
    const alice = await login(env, "alice");
    const bob = await login(env, "bob");
    const tag = Math.random().toString(36).slice(2);
    const delivered = [];
    for (const n of [1, 2, 3]) {
      await alice.xmpp.send(xml("message", { to: bare(bob.jid), type: "chat" }, xml("body", {}, `mam ${tag} ${n}`)));
      const got = await bob.inbox.waitFor((s) => s.is("message") && body(s) === `mam ${tag} ${n}`, `message ${n}`);
      const ids = got.getChildren("stanza-id", NS.sid).filter((e) => e.attrs.by === bare(bob.jid));
      expect(ids.length === 1, `message ${n} carries ${ids.length} stanza-id by ${bare(bob.jid)}`);
      delivered.push(ids[0].attrs.id);
    }
    const page = async (queryid, after) => {
      const mark = bob.inbox.mark();
      const set = xml("set", { xmlns: NS.rsm }, xml("max", {}, "2"), after ? xml("after", {}, after) : null);
      const form = xml(
        "x",
        { xmlns: NS.data, type: "submit" },
        xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, NS.mam)),
        xml("field", { var: "with" }, xml("value", {}, bare(alice.jid))),
      );
      const res = await iq(bob, xml("iq", { type: "set" }, xml("query", { xmlns: NS.mam, queryid }, form, set)), "MAM query");
      const fin = res.getChild("fin", NS.mam);
      expect(fin, "no <fin/>");
      // XEP-0313 section 4.2: results come before the <fin/> IQ.
      const results = bob.inbox
        .matching((s) => s.is("message") && s.getChild("result", NS.mam)?.attrs.queryid === queryid, mark)
        .map((s) => s.getChild("result", NS.mam));
      return { fin, ids: results.map((r) => r.attrs.id), last: fin.getChild("set", NS.rsm)?.getChildText("last") };
    };
    const first = await page("q1");
    expect(JSON.stringify(first.ids) === JSON.stringify(delivered.slice(0, 2)), `first page ${first.ids}, expected ${delivered.slice(0, 2)}`);
    expect(first.fin.attrs.complete !== "true", "first page says complete");
    const second = await page("q2", first.last);
    expect(JSON.stringify(second.ids) === JSON.stringify(delivered.slice(2)), `second page ${second.ids}, expected ${delivered.slice(2)}`);
    expect(second.fin.attrs.complete === "true", "second page not complete");
    return "two pages, ids equal to the delivered stanza-ids";
  },

  async carbons_two_resources(env) {
    const phone = await login(env, "alice", { resource: "phone" });
    const laptop = await login(env, "alice", { resource: "laptop" });
    const bob = await login(env, "bob");
    for (const s of [phone, laptop]) {
      await iq(s, xml("iq", { type: "set" }, xml("enable", { xmlns: NS.carbons })), "carbons enable");
    }
    const tag = Math.random().toString(36).slice(2);
    const carbon = (kind, text) => (s) =>
      s.is("message") &&
      s.attrs.from === bare(phone.jid) &&
      s.getChild(kind, NS.carbons)?.getChild("forwarded", NS.forward)?.getChild("message")?.getChildText("body") === text;
    // XEP-0280 section 7: received carbon.
    await bob.xmpp.send(xml("message", { to: phone.jid, type: "chat" }, xml("body", {}, `in ${tag}`)));
    await laptop.inbox.waitFor(carbon("received", `in ${tag}`), "received carbon on the laptop");
    // Section 8: sent carbon.
    await phone.xmpp.send(xml("message", { to: bare(bob.jid), type: "chat" }, xml("body", {}, `out ${tag}`)));
    await laptop.inbox.waitFor(carbon("sent", `out ${tag}`), "sent carbon on the laptop");
    // Section 9: <private/> is not copied.
    const mark = laptop.inbox.mark();
    await phone.xmpp.send(
      xml("message", { to: bare(bob.jid), type: "chat" }, xml("body", {}, `private ${tag}`), xml("private", { xmlns: NS.carbons }), xml("no-copy", { xmlns: NS.hints })),
    );
    const got = await bob.inbox.waitFor((s) => s.is("message") && body(s) === `private ${tag}`, "the private message at bob");
    expect(!got.getChild("private", NS.carbons), "bob got the <private/> marker");
    await sync(phone);
    await sync(laptop);
    expect(laptop.inbox.matching(carbon("sent", `private ${tag}`), mark).length === 0, "the private message was carbon-copied");
    const own = phone.inbox.matching((s) => s.is("message") && (s.getChild("sent", NS.carbons) || s.getChild("received", NS.carbons)));
    expect(own.length === 0, "the phone got a carbon of its own traffic");
    return "received and sent carbons, private not copied";
  },
};

async function authWith(env, mechanism, transport) {
  const s = await login(env, "user", { transport, mechanism, presence: false });
  expect(s.mechanism === mechanism, `authenticated with ${s.mechanism}, not ${mechanism}`);
  expect(bare(s.jid) === env.jids.user, `bound ${s.jid}, expected a resource of ${env.jids.user}`);
  expect(s.jid.includes("/"), `bound JID ${s.jid} has no resource`);
  await rosterGet(s);
  return `${mechanism} over ${s.tls} (${transport})`;
}

async function main() {
  const [name, spec] = process.argv.slice(2);
  if (name === "--list") {
    console.log(JSON.stringify(Object.keys(SCENARIOS)));
    return 0;
  }
  const scenario = SCENARIOS[name];
  if (!scenario) {
    console.log(JSON.stringify({ result: "fail", reason: `unknown xmpp.js scenario ${name}` }));
    return 1;
  }
  let out;
  try {
    out = { result: "pass", reason: (await scenario(JSON.parse(spec))) ?? "ok" };
  } catch (err) {
    out = { result: "fail", reason: err instanceof Failure ? err.message : `harness error: ${err.stack ?? err}` };
  } finally {
    for (const s of sessions) {
      try {
        await withTimeout(s.xmpp.stop(), 3000, "stop");
      } catch {
        s.xmpp.socket?.socket?.destroy?.();
      }
    }
  }
  console.log(JSON.stringify(out));
  return 0;
}

process.exit(await main());
