//! XEP-0198: Stream Management. Section 3 (enabling), section 4 (acks: `<r/>`, `<a h=.../>`, the
//! counters modulo 2^32 and `handled-count-too-high`) and section 5 (resumption ids, `<resume/>`,
//! `<resumed/>`, `<failed/>`).
//!
//! This is the state of one session's stream management, and the nonzas read and written; the session
//! (`c2s/session.rs`) drives it and the negotiation (`c2s/negotiation.rs`) answers `<resume/>`. It is
//! pure: no I/O, no clock, so the counters are tested here.
//!
//! Memory: a session that never enables stream management holds no state at all (its `Option<Box<..>>`
//! is a null pointer); one that does holds this struct on the heap and the stanzas not yet acknowledged.

use std::collections::VecDeque;

use crate::xmpp::{Element, WireStanza, ns, set_attribute};

/// A nonza in the stream management namespace, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmNonza {
    /// `<enable/>` (section 3), asking for resumption when `resume='true'` or `'1'`, and with `max`
    /// the longest time in seconds the client wants the session kept for it.
    Enable { resume: bool, max: Option<u32> },
    /// `<r/>`: the client asks how many of its stanzas we handled (section 4).
    Request,
    /// `<a h=.../>`: how many of ours the client handled (section 4).
    Ack { h: u32 },
    /// `<resume previd=... h=.../>` (section 5).
    Resume { previd: String, h: u32 },
    /// In the namespace but not something a client may send, or with a missing or malformed `h`.
    Malformed,
}

impl SmNonza {
    /// Reads `element`; `None` when it is not in the stream management namespace.
    pub fn parse(element: &Element) -> Option<SmNonza> {
        if element.ns() != ns::SM {
            return None;
        }
        let h = || element.attr("h").and_then(|h| h.parse::<u32>().ok());
        Some(match element.name() {
            "enable" => SmNonza::Enable {
                resume: matches!(element.attr("resume"), Some("true" | "1")),
                // A `max` that is not a number of seconds is ignored, as if absent.
                max: element.attr("max").and_then(|max| max.parse().ok()),
            },
            "r" => SmNonza::Request,
            "a" => h().map_or(SmNonza::Malformed, |h| SmNonza::Ack { h }),
            "resume" => match (element.attr("previd"), h()) {
                (Some(previd), Some(h)) if !previd.is_empty() => SmNonza::Resume {
                    previd: previd.to_owned(),
                    h,
                },
                _ => SmNonza::Malformed,
            },
            _ => SmNonza::Malformed,
        })
    }
}

/// The client acknowledged more stanzas than we sent it (section 4, `handled-count-too-high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandledCountTooHigh {
    pub h: u32,
    pub send_count: u32,
}

/// One session's stream management state.
#[derive(Debug)]
pub struct StreamManagement {
    /// The resumption id (section 5), when the client asked for resumption and it is allowed.
    resume_id: Option<String>,
    /// Stanzas received from the client since enabling, modulo 2^32 (section 4).
    inbound: u32,
    /// The last `h` the client acknowledged: stanzas of ours it handled, modulo 2^32.
    acked: u32,
    /// Stanzas sent after `acked`, oldest first: what a resumption retransmits, or what is routed again
    /// when the session ends.
    unacked: VecDeque<WireStanza>,
    /// Their serialised bytes, which is what they hold in memory.
    unacked_bytes: usize,
    /// We sent `<r/>` and no `<a/>` has come since.
    is_request_pending: bool,
}

impl StreamManagement {
    /// The state right after `<enable/>`: every counter at zero (section 4).
    pub fn new(resume_id: Option<String>) -> StreamManagement {
        StreamManagement {
            resume_id,
            inbound: 0,
            acked: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            is_request_pending: false,
        }
    }

    pub fn resume_id(&self) -> Option<&str> {
        self.resume_id.as_deref()
    }

    /// Stanzas received from the client so far, the `h` we report.
    pub fn inbound(&self) -> u32 {
        self.inbound
    }

