//! Serialisation of elements onto a stream (XML 1.0 sections 2.4 and 3.3.3; RFC 6120 section 4.8).
//!
//! Written by hand rather than with minidom's writer so that (a) stanzas in the stream's default
//! namespace carry no `xmlns`, (b) stream-namespace elements use the `stream:` prefix the header bound,
//! and (c) every character of text and attribute values is escaped so that no content can end an
//! element early.

use xmpp_parsers::minidom::Node;

use super::error::StreamErrorCondition;
use super::stream::StreamHeader;
use super::{Element, ns};

/// Characters XML 1.0 cannot carry at all (section 2.2). Parsed input never contains them; they can
/// only come from locally built strings, and are dropped rather than sent as a stream-killing error.
fn is_unrepresentable(c: char) -> bool {
    matches!(c, '\0'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Escape character data. `>` is escaped so that `]]>` cannot appear; `\r` as a reference so that
/// end-of-line handling on the receiving side does not turn it into `\n`.
pub(crate) fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_unrepresentable(c) => {}
            c => out.push(c),
        }
    }
}

/// Escape an attribute value for either quote; literal whitespace other than space is written as a
/// reference so attribute-value normalisation (XML 1.0 section 3.3.3) does not change it.
pub(crate) fn escape_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_unrepresentable(c) => {}
            c => out.push(c),
        }
    }
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("='");
    escape_attr(out, value);
    out.push('\'');
}

/// Prefixes our stream header binds, so elements in those namespaces are written with them.
fn header_prefix(namespace: &str, stream_ns: &str) -> Option<&'static str> {
    match namespace {
        ns::STREAMS => Some("stream"),
        ns::DIALBACK if stream_ns == ns::SERVER => Some("db"),
        _ => None,
    }
}

/// Serialise a first-level element for a stream whose default namespace is `stream_ns`
/// (`""` if no header was sent: then every element carries its namespace).
pub(crate) fn element(element: &Element, stream_ns: &str) -> String {
    let mut out = String::new();
    // RFC 6120 section 4.8.3: the content namespace is a property of the stream, so a jabber:client
    // stanza routed onto a server or component stream takes that stream's namespace.
    let alias = matches!(stream_ns, ns::SERVER | ns::COMPONENT_ACCEPT).then_some(stream_ns);
    let prefixes_bound = !stream_ns.is_empty();
    write(
        &mut out,
        element,
        stream_ns,
        alias,
        prefixes_bound.then_some(stream_ns),
    );
    out
}

/// `parent_ns` is the default namespace in scope; `alias` is the namespace `jabber:client` is written
/// as (only along the unbroken `jabber:client` chain from the stanza down); `header_ns` is the
/// stream's namespace when our header's prefixes are in scope.
fn write(
    out: &mut String,
    el: &Element,
    parent_ns: &str,
    alias: Option<&str>,
    header_ns: Option<&str>,
) {
    let own_ns = el.ns();
    let (namespace, child_alias) = match alias {
        Some(alias) if own_ns == ns::CLIENT => (alias.to_owned(), Some(alias)),
        _ => (own_ns, None),
    };
    // The xml prefix is bound by definition and its namespace may never be declared (Namespaces in
    // XML section 3), so an element in it can only be written with the prefix.
    let prefix = if namespace == ns::XML {
        Some("xml")
    } else {
        header_ns.and_then(|stream_ns| header_prefix(&namespace, stream_ns))
    };
    out.push('<');
    if let Some(prefix) = prefix {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(el.name());
    // A prefixed element leaves the default namespace as it was for its children.
    let children_ns = match prefix {
        Some(_) => parent_ns,
        None => {
            if namespace != parent_ns {
                push_attr(out, "xmlns", &namespace);
            }
            namespace.as_str()
        }
    };
    let mut generated = 0;
    for ((attr_ns, name), value) in el.attrs() {
        let attr_ns: &str = attr_ns;
        if attr_ns.is_empty() {
            push_attr(out, name, value);
        } else if attr_ns == ns::XML {
            push_attr(out, &format!("xml:{name}"), value);
        } else {
            // Namespaced attributes get a prefix declared on the element itself.
            let prefix = format!("ns{generated}");
            generated += 1;
            push_attr(out, &format!("xmlns:{prefix}"), attr_ns);
            push_attr(out, &format!("{prefix}:{name}"), value);
        }
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for node in nodes {
        match node {
            Node::Element(child) => write(out, child, children_ns, child_alias, header_ns),
            Node::Text(text) => escape_text(out, text),
        }
    }
    out.push_str("</");
    if let Some(prefix) = prefix {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(el.name());
    out.push('>');
}

/// `<?xml version='1.0'?><stream:stream ...>` for `header`.
pub(crate) fn stream_header(header: &StreamHeader) -> String {
    let mut out = String::from("<?xml version='1.0'?><stream:stream");
    if !header.default_ns.is_empty() {
        push_attr(&mut out, "xmlns", &header.default_ns);
    }
    push_attr(&mut out, "xmlns:stream", ns::STREAMS);
    if header.default_ns == ns::SERVER {
        push_attr(&mut out, "xmlns:db", ns::DIALBACK);
    }
    let attrs = [
        ("id", &header.id),
        ("from", &header.from),
        ("to", &header.to),
    ];
    for (name, value) in attrs {
        if let Some(value) = value {
            push_attr(&mut out, name, value);
        }
    }
    push_attr(
        &mut out,
        "version",
        header.version.as_deref().unwrap_or("1.0"),
    );
    if let Some(lang) = &header.lang {
        push_attr(&mut out, "xml:lang", lang);
    }
    out.push('>');
    out
}

/// `<stream:error><condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text .../></stream:error>`
/// (RFC 6120 section 4.9.2).
pub(crate) fn stream_error(condition: StreamErrorCondition, text: Option<&str>) -> String {
    let mut out = format!(
        "<stream:error><{} xmlns='{}'/>",
        condition.as_str(),
        ns::STREAM_ERRORS
    );
    if let Some(text) = text {
        out.push_str("<text xmlns='");
        out.push_str(ns::STREAM_ERRORS);
        out.push_str("'>");
        escape_text(&mut out, text);
        out.push_str("</text>");
    }
    out.push_str("</stream:error>");
    out
}
