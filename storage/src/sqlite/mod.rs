//! SQLite backend (the embedded default).
use crate::{Storage, StorageResult};
pub(crate) async fn connect(url: &str) -> StorageResult<Storage> { Err(crate::StorageError::UnsupportedUrl(url.into())) }
