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
        let header = StreamHeader {
            default_ns: ns::CLIENT.to_owned(),
            ..StreamHeader::default()
        };
        let header = writer::stream_header(&header);
        // Our own serialisation of an element the stream limits already admitted: the writer may add
        // namespace declarations, so the per-element limits would not hold; only the length is known.
        let mut framer = Framer::new(Limits {
            max_stanza_bytes: header.len() + self.0.len(),
            max_depth: usize::MAX,
            max_elements: usize::MAX,
            max_attributes: usize::MAX,
            max_parsed_bytes: usize::MAX,
        });
        framer.push(header.as_bytes());
        framer.push(self.0.as_bytes());
        framer.poll_header().ok()??;
        match framer.poll_frame() {
            Ok(Some(Frame::Element(element))) => Some(element),
            _ => None,
        }
    }

    /// The serialised XML.
    pub fn as_str(&self) -> &str {
        &self.0
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
}
