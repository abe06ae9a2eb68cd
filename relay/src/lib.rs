//! Herald push relay.
