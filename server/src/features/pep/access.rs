//! Who may read a PEP node (XEP-0060 section 4.5 access models as XEP-0163 section 3 uses them): a
//! pure function of the node's access model and of what the owner's roster says about the
//! requester, and the one answer everyone refused or asking for a missing node gets, so that it
//! tells nothing beyond the requester's own relationship with the owner.

use herald_storage::{PepNode, RosterItem, Subscription};

use super::wire::AccessModel;
use crate::xmpp::DefinedCondition;

/// The requester as the owner's roster sees them.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The requester is the owner (any of their resources).
    pub is_owner: bool,
    /// The subscription of the owner's roster item for the requester (`None`: not in the roster).
    pub subscription: Option<Subscription>,
    /// The groups of that roster item.
    pub groups: &'a [String],
}

impl Requester<'_> {
    /// The owner's own resources.
    pub const OWNER: Requester<'static> = Requester {
        is_owner: true,
        subscription: None,
        groups: &[],
    };

    /// Someone else, as the owner's roster item for them says (`None`: not in the roster; an item
    /// kept only for a pending request counts as none).
    pub fn contact(item: Option<&RosterItem>) -> Requester<'_> {
        Requester {
            is_owner: false,
            subscription: item.filter(|i| i.in_roster).map(|i| i.subscription),
            groups: item.map_or(&[], |i| i.groups.as_slice()),
        }
    }

    /// Subscribed to the owner's presence (XEP-0163 section 3.2: `from` or `both`).
    fn has_presence_subscription(&self) -> bool {
        matches!(
            self.subscription,
            Some(Subscription::From | Subscription::Both)
        )
    }
}

/// Whether `requester` may read (retrieve items, get notifications of) a node with `model`, whose
/// `pubsub#roster_groups_allowed` is `allowed_groups`.
pub fn may_read(model: AccessModel, allowed_groups: &[String], requester: &Requester<'_>) -> bool {
    if requester.is_owner {
        return true;
    }
    match model {
        AccessModel::Open => true,
        AccessModel::Presence => requester.has_presence_subscription(),
        // XEP-0060 section 4.5: "entities in the specified roster group(s)".
        AccessModel::Roster => {
            requester.subscription.is_some()
                && requester.groups.iter().any(|g| allowed_groups.contains(g))
        }
        // No affiliations are managed: the whitelist holds the owner alone.
        AccessModel::Whitelist => false,
    }
}

/// The stored node's access model; one this build does not know reads as `presence`, the XEP-0163
/// section 3 default.
pub fn access_model(node: &PepNode) -> AccessModel {
    AccessModel::parse(&node.access_model).unwrap_or(AccessModel::Presence)
}

/// [`may_read`] for a stored node: its access model and its `pubsub#roster_groups_allowed`.
pub fn may_read_node(node: &PepNode, requester: &Requester<'_>) -> bool {
    may_read(access_model(node), &node.roster_groups, requester)
}

/// The error for a read that is refused or names a missing node. It depends only on the requester:
/// the owner and presence subscribers learn `item-not-found` (XEP-0060 section 6.5.9.11), anyone
/// else `forbidden`, so no one learns whether a node they may not read exists.
pub fn refusal(requester: &Requester<'_>) -> DefinedCondition {
    if requester.is_owner || requester.has_presence_subscription() {
        DefinedCondition::ItemNotFound
    } else {
        DefinedCondition::Forbidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_table() {
        use AccessModel::*;
        use Subscription as S;
        let friends = vec!["Friends".to_string()];
        let other = vec!["Work".to_string()];
        let none: Vec<String> = Vec::new();
        let requester = |subscription, groups| Requester {
            is_owner: false,
            subscription,
            groups,
        };
        let stranger = requester(None, &none);
        let pending = requester(Some(S::None), &friends);
        let to = requester(Some(S::To), &friends);
        let from = requester(Some(S::From), &none);
        let both_friend = requester(Some(S::Both), &friends);
        let both_other = requester(Some(S::Both), &other);
        let owner = Requester::OWNER;
        // (model, requester, may read)
        let cases = [
            (Presence, owner, true),
            (Presence, stranger, false),
            (Presence, pending, false),
            (Presence, to, false),
            (Presence, from, true),
            (Presence, both_other, true),
            (Open, stranger, true),
            (Open, owner, true),
            (Roster, stranger, false),
            (Roster, to, true),
            (Roster, both_friend, true),
            (Roster, both_other, false),
            (Roster, from, false),
            (Roster, owner, true),
            (Whitelist, owner, true),
            (Whitelist, both_friend, false),
            (Whitelist, stranger, false),
        ];
        for (n, (model, requester, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                may_read(model, &friends, &requester),
                expected,
                "case {n}: {model:?} {requester:?}"
            );
        }
    }

    #[test]
    fn a_refusal_depends_on_the_requester_only() {
        let none: Vec<String> = Vec::new();
        let subscriber = Requester {
            is_owner: false,
            subscription: Some(Subscription::Both),
            groups: &none,
        };
        let stranger = Requester {
            is_owner: false,
            subscription: None,
            groups: &none,
        };
        assert_eq!(refusal(&Requester::OWNER), DefinedCondition::ItemNotFound);
        assert_eq!(refusal(&subscriber), DefinedCondition::ItemNotFound);
        assert_eq!(refusal(&stranger), DefinedCondition::Forbidden);
    }
}
