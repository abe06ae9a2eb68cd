//! Contract: deleting a local XMPP account also deletes its push relay account (id = the bare JID)
//! with its API keys, devices, whitelist tokens, messages, pending deliveries and audit trail, so
//! whoever registers the same JID next starts with nothing of the previous owner's.

use crate::Storage;
use crate::relay::{
    AuditEntry, DeliveryTarget, Device, DeviceKind, NewDelivery, PushMessage, RelayAccount,
    WhitelistToken,
};

use super::credentials;

/// What [`seed`] created for one account, to check afterwards.
struct Seeded {
    api_key_hash: String,
    device_id: String,
    token_id: String,
    token_hash: String,
    message_id: String,
}

/// A local account `jid` with a relay account, an API key, a device, a token, a pending push and
/// an audit line.
async fn seed(storage: &Storage, jid: &str, seed: u8) -> Seeded {
    storage
        .accounts
        .create(jid, &credentials(seed))
        .await
        .expect("create");
    storage
        .relay_accounts
        .create(&RelayAccount {
            id: jid.to_string(),
            username: jid.to_string(),
            email: None,
            password_hash: None,
            is_local: true,
            created_at_ms: 1,
        })
        .await
        .expect("relay account");
    let seeded = Seeded {
        api_key_hash: format!("key-{jid}"),
        device_id: format!("device-{jid}"),
        token_id: format!("token-{jid}"),
        token_hash: format!("token-hash-{jid}"),
        message_id: format!("message-{jid}"),
    };
    storage
        .relay_accounts
        .add_api_key(jid, &seeded.api_key_hash, 1, 10)
        .await
        .expect("api key");
    storage
        .relay_devices
        .create(&Device {
            id: seeded.device_id.clone(),
            account_id: jid.to_string(),
            kind: DeviceKind::Fcm,
            name: "phone".into(),
            device_id: String::new(),
            active: true,
            token: format!("fcm-{jid}"),
            apns_topic: None,
            apns_sandbox: false,
            webpush_p256dh: None,
            webpush_auth: None,
            created_at_ms: 1,
        })
        .await
        .expect("device");
    storage
        .whitelist_tokens
        .create(&WhitelistToken {
            id: seeded.token_id.clone(),
            token_hash: seeded.token_hash.clone(),
            account_id: jid.to_string(),
            name: None,
            device_ids: vec![],
            sender: None,
            rate_per_minute: None,
            created_at_ms: 1,
            expires_at_ms: None,
            revoked_at_ms: None,
        })
        .await
        .expect("token");
    let message = PushMessage {
        id: seeded.message_id.clone(),
        account_id: Some(jid.to_string()),
        token_id: Some(seeded.token_id.clone()),
        sender: None,
        priority: "high".into(),
        created_at_ms: 1,
    };
    let delivery = NewDelivery {
        target: DeliveryTarget::Device(seeded.device_id.clone()),
        collapse_key: format!("device:{}", seeded.device_id),
        priority: "high".into(),
        data: None,
    };
    storage
        .push_outbox
        .enqueue(&message, &[delivery], 0, 1)
        .await
        .expect("enqueue");
    storage
        .push_audit
        .record(&AuditEntry {
            id: 0,
            account_id: jid.to_string(),
            at_ms: 1,
            token_id: Some(seeded.token_id.clone()),
            sender: None,
            message_id: Some(seeded.message_id.clone()),
            outcome: "accepted".into(),
        })
        .await
        .expect("audit");
    seeded
}

/// Deleting an account takes its relay data with it, and nothing of anyone else's; an account
/// registered again under the same JID starts empty.
pub async fn account_delete_takes_relay_data(storage: &Storage) {
    let gone = "gone@relay-removal.example";
    let stay = "stay@relay-removal.example";
    let old = seed(storage, gone, 1).await;
    let kept = seed(storage, stay, 2).await;

    assert!(storage.accounts.delete(gone).await.expect("delete"));

    assert_eq!(
        storage.relay_accounts.by_id(gone).await.expect("by id"),
        None,
        "the relay account outlived the XMPP account"
    );
    assert_eq!(
        storage
            .relay_accounts
            .by_api_key(&old.api_key_hash)
            .await
            .expect("by key"),
        None,
        "the old API key still authenticates"
    );
    assert_eq!(
        storage
            .relay_devices
            .get(&old.device_id)
            .await
            .expect("device"),
        None
    );
    assert_eq!(
        storage
            .whitelist_tokens
            .by_hash(&old.token_hash)
            .await
            .expect("token"),
        None
    );
    assert_eq!(
        storage
            .push_outbox
            .message(&old.message_id)
            .await
            .expect("message"),
        None
    );
    // `fail_device` counts the device's pending deliveries: none may be left to send.
    assert_eq!(
        storage
            .push_outbox
            .fail_device(&old.device_id, "probe", 2)
            .await
            .expect("pending"),
        0,
        "a pending push for the deleted account's device is left in the outbox"
    );
    assert!(
        storage
            .push_audit
            .list(gone, None, 10)
            .await
            .expect("audit")
            .is_empty()
    );

    // The same JID registered again starts empty.
    storage
        .accounts
        .create(gone, &credentials(3))
        .await
        .expect("create again");
    storage
        .relay_accounts
        .create(&RelayAccount {
            id: gone.to_string(),
            username: gone.to_string(),
            email: None,
            password_hash: None,
            is_local: true,
            created_at_ms: 2,
        })
        .await
        .expect("relay account again");
    assert!(
        storage
            .relay_devices
            .list(gone, None)
            .await
            .expect("devices")
            .is_empty()
    );
    assert!(
        storage
            .whitelist_tokens
            .list(gone)
            .await
            .expect("tokens")
            .is_empty()
    );

    // The other account keeps everything.
    assert!(
        storage
            .relay_accounts
            .by_api_key(&kept.api_key_hash)
            .await
            .expect("by key")
            .is_some()
    );
    assert!(
        storage
            .relay_devices
            .get(&kept.device_id)
            .await
            .expect("device")
            .is_some()
    );
    assert!(
        storage
            .whitelist_tokens
            .get(&kept.token_id)
            .await
            .expect("token")
            .is_some()
    );
    assert!(
        storage
            .push_outbox
            .message(&kept.message_id)
            .await
            .expect("message")
            .is_some()
    );
    assert_eq!(
        storage
            .push_audit
            .list(stay, None, 10)
            .await
            .expect("audit")
            .len(),
        1
    );
}
