//! Incremental reader of an XMPP stream (RFC 6120 section 4): the stream header, then one top-level
//! element at a time, parsed with quick-xml straight from the socket into a small owned tree.
//!
//! This is a test client's parser, not a validating one: it does no namespace resolution (names are
//! kept as written, e.g. `stream:features`; `xmlns` is an ordinary attribute) and it resolves only the
//! five predefined entities and character references (RFC 6120 section 11.1 forbids anything else).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use tokio::io::AsyncBufRead;

use super::error::ClientError;

/// One XML element received from the server.
///
/// `raw` holds the element's XML as received (tags and escaped text byte for byte) for top-level
/// elements returned by [`ElementReader::next_element`]; it is empty on children and stream headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Qualified name as written, e.g. `message` or `stream:features`.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated character data directly inside this element, unescaped.
    pub text: String,
    /// The element's XML as received (top-level elements only).
    pub raw: String,
}

impl Element {
    /// The name without its prefix (`stream:features` -> `features`).
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// Value of the attribute written exactly as `name` (e.g. `type`, `xmlns`, `xml:lang`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `xmlns` attribute, if written on this element.
    pub fn xmlns(&self) -> Option<&str> {
        self.attr("xmlns")
    }

    /// First child whose local name is `local`.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local_name() == local)
    }

    /// First child whose local name is `local` and whose `xmlns` is `ns`.
    pub fn child_ns(&self, local: &str, ns: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local_name() == local && c.xmlns() == Some(ns))
    }

    /// Text of the first child named `local`, if any.
    pub fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local).map(|c| c.text.as_str())
    }

    fn from_start(start: &BytesStart<'_>) -> Result<Self, ClientError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| ClientError::Xml(e.to_string()))?;
            let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
            let value = attr
                .unescape_value()
                .map_err(|e| ClientError::Xml(e.to_string()))?
                .into_owned();
            attrs.push((key, value));
        }
        Ok(Element {
            name,
            attrs,
            ..Element::default()
        })
    }
}

/// What the reader produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `<stream:stream ...>` (RFC 6120 section 4.7); a new one follows every stream restart.
    StreamHeader(Element),
    /// A complete top-level element (stanza, features, SASL, SM nonza, stream error).
    Element(Element),
}

/// Reads the stream header and then complete top-level elements from an [`AsyncBufRead`].
///
/// Not cancel-safe: do not race [`ElementReader::next`] in a `select!` whose other branch may win;
/// split the session instead and give reading its own task.
pub struct ElementReader<R> {
    reader: Reader<R>,
    buf: Vec<u8>,
    /// Elements opened but not closed, innermost last; the stream header is not on it.
    stack: Vec<Element>,
    raw: String,
    max_element_bytes: usize,
}

impl<R: AsyncBufRead + Unpin> ElementReader<R> {
    /// Wraps `inner`; elements larger than `max_element_bytes` of XML are an error.
    pub fn new(inner: R, max_element_bytes: usize) -> Self {
        let mut reader = Reader::from_reader(inner);
        // The closing </stream:stream> matches a start seen before a stream restart only logically,
        // and each restart reuses this reader, so name checking would misfire.
        reader.config_mut().check_end_names = false;
        ElementReader {
            reader,
            buf: Vec::with_capacity(512),
            stack: Vec::new(),
            raw: String::new(),
            max_element_bytes,
        }
    }

    /// Prepares for a new stream after STARTTLS or SASL success (RFC 6120 sections 5.4.3.3, 6.4.6).
    pub fn reset(&mut self) {
        self.stack.clear();
        self.raw.clear();
    }

    /// Gives back the underlying reader (e.g. to upgrade the socket to TLS).
    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    /// The next stream header or complete top-level element.
    ///
    /// Errors: [`ClientError::StreamClosed`] on `</stream:stream>` or end of input,
    /// [`ClientError::Xml`] on malformed or oversized input, [`ClientError::Io`] on socket errors.
    pub async fn next(&mut self) -> Result<Incoming, ClientError> {
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into_async(&mut self.buf)
                .await
                .map_err(|e| match e {
                    quick_xml::Error::Io(io) => {
                        ClientError::Io(std::io::Error::new(io.kind(), io.to_string()))
                    }
                    other => ClientError::Xml(other.to_string()),
                })?;
            let in_element = !self.stack.is_empty();
            match event {
                Event::Start(start) => {
                    if !in_element && start.local_name().as_ref() == b"stream" {
                        return Ok(Incoming::StreamHeader(Element::from_start(&start)?));
                    }
                    self.raw.push('<');
                    self.raw.push_str(&String::from_utf8_lossy(&start));
                    self.raw.push('>');
                    self.stack.push(Element::from_start(&start)?);
                }
                Event::Empty(start) => {
                    self.raw.push('<');
                    self.raw.push_str(&String::from_utf8_lossy(&start));
                    self.raw.push_str("/>");
                    let element = Element::from_start(&start)?;
                    if let Some(done) = self.attach(element) {
                        return Ok(Incoming::Element(done));
                    }
                }
                Event::End(end) => {
                    let Some(element) = self.stack.pop() else {
                        // Only </stream:stream> can close at depth zero (RFC 6120 section 4.4).
                        return Err(ClientError::StreamClosed);
                    };
                    self.raw.push_str("</");
                    self.raw.push_str(&String::from_utf8_lossy(end.as_ref()));
                    self.raw.push('>');
                    if let Some(done) = self.attach(element) {
                        return Ok(Incoming::Element(done));
                    }
                }
                Event::Text(text) => {
                    if let Some(top) = self.stack.last_mut() {
                        let decoded = text.decode().map_err(|e| ClientError::Xml(e.to_string()))?;
                        top.text.push_str(&decoded);
                        self.raw.push_str(&decoded);
                    }
                }
                Event::CData(data) => {
                    if let Some(top) = self.stack.last_mut() {
                        let decoded = data.decode().map_err(|e| ClientError::Xml(e.to_string()))?;
                        top.text.push_str(&decoded);
                        self.raw.push_str("<![CDATA[");
                        self.raw.push_str(&decoded);
                        self.raw.push_str("]]>");
                    }
                }
                Event::GeneralRef(reference) => {
                    let name = String::from_utf8_lossy(reference.as_ref()).into_owned();
                    let resolved = match reference
                        .resolve_char_ref()
                        .map_err(|e| ClientError::Xml(e.to_string()))?
                    {
                        Some(c) => c,
                        None => predefined_entity(&name).ok_or_else(|| {
                            ClientError::Xml(format!("undefined entity &{name};"))
                        })?,
                    };
                    if let Some(top) = self.stack.last_mut() {
                        top.text.push(resolved);
                        self.raw.push('&');
                        self.raw.push_str(&name);
                        self.raw.push(';');
                    }
                }
                Event::DocType(_) => {
                    // RFC 6120 section 11.1: a DTD is forbidden in XMPP.
                    return Err(ClientError::Xml("DOCTYPE in stream".into()));
                }
                Event::Eof => return Err(ClientError::StreamClosed),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
            if self.raw.len() > self.max_element_bytes {
                return Err(ClientError::Xml(format!(
                    "element larger than {} bytes",
                    self.max_element_bytes
                )));
            }
        }
    }

