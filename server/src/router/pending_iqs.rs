//! IQ requests the server sends on its own or a user's behalf and waits for the answer of (RFC 6120
//! section 8.2.3: every get or set is answered with exactly one result or error carrying its id).
//!
//! [`PendingIqs::request`] gives the request a fresh random id, routes it and waits for the answer
//! that [`PendingIqs::complete`] hands over when a result or error with that id comes back from the
//! JID the request went to and to the JID it came from; anything else is not an answer (a peer cannot
//! answer someone else's request by guessing its id: the id has 128 random bits). The number waiting
//! at once is bounded, and each waits at most its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::Router;
use crate::xmpp::{Element, Envelope, set_attribute};

/// Requests waiting for an answer at most, server-wide. Beyond it a request fails at once with
/// [`IqRequestError::TooManyPending`]: a peer that never answers cannot make the server hold more.
pub const MAX_PENDING_IQS: usize = 4096;

/// Why [`PendingIqs::request`] has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IqRequestError {
    /// No answer within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// [`MAX_PENDING_IQS`] requests are already waiting.
    #[error("too many requests waiting for an answer")]
    TooManyPending,
    /// The request is not an IQ get or set with `from` and `to` (a bug in the caller).
    #[error("not a routable IQ request")]
    NotARequest,
}

struct Waiting {
    /// The request's `to`, which the answer must come from.
    to: String,
    /// The request's `from`, which the answer must be addressed to.
    from: String,
    answer: oneshot::Sender<Envelope>,
}

/// The table of requests waiting for an answer, keyed by id.
#[derive(Default)]
pub struct PendingIqs {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl std::fmt::Debug for PendingIqs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingIqs")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

/// Removes the entry when the request stops waiting, answered or not (timeout, or the caller's
/// future dropped).
struct Entry<'a> {
    table: &'a PendingIqs,
    id: String,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl PendingIqs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `iq` (a get or set with `from` and `to`; its `id` is replaced) through `router` and waits
    /// up to `timeout` for the answer: the result or error as received. A request the router bounces
    /// comes back as an error answer, like any other. Errors: [`IqRequestError`].
    pub async fn request(
        &self,
        router: &Arc<Router>,
        mut iq: Element,
        timeout: Duration,
    ) -> Result<Envelope, IqRequestError> {
        let id = format!("herald-{:032x}", rand::random::<u128>());
        set_attribute(&mut iq, "id", &id);
        let envelope = Envelope::parse(iq).map_err(|_| IqRequestError::NotARequest)?;
        let (Some(to), Some(from)) = (&envelope.to, &envelope.from) else {
            return Err(IqRequestError::NotARequest);
        };
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self.lock();
            if waiting.len() >= MAX_PENDING_IQS {
                return Err(IqRequestError::TooManyPending);
            }
            waiting.insert(
                id.clone(),
                Waiting {
                    to: to.to_string(),
                    from: from.to_string(),
                    answer,
                },
            );
        }
        let _entry = Entry { table: self, id };
        let waited = tokio::time::timeout(timeout, async move {
            Box::pin(router.route(envelope)).await;
            answered.await
        })
        .await;
        match waited {
            Ok(Ok(answer)) => Ok(answer),
            // The sender is only dropped with the entry, which this future holds.
            Ok(Err(_)) | Err(_) => Err(IqRequestError::Timeout),
        }
    }

    /// Takes `response` (a result or error) if it answers a waiting request; returns whether it did.
    pub fn complete(&self, response: Envelope) -> bool {
        let Some(id) = response.id() else {
            return false;
        };
        let mut waiting = self.lock();
        let matches = waiting.get(id).is_some_and(|w| {
            response.from.as_ref().map(|j| j.to_string()).as_deref() == Some(w.to.as_str())
                && response.to.as_ref().map(|j| j.to_string()).as_deref() == Some(w.from.as_str())
        });
        if !matches {
            return false;
        }
        let Some(entry) = waiting.remove(id) else {
            return false;
        };
        drop(waiting);
        entry.answer.send(response).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str, from: &str, to: &str) -> Envelope {
        let xml =
            format!("<iq xmlns='jabber:client' type='result' id='{id}' from='{from}' to='{to}'/>");
        Envelope::parse(xml.parse().expect("xml")).expect("envelope")
    }

    #[test]
    fn only_the_addressee_answers_and_only_once() {
        let table = PendingIqs::default();
        let (answer, mut answered) = oneshot::channel();
        table.lock().insert(
            "q1".into(),
            Waiting {
                to: "push.example".into(),
                from: "alice@example.org".into(),
                answer,
            },
        );
        assert!(!table.complete(response("q1", "mallory.example", "alice@example.org")));
        assert!(!table.complete(response("q1", "push.example", "bob@example.org")));
        assert!(!table.complete(response("q2", "push.example", "alice@example.org")));
        assert!(answered.try_recv().is_err());
        assert!(table.complete(response("q1", "push.example", "alice@example.org")));
        assert!(answered.try_recv().is_ok());
        assert!(!table.complete(response("q1", "push.example", "alice@example.org")));
    }
}
