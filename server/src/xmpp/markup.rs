//! Decoding of delimited markup into minidom elements: names, start and end tags, attribute values,
//! character data and namespace scopes (XML 1.0 sections 2.2, 2.4, 2.11, 3.1, 3.3.3 and 4.1;
//! Namespaces in XML 1.0 sections 3 to 6), with the restricted-XML rules of RFC 6120 section 11.

use std::borrow::Cow;

use quick_xml::escape::{EscapeError, unescape_with};
use quick_xml::events::BytesStart;
use xmpp_parsers::minidom::Node;
use xmpp_parsers::minidom::rxml::{Namespace, NcName};

use super::Element;
use super::error::{StreamError, StreamErrorCondition};
use super::ns;
use super::token::is_xml_whitespace;

/// The namespace name reserved for `xmlns` declarations themselves (Namespaces in XML section 3).
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

pub(crate) fn malformed(text: impl Into<String>) -> StreamError {
    StreamError::new(StreamErrorCondition::NotWellFormed, text)
}

/// Invalid UTF-8 is not-well-formed: RFC 6120 section 11.6 makes UTF-8 the only encoding.
pub(crate) fn as_utf8(bytes: &[u8]) -> Result<&str, StreamError> {
    std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8"))
}

/// XML 1.0 section 2.2 `Char` (Rust's `char` already excludes surrogates).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
        && c != '\u{FFFE}'
        && c != '\u{FFFF}'
}

fn check_chars(s: &str) -> Result<(), StreamError> {
    match s.chars().find(|c| !is_xml_char(*c)) {
        Some(c) => Err(malformed(format!(
            "character U+{:04X} is not allowed in XML",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// Replace the five predefined entities and character references. Any other entity reference is
/// restricted-xml (RFC 6120 section 11.1); a stray `&` or a bad character reference is not-well-formed.
fn unescape(raw: &str) -> Result<Cow<'_, str>, StreamError> {
    unescape_with(raw, |name| match name {
        "lt" => Some("<"),
        "gt" => Some(">"),
        "amp" => Some("&"),
        "apos" => Some("'"),
        "quot" => Some("\""),
        _ => None,
    })
    .map_err(|e| match e {
        EscapeError::UnrecognizedEntity(_, name) if NcName::try_from(name.as_str()).is_ok() => {
            StreamError::new(
                StreamErrorCondition::RestrictedXml,
                format!(
                    "entity reference &{name}; (only the five predefined entities are allowed)"
                ),
            )
        }
        other => malformed(format!("bad reference: {other}")),
    })
}

/// Character data between tags: end-of-line handling (XML 1.0 section 2.11), references, and the
/// checks that `]]>` is absent and every character is allowed.
pub(crate) fn decode_text(raw: &str) -> Result<String, StreamError> {
    if raw.contains("]]>") {
        return Err(malformed("']]>' in character data"));
    }
    let normalized = normalize_line_ends(raw, false);
    let text = unescape(&normalized)?.into_owned();
    check_chars(&text)?;
    Ok(text)
}

/// The content of a CDATA section: only end-of-line handling and the character check.
pub(crate) fn decode_cdata(raw: &str) -> Result<String, StreamError> {
    let text = normalize_line_ends(raw, false).into_owned();
    check_chars(&text)?;
    Ok(text)
}

/// An attribute value: literal `<` is forbidden, literal whitespace becomes a space
/// (XML 1.0 section 3.3.3), then references are replaced, so `&#10;` survives as a line feed.
fn decode_attr_value(raw: &str) -> Result<String, StreamError> {
    if raw.contains('<') {
        return Err(malformed("'<' in attribute value"));
    }
    let normalized = normalize_line_ends(raw, true);
    let value = unescape(&normalized)?.into_owned();
    check_chars(&value)?;
    Ok(value)
}

/// `\r\n` and lone `\r` become `\n` (XML 1.0 section 2.11); in attribute values every literal
/// whitespace character then becomes a space.
fn normalize_line_ends(raw: &str, attribute: bool) -> Cow<'_, str> {
    let needs_work = if attribute {
        raw.contains(['\r', '\n', '\t'])
    } else {
        raw.contains('\r')
    };
    if !needs_work {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let c = if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            '\n'
        } else {
            c
        };
        out.push(if attribute && matches!(c, '\n' | '\t') {
            ' '
        } else {
            c
        });
    }
    Cow::Owned(out)
}

/// Split a qualified name into prefix and local part, both NCNames (Namespaces in XML section 4).
pub(crate) fn split_qname(qname: &str) -> Result<(Option<&str>, &str), StreamError> {
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, qname),
    };
    let valid = |s: &str| NcName::try_from(s).is_ok();
    if !valid(local) || !prefix.is_none_or(valid) {
        return Err(malformed(format!("invalid name {qname:?}")));
    }
    Ok((prefix, local))
}