    /// One more stanza from the client was handled.
    pub fn received(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// Stanzas sent to the client, modulo 2^32.
    pub fn sent(&self) -> u32 {
        // The queue never holds 2^32 stanzas (it is bounded far below), so the cast is exact.
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// `stanzas` were written to the client (or may have been, when the write failed part-way): they
    /// wait for its acknowledgement.
    pub fn sent_stanzas(&mut self, stanzas: impl IntoIterator<Item = WireStanza>) {
        for stanza in stanzas {
            self.unacked_bytes += stanza.wire_bytes();
            self.unacked.push_back(stanza);
        }
    }

    /// The client handled `h` of our stanzas: drop those from the queue. Counting is modulo 2^32
    /// (section 4), so `h` below the last one means it wrapped around.
    pub fn acknowledge(&mut self, h: u32) -> Result<(), HandledCountTooHigh> {
        self.is_request_pending = false;
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(HandledCountTooHigh {
                h,
                send_count: self.sent(),
            });
        }
        for stanza in self.unacked.drain(..newly) {
            self.unacked_bytes -= stanza.wire_bytes();
        }
        if self.unacked.is_empty() {
            // A burst acknowledged gives its storage back.
            self.unacked = VecDeque::new();
        }
        self.acked = h;
        Ok(())
    }

    /// Whether to send `<r/>` now: something is unacknowledged and no request is pending.
    pub fn should_request(&mut self) -> bool {
        if self.unacked.is_empty() || self.is_request_pending {
            return false;
        }
        self.is_request_pending = true;
        true
    }

    /// Bytes of stanzas waiting for an acknowledgement.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// The stanzas not yet acknowledged, in order, to be written again on a resumed stream; they stay
    /// unacknowledged.
    pub fn unacked(&self) -> impl Iterator<Item = &WireStanza> {
        self.unacked.iter()
    }

    /// The same, as one slice, for one write.
    pub fn unacked_slice(&mut self) -> &[WireStanza] {
        self.unacked.make_contiguous()
    }

    /// Takes the stanzas not acknowledged, in order, to route them again when the session ends.
    pub fn take_unacked(&mut self) -> VecDeque<WireStanza> {
        self.unacked_bytes = 0;
        std::mem::take(&mut self.unacked)
    }
}

/// `<enabled/>` (section 3), with the id and `max` (seconds) when resumption is on.
pub fn enabled(resume: Option<(&str, u64)>) -> Element {
    let mut element = Element::builder("enabled", ns::SM).build();
    if let Some((id, max)) = resume {
        set_attribute(&mut element, "id", id);
        set_attribute(&mut element, "resume", "true");
        set_attribute(&mut element, "max", &max.to_string());
    }
    element
}

/// `<failed/>` with a stanza error condition (sections 3 and 5), e.g. `unexpected-request` or
/// `item-not-found`.
pub fn failed(condition: &str, h: Option<u32>) -> Element {
    let mut element = Element::builder("failed", ns::SM)
        .append(Element::builder(condition, ns::STANZAS).build())
        .build();
    if let Some(h) = h {
        set_attribute(&mut element, "h", &h.to_string());
    }
    element
}

/// The answer to a `<resume/>` whose `h` acknowledges more than was sent (section 5 with section 4):
/// `<failed h=…>` with `undefined-condition` and `<handled-count-too-high h=… send-count=…/>`, so the
/// client learns how many of its stanzas the server handled and why its session is not resumed.
pub fn failed_handled_count_too_high(inbound: u32, too_high: HandledCountTooHigh) -> Element {
    let mut detail = Element::builder("handled-count-too-high", ns::SM).build();
    set_attribute(&mut detail, "h", &too_high.h.to_string());
    set_attribute(&mut detail, "send-count", &too_high.send_count.to_string());
    let mut element = failed("undefined-condition", Some(inbound));
    element.append_child(detail);
    element
}

/// `<r/>` (section 4).
pub fn request() -> Element {
    Element::builder("r", ns::SM).build()
}

/// `<a h=.../>` (section 4).
pub fn answer(h: u32) -> Element {
    let mut element = Element::builder("a", ns::SM).build();
    set_attribute(&mut element, "h", &h.to_string());
    element
}

/// `<resumed previd=... h=.../>` (section 5).
pub fn resumed(previd: &str, h: u32) -> Element {
    let mut element = Element::builder("resumed", ns::SM).build();
    set_attribute(&mut element, "previd", previd);
    set_attribute(&mut element, "h", &h.to_string());
    element
}

/// An unguessable resumption id: 128 random bits (section 5 asks that it not be predictable).
pub fn new_resume_id() -> String {
    use base64::Engine;
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(id: &str) -> WireStanza {
        let element: Element = format!("<message xmlns='jabber:client' id='{id}'/>")
            .parse()
            .expect("message");
        WireStanza::for_client_stream(&element)
    }

    fn ids(sm: &StreamManagement) -> Vec<String> {
        sm.unacked()
            .map(|s| {
                s.unpack()
                    .expect("stanza")
                    .attr("id")
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn parses_the_client_nonzas() {
        let parse = |xml: &str| SmNonza::parse(&xml.parse::<Element>().expect("xml"));
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"),
            Some(SmNonza::Enable {
                resume: true,
                max: None
            })
        );
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3'/>"),
            Some(SmNonza::Enable {
                resume: false,
                max: None
            })
        );
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3' resume='1' max='60'/>"),
            Some(SmNonza::Enable {
                resume: true,
                max: Some(60)
            })
        );
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3' resume='1' max='soon'/>"),
            Some(SmNonza::Enable {
                resume: true,
                max: None
            })
        );
        assert_eq!(parse("<r xmlns='urn:xmpp:sm:3'/>"), Some(SmNonza::Request));
        assert_eq!(
            parse("<a xmlns='urn:xmpp:sm:3' h='4294967295'/>"),
            Some(SmNonza::Ack { h: u32::MAX })
        );
        assert_eq!(
            parse("<a xmlns='urn:xmpp:sm:3' h='-1'/>"),
            Some(SmNonza::Malformed)
        );
        assert_eq!(
            parse("<a xmlns='urn:xmpp:sm:3'/>"),
            Some(SmNonza::Malformed)
        );
        assert_eq!(
            parse("<resume xmlns='urn:xmpp:sm:3' previd='x' h='3'/>"),
            Some(SmNonza::Resume {
                previd: "x".into(),
                h: 3
            })
        );
        assert_eq!(
            parse("<resume xmlns='urn:xmpp:sm:3' h='3'/>"),
            Some(SmNonza::Malformed)
        );
        assert_eq!(parse("<r xmlns='urn:other'/>"), None);
    }

