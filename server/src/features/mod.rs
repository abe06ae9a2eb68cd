//! One module per RFC or XEP the server implements.

pub mod subscription;