/// In-scope namespace bindings: a stack of (prefix, namespace name), innermost last.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    bindings: Vec<(Option<String>, String)>,
}

impl Scope {
    pub(crate) fn depth_marker(&self) -> usize {
        self.bindings.len()
    }

    /// Gives back capacity beyond the bindings in force (the stream header's, between stanzas).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bindings.shrink_to_fit();
    }

    pub(crate) fn truncate(&mut self, marker: usize) {
        self.bindings.truncate(marker);
    }

    /// Record one `xmlns` / `xmlns:p` attribute, rejecting the bindings Namespaces in XML forbids.
    fn declare(&mut self, prefix: Option<&str>, namespace: String) -> Result<(), StreamError> {
        let reserved = namespace == ns::XML || namespace == XMLNS_NS;
        match prefix {
            Some("xmlns") => return Err(malformed("the xmlns prefix cannot be declared")),
            Some("xml") if namespace != ns::XML => {
                return Err(malformed("the xml prefix cannot be rebound"));
            }
            Some("xml") => return Ok(()),
            Some(_) if namespace.is_empty() => {
                return Err(malformed("a prefix cannot be undeclared"));
            }
            _ if reserved => return Err(malformed("reserved namespace name")),
            _ => {}
        }
        self.bindings.push((prefix.map(str::to_owned), namespace));
        Ok(())
    }

    /// The namespace of an element or attribute with this prefix. Unprefixed elements take the default
    /// namespace (possibly none, `""`); unprefixed attributes have no namespace.
    pub(crate) fn resolve(
        &self,
        prefix: Option<&str>,
        is_attribute: bool,
    ) -> Result<String, StreamError> {
        match prefix {
            None if is_attribute => Ok(String::new()),
            Some("xml") => Ok(ns::XML.to_owned()),
            _ => match self
                .bindings
                .iter()
                .rev()
                .find(|(p, _)| p.as_deref() == prefix)
            {
                Some((_, namespace)) => Ok(namespace.clone()),
                None if prefix.is_none() => Ok(String::new()),
                None => Err(StreamError::new(
                    StreamErrorCondition::BadNamespacePrefix,
                    format!("unbound prefix {:?}", prefix.unwrap_or_default()),
                )),
            },
        }
    }
}

/// What one element costs in the parsed tree besides its strings: its `Node` slot in the parent's
/// children (a vector that grows by doubling, so up to two slots), and the allocations holding its name
/// and namespace name, with allocator overhead. An estimate for the budget in [`super::Limits`], on the
/// high side.
pub(crate) const ELEMENT_OVERHEAD_BYTES: usize = 2 * size_of::<Node>() + 64;
/// What one attribute costs besides its name, value and namespace name: its map entry and allocations.
pub(crate) const ATTRIBUTE_OVERHEAD_BYTES: usize = 96;
/// What one text node costs besides its characters.
pub(crate) const TEXT_OVERHEAD_BYTES: usize = 2 * size_of::<Node>();

fn too_many_attributes(max_attributes: usize) -> StreamError {
    StreamError::new(
        StreamErrorCondition::PolicyViolation,
        format!("more than {max_attributes} attributes on one element"),
    )
}

/// An element opened by a start tag, before its children arrive.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) element: Element,
    /// The tag name as written, which the end tag must repeat exactly (XML 1.0 section 3, WFC 1).
    pub(crate) qname: String,
    /// `<x/>`: complete already.
    pub(crate) is_empty: bool,
    /// `scope` marker from before this element's declarations, restored when it closes.
    pub(crate) scope_marker: usize,
    /// Estimated bytes this element holds in the parsed tree: name, namespace name (each element keeps a
    /// copy of it, however long), attributes, and the overheads above.
    pub(crate) parsed_bytes: usize,
}

