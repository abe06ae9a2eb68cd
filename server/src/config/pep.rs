//! `[pep]`: the limits of the XEP-0163 pubsub service every account has on its bare JID. A request
//! over a limit is refused (XEP-0060 section 7.1.3.6 `not-acceptable` for an item too big,
//! `policy-violation` for a node or item count), never answered by dropping stored data.

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPep {
    /// Most nodes one account may own.
    pub max_nodes_per_account: usize,
    /// Most items one node may keep: the largest `pubsub#max_items`, and what `max` means.
    pub max_items_per_node: u32,
    /// Largest item (its payload as serialised XML), in bytes.
    pub max_item_bytes: usize,
}

impl Default for RawPep {
    fn default() -> Self {
        RawPep {
            max_nodes_per_account: 100,
            max_items_per_node: 256,
            max_item_bytes: 65_536,
        }
    }
}

/// The checked section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepSettings {
    pub max_nodes_per_account: usize,
    pub max_items_per_node: u32,
    pub max_item_bytes: usize,
}

impl Default for PepSettings {
    /// What `RawPep::default()` resolves to (a unit test checks they agree).
    fn default() -> Self {
        PepSettings {
            max_nodes_per_account: 100,
            max_items_per_node: 256,
            max_item_bytes: 65_536,
        }
    }
}

/// Largest values a configuration may name.
const MAX_NODES_LIMIT: usize = 10_000;
const MAX_ITEMS_LIMIT: u32 = 10_000;
const MAX_ITEM_BYTES_LIMIT: usize = 1 << 20;

impl RawPep {
    /// Checks the section; problems go to `problems` (prefixed with the section name).
    pub fn resolve(&self, problems: &mut Vec<String>) -> Option<PepSettings> {
        let before = problems.len();
        if self.max_nodes_per_account == 0 || self.max_nodes_per_account > MAX_NODES_LIMIT {
            problems.push(format!(
                "pep.max_nodes_per_account: must be between 1 and {MAX_NODES_LIMIT}"
            ));
        }
        if self.max_items_per_node == 0 || self.max_items_per_node > MAX_ITEMS_LIMIT {
            problems.push(format!(
                "pep.max_items_per_node: must be between 1 and {MAX_ITEMS_LIMIT}"
            ));
        }
        if self.max_item_bytes < 1024 || self.max_item_bytes > MAX_ITEM_BYTES_LIMIT {
            problems.push(format!(
                "pep.max_item_bytes: must be between 1024 and {MAX_ITEM_BYTES_LIMIT}"
            ));
        }
        (problems.len() == before).then_some(PepSettings {
            max_nodes_per_account: self.max_nodes_per_account,
            max_items_per_node: self.max_items_per_node,
            max_item_bytes: self.max_item_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut problems = Vec::new();
        let settings = RawPep::default().resolve(&mut problems).expect("valid");
        assert!(problems.is_empty());
        assert_eq!(settings, PepSettings::default());
    }

    #[test]
    fn out_of_range_values_are_reported() {
        let raw = RawPep {
            max_nodes_per_account: 0,
            max_items_per_node: 1_000_000,
            max_item_bytes: 10,
        };
        let mut problems = Vec::new();
        assert!(raw.resolve(&mut problems).is_none());
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