    /// Attaches a closed element to its parent; returns it when it was top-level.
    fn attach(&mut self, element: Element) -> Option<Element> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(element);
                None
            }
            None => {
                let mut element = element;
                element.raw = std::mem::take(&mut self.raw);
                Some(element)
            }
        }
    }

    /// The next complete top-level element; a stream header here is a protocol error.
    pub async fn next_element(&mut self) -> Result<Element, ClientError> {
        match self.next().await? {
            Incoming::Element(e) => Ok(e),
            Incoming::StreamHeader(_) => {
                Err(ClientError::Protocol("unexpected stream header".into()))
            }
        }
    }
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// Escapes text or attribute values for inclusion in XML sent to the server.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse_all(input: &str) -> Vec<Incoming> {
        let mut reader = ElementReader::new(input.as_bytes(), 1 << 20);
        let mut out = Vec::new();
        while let Ok(item) = reader.next().await {
            out.push(item);
        }
        out
    }

    #[tokio::test]
    async fn header_then_elements_with_text_refs_and_raw() {
        let input = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\
            <message to='a@b' id='x&amp;y'><body>1 &lt; 2 &#x41;</body></message></stream:stream>";
        let items = parse_all(input).await;
        assert_eq!(items.len(), 3);
        let Incoming::StreamHeader(h) = &items[0] else {
            panic!("no header")
        };
        assert_eq!(h.attr("id"), Some("s1"));
        let Incoming::Element(f) = &items[1] else {
            panic!("no features")
        };
        assert_eq!(f.local_name(), "features");
        let mechs = f
            .child_ns("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .unwrap();
        assert_eq!(mechs.child_text("mechanism"), Some("SCRAM-SHA-1"));
        let Incoming::Element(m) = &items[2] else {
            panic!("no message")
        };
        assert_eq!(m.attr("id"), Some("x&y"));
        assert_eq!(m.child_text("body"), Some("1 < 2 A"));
        assert_eq!(
            m.raw,
            "<message to='a@b' id='x&amp;y'><body>1 &lt; 2 &#x41;</body></message>"
        );
    }

    #[tokio::test]
    async fn element_split_across_reads_is_reassembled() {
        let (client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in [
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><iq ty",
                "pe='result' id='1'/",
                "><presence/>",
            ] {
                server.write_all(chunk.as_bytes()).await.unwrap();
                server.flush().await.unwrap();
            }
            server
        });
        let mut reader = ElementReader::new(tokio::io::BufReader::new(client), 1 << 20);
        assert!(matches!(
            reader.next().await.unwrap(),
            Incoming::StreamHeader(_)
        ));
        let iq = reader.next_element().await.unwrap();
        assert_eq!((iq.name.as_str(), iq.attr("type")), ("iq", Some("result")));
        assert_eq!(reader.next_element().await.unwrap().name, "presence");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn doctype_and_oversize_are_errors() {
        let mut r = ElementReader::new("<!DOCTYPE x><a/>".as_bytes(), 100);
        assert!(matches!(r.next().await, Err(ClientError::Xml(_))));
        let big = format!("<a>{}</a>", "x".repeat(200));
        let mut r = ElementReader::new(big.as_bytes(), 100);
        assert!(matches!(r.next().await, Err(ClientError::Xml(_))));
    }

    #[tokio::test]
    async fn closing_stream_is_stream_closed() {
        let mut r = ElementReader::new("<stream:stream><a/></stream:stream>".as_bytes(), 100);
        assert!(matches!(r.next().await, Ok(Incoming::StreamHeader(_))));
        assert!(matches!(r.next().await, Ok(Incoming::Element(_))));
        assert!(matches!(r.next().await, Err(ClientError::StreamClosed)));
    }

    #[test]
    fn escape_covers_the_five_entities() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
