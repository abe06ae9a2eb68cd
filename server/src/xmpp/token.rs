//! Resumable markup scanner: finds where the next XML construct in the receive buffer ends.
//!
//! It only delimits constructs; `markup` decodes them. Scanning resumes where the previous call stopped,
//! so a construct trickling in one byte per read costs linear, not quadratic, time. Constructs that
//! RFC 6120 section 11 forbids are rejected from their first distinguishing bytes, before their end is
//! known, so a `<!DOCTYPE` with a billion-laughs payload fails after three bytes.

use quick_xml::parser::{ElementParser, Parser};

use super::error::{StreamError, StreamErrorCondition};

/// What kind of construct a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Character data up to (not including) the next `<`.
    Text,
    /// `<![CDATA[...]]>`.
    CData,
    /// `<name ...>` or `<name .../>`.
    StartTag,
    /// `</name>`.
    EndTag,
    /// `<?xml ...?>`, only where the caller allows it.
    XmlDecl,
}

/// The outcome of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// More bytes are needed to find the end of the construct.
    Incomplete,
    /// A complete construct of this kind occupies the first `len` bytes.
    Token(TokenKind, usize),
}

/// Scanner state carried between reads of one incomplete construct.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    /// Bytes of the current construct already examined without finding its end.
    scanned: usize,
    /// Quote state inside a start tag (quick-xml's resumable `>` finder).
    tag: ElementParser,
}

const CDATA_OPEN: &[u8] = b"<![CDATA[";
const XML_DECL_OPEN: &[u8] = b"<?xml";

fn restricted(what: &str) -> StreamError {
    StreamError::new(
        StreamErrorCondition::RestrictedXml,
        format!("{what} not allowed (RFC 6120 section 11)"),
    )
}

fn malformed(what: &str) -> StreamError {
    StreamError::new(StreamErrorCondition::NotWellFormed, what.to_owned())
}

impl Scanner {
    /// Forget any partial progress (after a stream restart the buffer is re-read from its start).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Scan `bytes`, which start at the first unconsumed byte. `decl_allowed` says whether an XML
    /// declaration may appear here (only before the stream header).
    pub(crate) fn scan(&mut self, bytes: &[u8], decl_allowed: bool) -> Result<Scan, StreamError> {
        let scan = self.scan_inner(bytes, decl_allowed)?;
        if let Scan::Token(..) = scan {
            self.clear();
        }
        Ok(scan)
    }

    fn scan_inner(&mut self, bytes: &[u8], decl_allowed: bool) -> Result<Scan, StreamError> {
        let Some(&first) = bytes.first() else {
            return Ok(Scan::Incomplete);
        };
        if first != b'<' {
            return Ok(self.find_from(bytes, 0, b"<", TokenKind::Text, 0));
        }
        let Some(&second) = bytes.get(1) else {
            return Ok(Scan::Incomplete);
        };
        match second {
            b'/' => Ok(self.find_from(bytes, 2, b">", TokenKind::EndTag, 1)),
            b'?' => {
                if !decl_allowed {
                    return Err(restricted("processing instruction"));
                }
                let n = bytes.len().min(XML_DECL_OPEN.len());
                if bytes[..n] != XML_DECL_OPEN[..n] {
                    return Err(restricted("processing instruction"));
                }
                match bytes.get(XML_DECL_OPEN.len()) {
                    None => Ok(Scan::Incomplete),
                    Some(b) if is_xml_whitespace(*b) => Ok(self.find_from(
                        bytes,
                        XML_DECL_OPEN.len(),
                        b"?>",
                        TokenKind::XmlDecl,
                        2,
                    )),
                    // `<?xml-stylesheet` and friends are processing instructions.
                    Some(_) => Err(restricted("processing instruction")),
                }
            }
            b'!' => match bytes.get(2) {
                None => Ok(Scan::Incomplete),
                Some(b'-') => Err(restricted("comment")),
                Some(b'D') => Err(restricted("DOCTYPE")),
                Some(b'[') => {
                    let n = bytes.len().min(CDATA_OPEN.len());
                    if bytes[..n] != CDATA_OPEN[..n] {
                        return Err(malformed("bad <![ section"));
                    }
                    if bytes.len() < CDATA_OPEN.len() {
                        return Ok(Scan::Incomplete);
                    }
                    Ok(self.find_from(bytes, CDATA_OPEN.len(), b"]]>", TokenKind::CData, 3))
                }
                Some(_) => Err(malformed("bad <! markup")),
            },
            _ => {
                let from = self.scanned.max(1);
                match self.tag.feed(&bytes[from..]) {
                    Some(i) => Ok(Scan::Token(TokenKind::StartTag, from + i + 1)),
                    None => {
                        self.scanned = bytes.len();
                        Ok(Scan::Incomplete)
                    }
                }
            }
        }
    }

