//! An element kept for later as its serialised XML (XML 1.0; namespaces written out on the element), for
//! state held per session that is read rarely: a parsed `minidom::Element` costs tens of times its text,
//! mostly in the attribute maps' tree nodes.

use super::framer::Framer;
use super::stream::{Frame, StreamHeader};
use super::{Element, Limits, ns, writer};

/// A first-level element in serialised form. Cheap to clone into snapshots, costly only to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedElement(Box<str>);

impl PackedElement {
    /// Serialise `element` with every namespace declared on it, so it parses back on its own.
    pub fn pack(element: &Element) -> PackedElement {
        PackedElement(writer::element(element, "").into_boxed_str())
    }

    /// Parse the element back. `None` only if it does not parse, which the writer rules out for elements
    /// it serialised; callers treat that like having nothing stored.
    pub fn unpack(&self) -> Option<Element> {
        parse_on_stream(&self.0, ns::CLIENT)
    }

    /// The serialised XML.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stanza serialised once, exactly as it is written on a stream of a given default namespace: stanzas in
/// the content namespace carry no `xmlns` (RFC 6120 section 4.8.3). Queued for a session or a component in
/// this form, it costs its length in bytes, where a parsed element costs tens of times that; the stream
/// writes it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireStanza {
    xml: Box<str>,
    /// The default namespace of the stream it was serialised for.
    stream_ns: &'static str,
}

impl WireStanza {
    /// Serialise `element` for a `jabber:client` stream.
    pub fn for_client_stream(element: &Element) -> WireStanza {
        WireStanza::for_stream(element, ns::CLIENT)
    }

    /// Serialise `element` for a stream whose default namespace is `stream_ns` (for a component stream,
    /// `jabber:component:accept`).
    pub fn for_stream(element: &Element, stream_ns: &'static str) -> WireStanza {
        WireStanza {
            xml: writer::element(element, stream_ns).into_boxed_str(),
            stream_ns,
        }
    }

    /// Its size in bytes, which is also what it holds in memory.
    pub fn wire_bytes(&self) -> usize {
        self.xml.len()
    }

    /// The serialised XML, valid only inside a stream whose default namespace is [`Self::stream_ns`].
    pub fn as_str(&self) -> &str {
        &self.xml
    }

    /// The default namespace of the stream it was serialised for.
    pub fn stream_ns(&self) -> &'static str {
        self.stream_ns
    }

    /// Parse the element back (to route it elsewhere). `None` only if it does not parse, which the writer
    /// rules out for elements it serialised.
    pub fn unpack(&self) -> Option<Element> {
        parse_on_stream(&self.xml, self.stream_ns)
    }
}

/// Parses one element as if it came on a stream whose header declared `stream_ns` and the `stream:`
/// prefix, which is what the forms above assume.
pub fn parse_on_stream(xml: &str, stream_ns: &str) -> Option<Element> {
    let header = StreamHeader {
        default_ns: stream_ns.to_owned(),
        ..StreamHeader::default()
    };
    let header = writer::stream_header(&header);
    // Our own serialisation of an element the stream limits already admitted: the writer may add
    // namespace declarations, so the per-element limits would not hold; only the length is known.
    let mut framer = Framer::new(Limits {
        max_stanza_bytes: header.len() + xml.len(),
        max_depth: usize::MAX,
        max_elements: usize::MAX,
        max_attributes: usize::MAX,
        max_parsed_bytes: usize::MAX,
    });
    framer.push(header.as_bytes());
    framer.push(xml.as_bytes());
    framer.poll_header().ok()??;
    match framer.poll_frame() {
        Ok(Some(Frame::Element(element))) => Some(element),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_presence_with_children_and_foreign_namespaces() {
        let mut framer = Framer::new(Limits::default());
        framer.push(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
              <presence from='a@b/c' xml:lang='en'><show>away</show><status>out &amp; about</status>\
              <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        );
        framer.poll_header().unwrap().unwrap();
        let Some(Frame::Element(presence)) = framer.poll_frame().unwrap() else {
            panic!("no element");
        };
        let packed = PackedElement::pack(&presence);
        assert!(packed.as_str().len() < 300, "{}", packed.as_str());
        assert_eq!(packed.unpack(), Some(presence));
    }

    #[test]
    fn a_wire_stanza_is_what_the_client_stream_writes_and_parses_back() {
        let message: Element =
            "<message xmlns='jabber:client' to='a@b/c' type='chat'><body>x &amp; y</body>\
            <x xmlns='urn:example'/></message>"
                .parse()
                .unwrap();
        let wire = WireStanza::for_client_stream(&message);
        assert_eq!(wire.as_str(), writer::element(&message, ns::CLIENT));
        assert!(
            !wire.as_str().contains("jabber:client"),
            "{}",
            wire.as_str()
        );
        assert_eq!(wire.wire_bytes(), wire.as_str().len());
        assert_eq!(wire.unpack(), Some(message));
    }
}