    #[test]
    fn acknowledged_stanzas_leave_the_queue_in_order() {
        let mut sm = StreamManagement::new(None);
        sm.sent_stanzas(["m1", "m2", "m3"].map(stanza));
        assert_eq!(sm.sent(), 3);
        assert!(sm.should_request());
        assert!(!sm.should_request(), "one request at a time");
        assert_eq!(sm.acknowledge(2), Ok(()));
        assert_eq!(ids(&sm), ["m3"]);
        assert_eq!(sm.unacked_bytes(), stanza("m3").wire_bytes());
        assert_eq!(
            sm.acknowledge(2),
            Ok(()),
            "the same h again changes nothing"
        );
        assert_eq!(sm.acknowledge(3), Ok(()));
        assert_eq!(sm.unacked_bytes(), 0);
        assert!(!sm.should_request(), "nothing to acknowledge");
    }

    #[test]
    fn more_than_was_sent_is_handled_count_too_high() {
        let mut sm = StreamManagement::new(None);
        sm.sent_stanzas(["m1"].map(stanza));
        assert_eq!(
            sm.acknowledge(2),
            Err(HandledCountTooHigh {
                h: 2,
                send_count: 1
            })
        );
        assert_eq!(ids(&sm), ["m1"], "nothing dropped");
    }

    #[test]
    fn counters_wrap_around_at_two_to_the_32() {
        let mut sm = StreamManagement::new(None);
        // As if 2^32 - 2 stanzas had been sent and acknowledged.
        sm.acked = u32::MAX - 1;
        sm.sent_stanzas(["m1", "m2", "m3", "m4"].map(stanza));
        assert_eq!(sm.sent(), 2, "wrapped");
        assert_eq!(sm.acknowledge(u32::MAX), Ok(()));
        assert_eq!(ids(&sm), ["m2", "m3", "m4"]);
        assert_eq!(sm.acknowledge(1), Ok(()), "past the wrap");
        assert_eq!(ids(&sm), ["m4"]);
        assert!(sm.acknowledge(3).is_err(), "one more than sent");

        sm.inbound = u32::MAX;
        sm.received();
        assert_eq!(sm.inbound(), 0);
    }

    #[test]
    fn the_nonzas_we_send() {
        let resumable = enabled(Some(("id1", 300)));
        assert_eq!(resumable.attr("resume"), Some("true"));
        assert_eq!(resumable.attr("max"), Some("300"));
        assert_eq!(enabled(None).attr("resume"), None);
        let too_high = failed_handled_count_too_high(
            3,
            HandledCountTooHigh {
                h: 10,
                send_count: 8,
            },
        );
        assert_eq!(too_high.attr("h"), Some("3"));
        assert!(too_high.has_child("undefined-condition", ns::STANZAS));
        let detail = too_high
            .get_child("handled-count-too-high", ns::SM)
            .expect("detail");
        assert_eq!(
            (detail.attr("h"), detail.attr("send-count")),
            (Some("10"), Some("8"))
        );
        let failed = failed("item-not-found", None);
        assert!(failed.has_child("item-not-found", ns::STANZAS));
        assert_eq!(answer(7).attr("h"), Some("7"));
        assert_eq!(resumed("x", 2).attr("previd"), Some("x"));
        assert_ne!(new_resume_id(), new_resume_id());
        assert_eq!(new_resume_id().len(), 22, "128 bits in base64");
    }
}