/// Decode a complete start tag (`<` to `>` inclusive), pushing its namespace declarations onto `scope`.
///
/// Errors: `policy-violation` past `max_attributes` attributes, counted before any is decoded further,
/// so the duplicate-attribute check (quadratic in the count) stays small; otherwise as the XML is wrong.
pub(crate) fn open_element(
    tag: &[u8],
    scope: &mut Scope,
    max_attributes: usize,
) -> Result<Opened, StreamError> {
    let tag = as_utf8(tag)?;
    let inner = tag.get(1..tag.len().saturating_sub(1)).unwrap_or_default();
    let (content, is_empty) = match inner.strip_suffix('/') {
        Some(content) => (content, true),
        None => (inner, false),
    };
    let name_len = content
        .bytes()
        .position(is_xml_whitespace)
        .unwrap_or(content.len());
    let qname = &content[..name_len];
    let (prefix, local) = split_qname(qname)?;

    let mut attributes = Vec::new();
    let start = BytesStart::from_content(content, name_len);
    let base = content.as_ptr() as usize;
    let mut iter = start.attributes();
    iter.with_checks(true);
    for attr in iter {
        if attributes.len() == max_attributes {
            return Err(too_many_attributes(max_attributes));
        }
        let attr = attr.map_err(|e| malformed(format!("bad attribute: {e}")))?;
        // quick-xml accepts `a='1'b='2'`; XML 1.0 section 3.1 requires whitespace between attributes.
        let value_end = (attr.value.as_ptr() as usize).wrapping_sub(base) + attr.value.len();
        if let Some(&after_quote) = content.as_bytes().get(value_end + 1)
            && !is_xml_whitespace(after_quote)
        {
            return Err(malformed("attributes must be separated by whitespace"));
        }
        let key = as_utf8(attr.key.as_ref())?.to_owned();
        let value = decode_attr_value(as_utf8(&attr.value)?)?;
        attributes.push((key, value));
    }

    let scope_marker = scope.depth_marker();
    for (key, value) in &attributes {
        if key == "xmlns" {
            scope.declare(None, value.clone())?;
        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
            split_qname(prefix)?;
            scope.declare(Some(prefix), value.clone())?;
        }
    }
    // Every element and prefixed attribute looks its namespace up among the declarations in scope, so
    // their number multiplies the cost of each lookup: bound it like the attributes of one element.
    if scope.depth_marker() > max_attributes {
        return Err(StreamError::new(
            StreamErrorCondition::PolicyViolation,
            format!("more than {max_attributes} namespace declarations in scope"),
        ));
    }
    if prefix == Some("xmlns") {
        return Err(malformed("element names cannot use the xmlns prefix"));
    }
    let namespace = scope.resolve(prefix, false)?;
    let mut parsed_bytes = ELEMENT_OVERHEAD_BYTES + local.len() + namespace.len();
    let mut element = Element::bare(local, namespace);
    for (key, value) in attributes {
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (prefix, local) = split_qname(&key)?;
        let namespace = scope.resolve(prefix, true)?;
        // Two prefixes bound to one namespace can still name the same attribute (Namespaces in XML section 6.3).
        if element.attr_ns(namespace.as_str(), local).is_some() {
            return Err(malformed(format!("duplicate attribute {key:?}")));
        }
        parsed_bytes += ATTRIBUTE_OVERHEAD_BYTES + key.len() + value.len() + namespace.len();
        let name =
            NcName::try_from(local).map_err(|_| malformed(format!("invalid name {key:?}")))?;
        let namespace = if namespace.is_empty() {
            Namespace::NONE
        } else {
            Namespace::from(namespace)
        };
        element.set_attr(namespace, name, value);
    }
    Ok(Opened {
        element,
        qname: qname.to_owned(),
        is_empty,
        scope_marker,
        parsed_bytes,
    })
}

