//! Sans-I/O stream framer: turns buffered bytes into the stream header and then one element per
//! first-level child of `<stream:stream>` (RFC 6120 sections 4.2 to 4.8 and 11).
//!
//! All state lives here so that `XmlStream::next` can be cancelled between reads without losing
//! anything: constructs that are complete are consumed and folded into the element under
//! construction; an incomplete construct stays in the buffer and its scan position is remembered.

use std::borrow::Cow;

use super::Limits;
use super::error::{StreamError, StreamErrorCondition};
use super::markup::{self, Opened, Scope, as_utf8};
use super::ns;
use super::stream::{Frame, StreamHeader};
use super::token::{Scan, Scanner, TokenKind, is_xml_whitespace};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug)]
enum Phase {
    /// Before the stream header; the XML declaration is allowed until the first markup.
    Prolog { decl_allowed: bool },
    /// Inside `<stream:stream>`.
    Stream,
    /// `</stream:stream>` was read.
    Ended,
    /// A stream error was found; it is reported again on every later call.
    Failed {
        condition: StreamErrorCondition,
        text: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Framer {
    limits: Limits,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    scanner: Scanner,
    phase: Phase,
    /// Bindings of the stream header and of the elements under construction.
    scope: Scope,
    /// The header's tag name as written, which `</stream:stream>` must repeat.
    header_qname: Cow<'static, str>,
    /// The first-level element under construction and its open descendants.
    open: Vec<Opened>,
    /// Bytes consumed so far by the first-level element under construction.
    stanza_bytes: usize,
    /// Elements opened so far in the first-level element under construction, itself included.
    stanza_elements: usize,
    /// Estimated bytes the first-level element under construction holds as a parsed tree so far.
    stanza_parsed_bytes: usize,
}

fn policy(text: &str) -> StreamError {
    StreamError::new(StreamErrorCondition::PolicyViolation, text.to_owned())
}

impl Framer {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            pos: 0,
            scanner: Scanner::default(),
            phase: Phase::Prolog { decl_allowed: true },
            scope: Scope::default(),
            header_qname: Cow::Borrowed(""),
            open: Vec::new(),
            stanza_bytes: 0,
            stanza_elements: 0,
            stanza_parsed_bytes: 0,
        }
    }

    /// New limits from the next construct on (RFC 6120 section 13.12: tighter before authentication).
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Adds `bytes` of parsed tree to the element under construction; the budget is checked as the tree
    /// grows, so it never holds more than `max_parsed_bytes` plus one construct.
    fn charge(&mut self, bytes: usize) -> Result<(), StreamError> {
        self.stanza_parsed_bytes = self.stanza_parsed_bytes.saturating_add(bytes);
        if self.stanza_parsed_bytes > self.limits.max_parsed_bytes {
            return Err(policy("stanza too large once parsed"));
        }
        Ok(())
    }

