//! A test client's XEP-0115 entity capabilities: the disco#info it answers with (a client identity
//! and `node+notify` features, XEP-0163 section 4) and the announcement in presence, with the
//! answer to the server's one disco#info query for a verification string it does not know yet.

use herald::features::entity_caps::verification_string;
use herald::xmpp::ns;

use crate::client::TestClient;
use crate::server::TestServer;
use crate::{Element, eventually};

/// The caps node test clients announce.
pub const CAPS_NODE: &str = "https://herald.example/tests";

/// The disco#info a test client answers with: a client identity and `node+notify` for `notify`.
pub fn disco_info(notify: &[&str]) -> String {
    let mut features = String::from(
        "<feature var='http://jabber.org/protocol/caps'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>",
    );
    for node in notify {
        features.push_str(&format!("<feature var='{node}+notify'/>"));
    }
    format!("<identity category='client' type='pc' name='herald-tests'/>{features}")
}

/// The XEP-0115 verification string of [`disco_info`] for `notify`.
pub fn ver_of(notify: &[&str]) -> String {
    let query: Element = format!(
        "<query xmlns='{}'>{}</query>",
        ns::DISCO_INFO,
        disco_info(notify)
    )
    .parse()
    .unwrap();
    verification_string(&query).unwrap()
}

/// Sends available presence with caps asking for `notify` and, unless the server knows the
/// verification string already, answers its disco#info query; returns once the server holds them.
pub async fn announce_caps(server: &TestServer, client: &mut TestClient, notify: &[&str]) {
    let ver = ver_of(notify);
    let caps = &server.router().context.caps;
    let known = caps.is_verified(&ver);
    client
        .send(&format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>"
        ))
        .await;
    if !known {
        let query_node = format!("{CAPS_NODE}#{ver}");
        let query = client
            .expect("the server's disco#info query", |e| {
                e.is("iq", ns::CLIENT)
                    && e.attr("type") == Some("get")
                    && e.attr("from") == Some("localhost")
                    && e.get_child("query", ns::DISCO_INFO)
                        .is_some_and(|q| q.attr("node") == Some(query_node.as_str()))
            })
            .await;
        let id = query.attr("id").unwrap();
        client
            .send(&format!(
                "<iq type='result' id='{id}' to='localhost'>\
                 <query xmlns='{}' node='{query_node}'>{}</query></iq>",
                ns::DISCO_INFO,
                disco_info(notify)
            ))
            .await;
    }
    let full = client.jid.clone();
    eventually("caps verified", async || caps.of(&full).is_some()).await;
}