/// The name in a complete end tag (`</` to `>` inclusive); whitespace may follow the name.
pub(crate) fn end_tag_name(tag: &[u8]) -> Result<&str, StreamError> {
    let tag = as_utf8(tag)?;
    let name = tag.get(2..tag.len().saturating_sub(1)).unwrap_or_default();
    let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
    split_qname(name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<T: std::fmt::Debug>(r: Result<T, StreamError>) -> StreamErrorCondition {
        r.expect_err("should fail")
            .condition()
            .expect("a condition")
    }

    #[test]
    fn unescapes_predefined_and_numeric_references() {
        assert_eq!(
            decode_text("a &lt;b&gt; &amp; &apos;&quot; &#x1F600; &#65;").unwrap(),
            "a <b> & '\" 😀 A"
        );
        assert_eq!(decode_text("x\r\ny\rz").unwrap(), "x\ny\nz");
        assert_eq!(
            decode_attr_value("a\tb\r\nc&#10;d&#x9;").unwrap(),
            "a b c\nd\t"
        );
    }

    #[test]
    fn reference_errors() {
        assert_eq!(
            cond(decode_text("&nbsp;")),
            StreamErrorCondition::RestrictedXml
        );
        assert_eq!(
            cond(decode_text("a & b")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_text("&#0;")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_text("&#1;")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_text("&#xD800;")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_text("a]]>b")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_text("bell\u{7}")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(decode_attr_value("a<b")),
            StreamErrorCondition::NotWellFormed
        );
    }

    #[test]
    fn start_tags_resolve_namespaces() {
        let mut scope = Scope::default();
        let opened = open_element(
            b"<p:x xmlns='d' xmlns:p='urn:p' a='1' p:b=\"2\" xml:lang='en'/>",
            &mut scope,
            64,
        )
        .unwrap();
        assert!(opened.is_empty);
        assert_eq!(opened.qname, "p:x");
        assert!(opened.element.is("x", "urn:p"));
        assert_eq!(opened.element.attr("a"), Some("1"));
        assert_eq!(opened.element.attr_ns("urn:p", "b"), Some("2"));
        assert_eq!(opened.element.attr_ns(ns::XML, "lang"), Some("en"));
        assert_eq!(scope.resolve(None, false).unwrap(), "d");
        scope.truncate(opened.scope_marker);
        assert_eq!(scope.resolve(None, false).unwrap(), "");
    }

    #[test]
    fn start_tag_errors() {
        let mut scope = Scope::default();
        let mut open = |tag: &str| open_element(tag.as_bytes(), &mut scope, 64).map(|o| o.element);
        assert_eq!(
            cond(open("<q:x>")),
            StreamErrorCondition::BadNamespacePrefix
        );
        assert_eq!(
            cond(open("<x q:a='1'>")),
            StreamErrorCondition::BadNamespacePrefix
        );
        assert_eq!(
            cond(open("<x a='1' a='2'>")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(open("<x xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'>")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(open("<x a='1'b='2'>")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(cond(open("<x a=1>")), StreamErrorCondition::NotWellFormed);
        assert_eq!(cond(open("<x a>")), StreamErrorCondition::NotWellFormed);
        assert_eq!(cond(open("<1x>")), StreamErrorCondition::NotWellFormed);
        assert_eq!(
            cond(open("<x xmlns:p=''>")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(open("<x xmlns:xml='urn:other'>")),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            cond(open("<x a='&ent;'>")),
            StreamErrorCondition::RestrictedXml
        );
        assert_eq!(
            cond(open_element(b"<x a='\xff'>", &mut Scope::default(), 64)),
            StreamErrorCondition::NotWellFormed
        );
    }

    #[test]
    fn attributes_are_counted_before_they_are_checked() {
        let tag = |n: usize| {
            let attributes: String = (0..n).map(|i| format!(" a{i}='1'")).collect();
            format!("<x{attributes}/>")
        };
        assert!(open_element(tag(3).as_bytes(), &mut Scope::default(), 3).is_ok());
        assert_eq!(
            cond(open_element(tag(4).as_bytes(), &mut Scope::default(), 3)),
            StreamErrorCondition::PolicyViolation
        );
        // Declarations count too; a duplicate past the cap is refused for the count, unread.
        assert_eq!(
            cond(open_element(
                b"<x xmlns='a' xmlns:p='b' a='1' a='1'/>",
                &mut Scope::default(),
                3
            )),
            StreamErrorCondition::PolicyViolation
        );
    }

    #[test]
    fn end_tags() {
        assert_eq!(end_tag_name(b"</stream:stream >").unwrap(), "stream:stream");
        assert_eq!(
            cond(end_tag_name(b"</ a>")),
            StreamErrorCondition::NotWellFormed
        );
    }
}
