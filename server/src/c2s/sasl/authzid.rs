//! The authorization identity check of RFC 6120 section 6.3.8: a client may only act as its own bare JID.

/// RFC 6120 section 6.3.8: we let a user act only as themselves, so an authzid must be the bare JID of the
/// authcid. Localparts compare after nodeprep, domains after nameprep; a resource is never allowed.
pub(super) fn matches(authzid: &str, username: &str, domain: Option<&str>) -> bool {
    if authzid.contains('/') {
        return false;
    }
    let Some((local, authz_domain)) = authzid.split_once('@') else {
        return false;
    };
    let same_local = match (stringprep::nodeprep(local), stringprep::nodeprep(username)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let same_domain = match domain {
        None => true,
        Some(domain) => match (
            stringprep::nameprep(authz_domain),
            stringprep::nameprep(domain),
        ) {
            (Ok(a), Ok(b)) => a.trim_end_matches('.') == b.trim_end_matches('.'),
            _ => false,
        },
    };
    same_local && same_domain
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn authzid_must_be_the_users_own_bare_jid() {
        assert!(matches("juliet@example.com", "juliet", Some("example.com")));
        assert!(
            matches("Juliet@EXAMPLE.com", "juliet", Some("example.com")),
            "nodeprep/nameprep fold case"
        );
        assert!(matches(
            "juliet@example.com.",
            "juliet",
            Some("example.com")
        ));
        assert!(
            matches("juliet@anything", "juliet", None),
            "without a domain only the localpart is checked"
        );
        assert!(!matches("romeo@example.com", "juliet", Some("example.com")));
        assert!(!matches(
            "juliet@example.org",
            "juliet",
            Some("example.com")
        ));
        assert!(!matches(
            "juliet@example.com/balcony",
            "juliet",
            Some("example.com")
        ));
        assert!(!matches("juliet", "juliet", Some("example.com")));
        assert!(!matches("@example.com", "juliet", Some("example.com")));
    }
}
