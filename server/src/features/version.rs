//! XEP-0092: Software Version. The server names itself and its version; the OS is left out (section 4, privacy).

use super::iq::{IqAnswer, IqError, IqRequest};
use crate::xmpp::ns;
use crate::xmpp::{DefinedCondition, Element};

pub fn handle(request: &IqRequest<'_>) -> IqAnswer {
    if request.is_set {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    Ok(Some(
        Element::builder("query", ns::VERSION)
            .append(
                Element::builder("name", ns::VERSION)
                    .append("Herald")
                    .build(),
            )
            .append(
                Element::builder("version", ns::VERSION)
                    .append(env!("CARGO_PKG_VERSION"))
                    .build(),
            )
            .build(),
    ))
}
