//! Herald.

pub mod c2s;
pub mod features;
pub mod net;