    /// Bytes received but not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Append freshly read bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Frees the buffer once everything in it was consumed, so an idle stream holds no receive buffer
    /// (memory per idle session is what decides how many sessions a small machine carries).
    pub(crate) fn release_if_drained(&mut self) {
        if self.pos == self.buf.len() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.pos = 0;
        }
        // Between first-level elements nothing is open, yet the vectors keep the capacity the deepest
        // element so far needed (about 600 bytes after resource binding), for as long as the stream lives.
        if self.open.is_empty() {
            if self.open.capacity() > 0 {
                self.open = Vec::new();
            }
            self.scope.shrink_to_fit();
        }
    }

    /// Called before reading more: everything complete has been consumed, so the buffered bytes all
    /// belong to the element (or header) in progress, which must stay within the limit. This keeps
    /// the buffer under `max_stanza_bytes` plus one read.
    pub(crate) fn check_room(&mut self) -> Result<(), StreamError> {
        self.sticky(|f| {
            if f.stanza_bytes + f.buffered().len() > f.limits.max_stanza_bytes {
                return Err(policy("stanza too large"));
            }
            Ok(())
        })
    }

    /// Stream restart (RFC 6120 sections 5.4.3.3 and 6.4.6): forget the header and all parser state,
    /// but keep buffered bytes, which may be the peer's pipelined new header.
    pub(crate) fn reset(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let pos = self.pos;
        *self = Self::new(self.limits);
        self.buf = buf;
        self.pos = pos;
    }

    /// Whether `</stream:stream>` has been read.
    pub(crate) fn has_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    fn sticky<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StreamError>,
    ) -> Result<T, StreamError> {
        if let Phase::Failed { condition, text } = &self.phase {
            return Err(StreamError::Condition {
                condition: *condition,
                text: text.clone(),
            });
        }
        let result = f(self);
        if let Err(StreamError::Condition { condition, text }) = &result {
            self.phase = Phase::Failed {
                condition: *condition,
                text: text.clone(),
            };
        }
        result
    }

    /// The stream header, once it is complete (RFC 6120 section 4.7).
    pub(crate) fn poll_header(&mut self) -> Result<Option<StreamHeader>, StreamError> {
        self.sticky(Self::header_inner)
    }

    /// The next first-level element or the end of the stream, once complete.
    pub(crate) fn poll_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        self.sticky(Self::frame_inner)
    }

    fn header_inner(&mut self) -> Result<Option<StreamHeader>, StreamError> {
        loop {
            let Phase::Prolog { decl_allowed } = self.phase else {
                return Err(StreamError::new(
                    StreamErrorCondition::UndefinedCondition,
                    "stream header already read",
                ));
            };
            let rest = &self.buf[self.pos..];
            if decl_allowed && rest.first() == Some(&UTF8_BOM[0]) {
                if rest.len() < UTF8_BOM.len() {
                    return Ok(None);
                }
                if !rest.starts_with(UTF8_BOM) {
                    return Err(markup::malformed("invalid UTF-8"));
                }
                self.pos += UTF8_BOM.len();
                continue;
            }
            let whitespace = rest.iter().take_while(|b| is_xml_whitespace(**b)).count();
            if whitespace > 0 {
                self.pos += whitespace;
                continue;
            }
            match rest.first() {
                None => return Ok(None),
                Some(b'<') => {}
                Some(_) => return Err(markup::malformed("text before the stream header")),
            }
            let (kind, len) = match self.scanner.scan(rest, decl_allowed)? {
                Scan::Incomplete => return Ok(None),
                Scan::Token(kind, len) => (kind, len),
            };
            let token = self.pos..self.pos + len;
            self.pos += len;
            match kind {
                TokenKind::XmlDecl => {
                    check_xml_declaration(&self.buf[token])?;
                    self.phase = Phase::Prolog {
                        decl_allowed: false,
                    };
                }
                TokenKind::StartTag => {
                    let opened = markup::open_element(
                        &self.buf[token],
                        &mut self.scope,
                        self.limits.max_attributes,
                    )?;
                    let header = StreamHeader::from_opened(&opened, &self.scope)?;
                    // Nearly every peer writes `stream:stream`; keeping that without an allocation saves one
                    // per stream for its whole life.
                    self.header_qname = if opened.qname == "stream:stream" {
                        Cow::Borrowed("stream:stream")
                    } else {
                        Cow::Owned(opened.qname)
                    };
                    self.phase = Phase::Stream;
                    return Ok(Some(header));
                }
                TokenKind::EndTag | TokenKind::CData | TokenKind::Text => {
                    return Err(markup::malformed("expected the stream header"));
                }
            }
        }
    }

    fn frame_inner(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            match self.phase {
                Phase::Stream => {}
                Phase::Ended => return Ok(Some(Frame::End)),
                Phase::Prolog { .. } | Phase::Failed { .. } => {
                    return Err(StreamError::new(
                        StreamErrorCondition::UndefinedCondition,
                        "stream header not read",
                    ));
                }
            }
            let rest = &self.buf[self.pos..];
            if self.open.is_empty() {
                // Whitespace between stanzas is a keepalive (RFC 6120 section 4.6.1); drop it at once so
                // that it never accumulates in the buffer.
                let whitespace = rest.iter().take_while(|b| is_xml_whitespace(**b)).count();
                if whitespace > 0 {
                    self.pos += whitespace;
                    continue;
                }
                match rest.first() {
                    None => return Ok(None),
                    Some(b'<') => {}
                    Some(_) => {
                        return Err(StreamError::new(
                            StreamErrorCondition::BadFormat,
                            "character data between stanzas",
                        ));
                    }
                }
            }
            let (kind, len) = match self.scanner.scan(rest, false)? {
                Scan::Incomplete => return Ok(None),
                Scan::Token(kind, len) => (kind, len),
            };
            let token = self.pos..self.pos + len;
            self.pos += len;
            self.stanza_bytes += len;
            if self.stanza_bytes > self.limits.max_stanza_bytes {
                return Err(policy("stanza too large"));
            }
            let bytes = &self.buf[token];
            match kind {
                TokenKind::Text => {
                    let text = markup::decode_text(as_utf8(bytes)?)?;
                    if !self.open.is_empty() {
                        self.charge(markup::TEXT_OVERHEAD_BYTES + text.len())?;
                    }
                    if let Some(parent) = self.open.last_mut() {
                        parent.element.append_text(text);
                    }
                }
                TokenKind::CData => {
                    if self.open.is_empty() {
                        return Err(StreamError::new(
                            StreamErrorCondition::BadFormat,
                            "CDATA between stanzas",
                        ));
                    }
                    let raw = as_utf8(&bytes[9..bytes.len() - 3])?;
                    let text = markup::decode_cdata(raw)?;
                    // An empty section adds nothing; an empty text node would not survive re-serialisation.
                    if !text.is_empty() {
                        self.charge(markup::TEXT_OVERHEAD_BYTES + text.len())?;
                        if let Some(parent) = self.open.last_mut() {
                            parent.element.append_text(text);
                        }
                    }
                }
                TokenKind::StartTag => {
                    if self.open.len() >= self.limits.max_depth {
                        return Err(policy("elements nested too deeply"));
                    }
                    self.stanza_elements += 1;
                    if self.stanza_elements > self.limits.max_elements {
                        return Err(policy("too many elements in one stanza"));
                    }
                    let opened =
                        markup::open_element(bytes, &mut self.scope, self.limits.max_attributes)?;
                    if self.open.is_empty() {
                        check_first_level(&opened)?;
                    }
                    self.charge(opened.parsed_bytes)?;
                    if opened.is_empty {
                        if let Some(frame) = self.close(opened) {
                            return Ok(Some(frame));
                        }
                    } else {
                        self.open.push(opened);
                    }
                }
                TokenKind::EndTag => {
                    let name = markup::end_tag_name(bytes)?;
                    match self.open.pop() {
                        Some(opened) if opened.qname == name => {
                            if let Some(frame) = self.close(opened) {
                                return Ok(Some(frame));
                            }
                        }
                        Some(opened) => {
                            return Err(markup::malformed(format!(
                                "</{name}> does not close <{}>",
                                opened.qname
                            )));
                        }
                        None if name == self.header_qname => {
                            self.phase = Phase::Ended;
                            return Ok(Some(Frame::End));
                        }
                        None => {
                            return Err(markup::malformed(format!(
                                "</{name}> does not close the stream"
                            )));
                        }
                    }
                }
                TokenKind::XmlDecl => {
                    return Err(markup::malformed("XML declaration inside the stream"));
                }
            }
        }
    }

    /// Attach a finished element to its parent, or hand it out if it is first-level.
    fn close(&mut self, opened: Opened) -> Option<Frame> {
        self.scope.truncate(opened.scope_marker);
        match self.open.last_mut() {
            Some(parent) => {
                parent.element.append_child(opened.element);
                None
            }
            None => {
                self.stanza_bytes = 0;
                self.stanza_elements = 0;
                self.stanza_parsed_bytes = 0;
                Some(Frame::Element(opened.element))
            }
        }
    }
}