    /// Find `needle` at or after `min_start`, resuming past what was already scanned. A text token ends
    /// before its `<` (`include` = 0); other tokens end after their terminator (`include` = its length).
    fn find_from(
        &mut self,
        bytes: &[u8],
        min_start: usize,
        needle: &[u8],
        kind: TokenKind,
        include: usize,
    ) -> Scan {
        // Back up by needle.len() - 1 so a terminator split across reads is still found.
        let from = self.scanned.saturating_sub(needle.len() - 1).max(min_start);
        let found = bytes
            .get(from..)
            .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle));
        match found {
            Some(i) => Scan::Token(kind, from + i + include),
            None => {
                self.scanned = bytes.len();
                Scan::Incomplete
            }
        }
    }
}

/// XML's `S` production (XML 1.0 section 2.3).
pub(crate) fn is_xml_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all_at_once(bytes: &[u8]) -> Result<Scan, StreamError> {
        Scanner::default().scan(bytes, false)
    }

    fn cond(r: Result<Scan, StreamError>) -> Option<StreamErrorCondition> {
        r.err().and_then(|e| e.condition())
    }

    #[test]
    fn delimits_each_kind() {
        assert_eq!(
            scan_all_at_once(b"hi<x>").ok(),
            Some(Scan::Token(TokenKind::Text, 2))
        );
        assert_eq!(
            scan_all_at_once(b"<a b='>'>rest").ok(),
            Some(Scan::Token(TokenKind::StartTag, 9))
        );
        assert_eq!(
            scan_all_at_once(b"</a>x").ok(),
            Some(Scan::Token(TokenKind::EndTag, 4))
        );
        assert_eq!(
            scan_all_at_once(b"<![CDATA[a]b]]>x").ok(),
            Some(Scan::Token(TokenKind::CData, 15))
        );
        assert_eq!(
            Scanner::default()
                .scan(b"<?xml version='1.0'?><s", true)
                .ok(),
            Some(Scan::Token(TokenKind::XmlDecl, 21))
        );
    }

    #[test]
    fn resumes_across_splits_at_every_byte() {
        let input: &[u8] = b"<![CDATA[x]]]]><a k=\"v>w\" j='>'/>";
        let mut scanner = Scanner::default();
        let mut got = Vec::new();
        let mut start = 0;
        for end in 1..=input.len() {
            if let Scan::Token(kind, len) = scanner.scan(&input[start..end], false).unwrap() {
                got.push((kind, len));
                start += len;
            }
        }
        assert_eq!(
            got,
            vec![
                (TokenKind::CData, 15),
                (TokenKind::StartTag, input.len() - 15)
            ]
        );
    }

    #[test]
    fn forbidden_constructs_fail_on_their_first_bytes() {
        assert_eq!(
            cond(scan_all_at_once(b"<!D")),
            Some(StreamErrorCondition::RestrictedXml)
        );
        assert_eq!(
            cond(scan_all_at_once(b"<!-")),
            Some(StreamErrorCondition::RestrictedXml)
        );
        assert_eq!(
            cond(scan_all_at_once(b"<?")),
            Some(StreamErrorCondition::RestrictedXml)
        );
        assert_eq!(
            cond(Scanner::default().scan(b"<?xml-stylesheet", true)),
            Some(StreamErrorCondition::RestrictedXml)
        );
        assert_eq!(
            cond(scan_all_at_once(b"<![CDX")),
            Some(StreamErrorCondition::NotWellFormed)
        );
        assert_eq!(
            cond(scan_all_at_once(b"<!x")),
            Some(StreamErrorCondition::NotWellFormed)
        );
        assert_eq!(scan_all_at_once(b"<![CDA").ok(), Some(Scan::Incomplete));
    }
}