/// First-level children in the stream namespace other than `<stream:error/>` and `<stream:features/>`
/// are not stanzas of any kind (RFC 6120 sections 4.3.2 and 4.9.3.24).
fn check_first_level(opened: &Opened) -> Result<(), StreamError> {
    let element = &opened.element;
    if element.ns() == ns::STREAMS && !matches!(element.name(), "error" | "features") {
        return Err(StreamError::new(
            StreamErrorCondition::UnsupportedStanzaType,
            format!("<{}/> in the stream namespace", opened.qname),
        ));
    }
    Ok(())
}

/// `<?xml version='1.x' encoding='UTF-8'?>`: any other encoding is unsupported (RFC 6120 section 11.6).
fn check_xml_declaration(bytes: &[u8]) -> Result<(), StreamError> {
    let decl = as_utf8(bytes)?;
    let inner = decl
        .get(2..decl.len().saturating_sub(2))
        .unwrap_or_default();
    let start = quick_xml::events::BytesStart::from_content(inner, 3);
    let mut version = None;
    for attr in start.attributes() {
        let attr = attr.map_err(|e| markup::malformed(format!("bad XML declaration: {e}")))?;
        let value = as_utf8(&attr.value)?;
        match attr.key.as_ref() {
            b"version" => version = Some(value.to_owned()),
            b"encoding" if !value.eq_ignore_ascii_case("UTF-8") => {
                return Err(StreamError::new(
                    StreamErrorCondition::UnsupportedEncoding,
                    format!("encoding {value}"),
                ));
            }
            b"encoding" | b"standalone" => {}
            _ => return Err(markup::malformed("bad XML declaration")),
        }
    }
    match version {
        Some(v) if v.starts_with("1.") => Ok(()),
        _ => Err(markup::malformed("bad XML declaration version")),
    }
}
