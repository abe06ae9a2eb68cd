//! Contract: message archives (XEP-0313 with `#extended`, XEP-0059 paging, XEP-0359 ids) and archiving
//! preferences (XEP-0441), as far as storage is concerned.

use tokio::task::JoinSet;

use crate::{
    ARCHIVE_MAX_IDS, ARCHIVE_MAX_PAGE, ArchiveAppend, ArchiveDefault, ArchiveMark, ArchivePage,
    ArchivePaging, ArchivePrefs, ArchiveQuery, ArchivedMessage, Direction, Storage, StorageError,
};

use super::credentials;

/// A fresh stanza id that lives as long as the test (`ArchiveAppend` borrows its id): a few hundred
/// bytes leaked per test run.
fn fresh_id() -> &'static str {
    Box::leak(crate::new_stanza_id().into_boxed_str())
}

const ALICE: &str = "alice@archive.example";
const BOB: &str = "bob@archive.example";
const ROMEO: &str = "romeo@montague.example";
const NURSE: &str = "nurse@capulet.example";

/// What was appended, to compare pages with.
struct Appended {
    mark: ArchiveMark,
    contact: &'static str,
    stanza: String,
}

/// Appends `count` messages for `owner`, alternating between ROMEO (even) and NURSE (odd), stamped
/// `first_ms`, `first_ms + 10`, ...; returns them in order.
async fn fill(storage: &Storage, owner: &str, count: usize, first_ms: i64) -> Vec<Appended> {
    let mut out = Vec::with_capacity(count);
    for (n, at_ms) in (0..count).zip((first_ms..).step_by(10)) {
        let contact = if n % 2 == 0 { ROMEO } else { NURSE };
        let stanza = format!("<message id='{owner}-{n}'><body>{n} ü</body></message>");
        let direction = if n % 3 == 0 {
            Direction::Outgoing
        } else {
            Direction::Incoming
        };
        let mark = storage
            .archive
            .append(&ArchiveAppend {
                owner,
                id: fresh_id(),
                contact,
                at_ms,
                direction,
                stanza: &stanza,
            })
            .await
            .expect("append");
        assert_eq!(mark.at_ms, at_ms);
        out.push(Appended {
            mark,
            contact,
            stanza,
        });
    }
    out
}

fn ids(page: &ArchivePage) -> Vec<&str> {
    page.messages.iter().map(|m| m.id.as_str()).collect()
}

fn marks<'a>(appended: impl IntoIterator<Item = &'a Appended>) -> Vec<&'a str> {
    appended.into_iter().map(|a| a.mark.id.as_str()).collect()
}

async fn query(storage: &Storage, owner: &str, query: ArchiveQuery) -> ArchivePage {
    storage.archive.query(owner, &query).await.expect("query")
}

fn forward(after: Option<&str>, max: usize) -> ArchiveQuery {
    ArchiveQuery {
        paging: ArchivePaging::Forward {
            after: after.map(str::to_string),
        },
        max,
        ..ArchiveQuery::default()
    }
}

fn backward(before: Option<&str>, max: usize) -> ArchiveQuery {
    ArchiveQuery {
        paging: ArchivePaging::Backward {
            before: before.map(str::to_string),
        },
        max,
        ..ArchiveQuery::default()
    }
}

/// Appending, fetching by id, paging both ways, the filters, unknown ids, and two owners apart.
pub async fn archive_queries(storage: &Storage) {
    let archive = &storage.archive;

    // An empty archive: nothing, and complete.
    let empty = query(storage, ALICE, forward(None, 10)).await;
    assert_eq!(empty.messages, vec![]);
    assert!(empty.complete);
    let empty = query(storage, ALICE, backward(None, 10)).await;
    assert!(empty.messages.is_empty() && empty.complete);
    assert_eq!(archive.metadata(ALICE).await.expect("metadata"), None);
    assert_eq!(archive.message(ALICE, "nope").await.expect("message"), None);

    // Bob's messages come between Alice's in row order: neighbours in every index.
    let mut all = Vec::new();
    let mut bobs = Vec::new();
    for round in 0..4 {
        let at = 1_000 + round * 1_000;
        all.extend(fill(storage, ALICE, 3, at).await);
        bobs.extend(fill(storage, BOB, 2, at + 5).await);
    }
    assert_eq!(all.len(), 12);
    let mut unique = marks(&all);
    unique.extend(marks(&bobs));
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 20, "stanza ids are unique");

    // By id, with everything that was appended.
    let third = archive
        .message(ALICE, &all[3].mark.id)
        .await
        .expect("message")
        .expect("found");
    assert_eq!(
        third,
        ArchivedMessage {
            id: all[3].mark.id.clone(),
            contact: all[3].contact.to_string(),
            at_ms: all[3].mark.at_ms,
            direction: Direction::Outgoing,
            stanza: all[3].stanza.clone(),
        }
    );
    assert_eq!(
        archive
            .message(ALICE, &all[4].mark.id)
            .await
            .expect("m")
            .map(|m| m.direction),
        Some(Direction::Incoming)
    );
    assert_eq!(
        archive
            .message(BOB, &all[3].mark.id)
            .await
            .expect("message"),
        None,
        "another owner's id is not in Bob's archive"
    );

    // Forward across page boundaries: 5 + 5 + 2, complete only at the end.
    let page = query(storage, ALICE, forward(None, 5)).await;
    assert_eq!(ids(&page), marks(&all[..5]));
    assert!(!page.complete);
    assert_eq!(page.first_id(), Some(all[0].mark.id.as_str()));
    assert_eq!(page.last_id(), Some(all[4].mark.id.as_str()));
    let page = query(storage, ALICE, forward(page.last_id(), 5)).await;
    assert_eq!(ids(&page), marks(&all[5..10]));
    assert!(!page.complete);
    let page = query(storage, ALICE, forward(page.last_id(), 5)).await;
    assert_eq!(ids(&page), marks(&all[10..]));
    assert!(page.complete);
    let page = query(storage, ALICE, forward(page.last_id(), 5)).await;
    assert!(page.messages.is_empty() && page.complete);
    // Exactly a page left: complete, since nothing lies beyond it.
    let page = query(storage, ALICE, forward(Some(&all[6].mark.id), 5)).await;
    assert_eq!(ids(&page), marks(&all[7..]));
    assert!(page.complete);

    // Backward from the end (an empty <before/>): the last page, still oldest first.
    let page = query(storage, ALICE, backward(None, 5)).await;
    assert_eq!(ids(&page), marks(&all[7..]));
    assert!(!page.complete);
    let page = query(storage, ALICE, backward(page.first_id(), 5)).await;
    assert_eq!(ids(&page), marks(&all[2..7]));
    assert!(!page.complete);
    let page = query(storage, ALICE, backward(page.first_id(), 5)).await;
    assert_eq!(ids(&page), marks(&all[..2]));
    assert!(page.complete);

    // By contact, both ways.
    let romeo: Vec<&Appended> = all.iter().filter(|a| a.contact == ROMEO).collect();
    let with_romeo = |paging| ArchiveQuery {
        with: Some(ROMEO.to_string()),
        paging,
        max: 4,
        ..ArchiveQuery::default()
    };
    let page = query(storage, ALICE, with_romeo(ArchivePaging::default())).await;
    assert_eq!(ids(&page), marks(romeo[..4].iter().copied()));
    assert!(!page.complete);
    let after = page.last_id().map(str::to_string);
    let page = query(storage, ALICE, with_romeo(ArchivePaging::Forward { after })).await;
    assert_eq!(ids(&page), marks(romeo[4..].iter().copied()));
    assert!(page.complete);
    let page = query(
        storage,
        ALICE,
        with_romeo(ArchivePaging::Backward { before: None }),
    )
    .await;
    assert_eq!(ids(&page), marks(romeo[4..].iter().copied()));
    assert!(page.messages.iter().all(|m| m.contact == ROMEO));
    let nobody = ArchiveQuery {
        with: Some("nobody@archive.example".into()),
        max: 10,
        ..ArchiveQuery::default()
    };
    let page = query(storage, ALICE, nobody).await;
    assert!(page.messages.is_empty() && page.complete);

    // By time: both ends inclusive (XEP-0313 section 4.1.2).
    let between = |start_ms, end_ms| ArchiveQuery {
        start_ms,
        end_ms,
        max: 50,
        ..ArchiveQuery::default()
    };
    let window = |lo: i64, hi: i64| -> Vec<&str> {
        all.iter()
            .filter(|a| (lo..=hi).contains(&a.mark.at_ms))
            .map(|a| a.mark.id.as_str())
            .collect()
    };
    let page = query(storage, ALICE, between(Some(2_010), Some(3_000))).await;
    assert_eq!(ids(&page), window(2_010, 3_000));
    assert_eq!(page.messages.len(), 3, "2010, 2020, 3000");
    let page = query(storage, ALICE, between(Some(3_015), None)).await;
    assert_eq!(ids(&page), window(3_015, i64::MAX));
    let page = query(storage, ALICE, between(None, Some(1_999))).await;
    assert_eq!(ids(&page), window(0, 1_999));
    let page = query(storage, ALICE, between(Some(9_000), None)).await;
    assert!(
        page.messages.is_empty() && page.complete,
        "after the newest"
    );
    let page = query(storage, ALICE, between(None, Some(999))).await;
    assert!(page.messages.is_empty(), "before the oldest");
    let page = query(storage, ALICE, between(Some(3_000), Some(2_000))).await;
    assert!(page.messages.is_empty(), "an empty window");
    // Time, contact and paging together.
    let combined = ArchiveQuery {
        with: Some(NURSE.into()),
        start_ms: Some(1_000),
        end_ms: Some(4_010),
        paging: ArchivePaging::Backward { before: None },
        max: 2,
        ..ArchiveQuery::default()
    };
    let expected: Vec<&str> = all
        .iter()
        .filter(|a| a.contact == NURSE && (1_000..=4_010).contains(&a.mark.at_ms))
        .map(|a| a.mark.id.as_str())
        .collect();
    assert_eq!(expected.len(), 4);
    let page = query(storage, ALICE, combined.clone()).await;
    assert_eq!(ids(&page), expected[2..]);
    assert!(!page.complete);
    let page = query(
        storage,
        ALICE,
        ArchiveQuery {
            paging: ArchivePaging::Backward {
                before: page.first_id().map(str::to_string),
            },
            ..combined
        },
    )
    .await;
    assert_eq!(ids(&page), expected[..2]);
    assert!(page.complete);

    // before-id / after-id (#extended, XEP-0313 section 4.1.3): exclusive, combinable with RSM.
    let page = query(
        storage,
        ALICE,
        ArchiveQuery {
            after_id: Some(all[2].mark.id.clone()),
            before_id: Some(all[8].mark.id.clone()),
            max: 50,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert_eq!(ids(&page), marks(&all[3..8]));
    assert!(page.complete);
    let page = query(
        storage,
        ALICE,
        ArchiveQuery {
            before_id: Some(all[8].mark.id.clone()),
            paging: ArchivePaging::Backward { before: None },
            max: 3,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert_eq!(ids(&page), marks(&all[5..8]), "last page before before-id");
    let page = query(
        storage,
        ALICE,
        ArchiveQuery {
            after_id: Some(all[2].mark.id.clone()),
            paging: ArchivePaging::Forward {
                after: Some(all[5].mark.id.clone()),
            },
            max: 2,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert_eq!(ids(&page), marks(&all[6..8]), "the tighter bound wins");

    // ids: just those, in archive order, paged like any other query.
    let wanted = vec![
        all[9].mark.id.clone(),
        all[1].mark.id.clone(),
        all[4].mark.id.clone(),
    ];
    let by_ids = |max| ArchiveQuery {
        ids: Some(wanted.clone()),
        max,
        ..ArchiveQuery::default()
    };
    let page = query(storage, ALICE, by_ids(10)).await;
    assert_eq!(ids(&page), marks([&all[1], &all[4], &all[9]]));
    assert!(page.complete);
    let page = query(storage, ALICE, by_ids(2)).await;
    assert_eq!(ids(&page), marks([&all[1], &all[4]]));
    assert!(!page.complete);
    let page = query(
        storage,
        ALICE,
        ArchiveQuery {
            ids: Some(vec![]),
            max: 10,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert!(page.messages.is_empty() && page.complete);

    // max 0: no messages, but whether any matched.
    let page = query(storage, ALICE, forward(None, 0)).await;
    assert!(page.messages.is_empty() && !page.complete);

    // Unknown ids, wherever they are named, and other owners' ids, are item-not-found.
    let bobs_id = bobs[0].mark.id.clone();
    let unknown = [
        forward(Some("no-such-id"), 5),
        backward(Some(&bobs_id), 5),
        ArchiveQuery {
            after_id: Some("no-such-id".into()),
            ..ArchiveQuery::default()
        },
        ArchiveQuery {
            before_id: Some(bobs_id.clone()),
            ..ArchiveQuery::default()
        },
        ArchiveQuery {
            ids: Some(vec![all[0].mark.id.clone(), "no-such-id".into()]),
            ..ArchiveQuery::default()
        },
    ];
    for bad in unknown {
        let outcome = archive.query(ALICE, &bad).await;
        assert!(
            matches!(&outcome, Err(StorageError::UnknownArchiveId(id)) if id == "no-such-id" || *id == bobs_id),
            "{bad:?}: {outcome:?}"
        );
    }
    let too_many = ArchiveQuery {
        ids: Some((0..=ARCHIVE_MAX_IDS).map(|n| format!("id-{n}")).collect()),
        ..ArchiveQuery::default()
    };
    let outcome = archive.query(ALICE, &too_many).await;
    assert!(
        matches!(outcome, Err(StorageError::OverLimit(_))),
        "{outcome:?}"
    );

    // Bob sees only his own messages, whichever way he asks.
    let page = query(storage, BOB, forward(None, 50)).await;
    assert_eq!(ids(&page), marks(&bobs));
    let page = query(
        storage,
        BOB,
        ArchiveQuery {
            with: Some(ROMEO.into()),
            start_ms: Some(0),
            max: 50,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert_eq!(
        ids(&page),
        marks(bobs.iter().filter(|b| b.contact == ROMEO))
    );

    // Metadata: the archive's ends (XEP-0313 section 5).
    let metadata = archive
        .metadata(ALICE)
        .await
        .expect("metadata")
        .expect("some");
    assert_eq!(metadata.start, all[0].mark);
    assert_eq!(metadata.end, all[11].mark);
}

/// An owner's timestamps never go back, pages are capped at [`ARCHIVE_MAX_PAGE`], a batch append is
/// in order, and a one-message archive's metadata has the same message at both ends.
pub async fn archive_order_and_limits(storage: &Storage) {
    let owner = "carol@archive.example";
    let append = |at_ms| ArchiveAppend {
        owner,
        id: fresh_id(),
        contact: ROMEO,
        at_ms,
        direction: Direction::Incoming,
        stanza: "<message/>",
    };
    let first_append = append(5_000);
    let first = storage.archive.append(&first_append).await.expect("append");
    assert_eq!(first.id, first_append.id, "archived under the caller's id");
    // An id is unique within an owner's archive: the second append under it fails, nothing is added.
    let reused = storage
        .archive
        .append(&ArchiveAppend {
            at_ms: 5_000,
            ..first_append
        })
        .await;
    assert!(reused.is_err(), "an id used twice: {reused:?}");
    let metadata = storage
        .archive
        .metadata(owner)
        .await
        .expect("metadata")
        .expect("some");
    assert_eq!((&metadata.start, &metadata.end), (&first, &first));
    // A clock that stepped back: the message is stamped with the newest time instead.
    let stepped_back = storage
        .archive
        .append(&append(4_000))
        .await
        .expect("append");
    assert_eq!(stepped_back.at_ms, 5_000);
    let later = storage
        .archive
        .append(&append(6_000))
        .await
        .expect("append");
    assert_eq!(later.at_ms, 6_000);
    // Another owner's clock is its own.
    let other = storage
        .archive
        .append(&ArchiveAppend {
            owner: "dave@archive.example",
            ..append(10)
        })
        .await
        .expect("append");
    assert_eq!(other.at_ms, 10);

    // A batch: in order per owner, interleaved owners, marks in the order given.
    let batch: Vec<ArchiveAppend<'_>> = (0..2 * ARCHIVE_MAX_PAGE as i64)
        .map(|n| ArchiveAppend {
            owner: if n % 5 == 0 {
                "dave@archive.example"
            } else {
                owner
            },
            ..append(7_000 + n)
        })
        .collect();
    let batch_marks = storage
        .archive
        .append_all(&batch)
        .await
        .expect("append all");
    assert_eq!(batch_marks.len(), batch.len());
    for (mark, message) in batch_marks.iter().zip(&batch) {
        assert_eq!(mark.at_ms, message.at_ms);
    }
    // Within a batch too an owner's time never goes back: not behind its newest stored message,
    // nor behind an earlier message of the batch; each owner on its own.
    let erin = "erin@archive.example";
    let frank = "frank@archive.example";
    let stored = storage
        .archive
        .append(&ArchiveAppend {
            owner: erin,
            ..append(9_000)
        })
        .await
        .expect("append");
    let stepping: Vec<ArchiveAppend<'_>> = [
        (erin, 8_000),
        (erin, 9_500),
        (frank, 100),
        (erin, 9_200),
        (frank, 50),
    ]
    .into_iter()
    .map(|(owner, at_ms)| ArchiveAppend {
        owner,
        ..append(at_ms)
    })
    .collect();
    let stepping_marks = storage
        .archive
        .append_all(&stepping)
        .await
        .expect("append all");
    let times: Vec<i64> = stepping_marks.iter().map(|m| m.at_ms).collect();
    assert_eq!(times, [9_000, 9_500, 100, 9_500, 100]);
    for (mark, message) in stepping_marks.iter().zip(&stepping) {
        assert_eq!(mark.id, message.id, "marks in the order given");
    }
    let page = query(storage, erin, forward(None, 10)).await;
    assert_eq!(
        ids(&page),
        [
            &stored.id,
            &stepping[0].id.to_string(),
            &stepping[1].id.to_string(),
            &stepping[3].id.to_string()
        ]
    );
    let times: Vec<i64> = page.messages.iter().map(|m| m.at_ms).collect();
    assert_eq!(times, [9_000, 9_000, 9_500, 9_500]);

    let carols: Vec<&str> = batch_marks
        .iter()
        .zip(&batch)
        .filter(|(_, m)| m.owner == owner)
        .map(|(mark, _)| mark.id.as_str())
        .collect();

    let page = query(storage, owner, forward(Some(&later.id), usize::MAX)).await;
    assert_eq!(page.messages.len(), ARCHIVE_MAX_PAGE, "capped");
    assert!(!page.complete);
    assert_eq!(ids(&page), carols[..ARCHIVE_MAX_PAGE]);
    let page = query(storage, owner, forward(None, 3)).await;
    assert_eq!(ids(&page), [&first.id, &stepped_back.id, &later.id]);
    let times: Vec<i64> = page.messages.iter().map(|m| m.at_ms).collect();
    assert_eq!(times, [5_000, 5_000, 6_000]);
    // The stepped-back message is found by the time it was stamped with.
    let page = query(
        storage,
        owner,
        ArchiveQuery {
            end_ms: Some(5_000),
            max: 10,
            ..ArchiveQuery::default()
        },
    )
    .await;
    assert_eq!(ids(&page), [&first.id, &stepped_back.id]);
}

/// Concurrent appends for one owner: unique ids, all kept, row order and timestamps agree.
pub async fn concurrent_archive_appends(storage: &Storage) {
    const APPENDS: i64 = 24;
    let owner = "busy@archive.example";
    let mut tasks = JoinSet::new();
    for n in 0..APPENDS {
        let storage = storage.clone();
        tasks.spawn(async move {
            let stanza = format!("<message id='{n}'/>");
            storage
                .archive
                .append(&ArchiveAppend {
                    owner,
                    id: fresh_id(),
                    contact: ROMEO,
                    at_ms: 1_000 + n,
                    direction: Direction::Incoming,
                    stanza: &stanza,
                })
                .await
                .expect("append")
        });
    }
    let mut appended = tasks.join_all().await;
    let page = query(storage, owner, forward(None, 100)).await;
    assert_eq!(page.messages.len() as i64, APPENDS);
    assert!(
        page.messages.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "timestamps follow the archive order"
    );
    let mut listed = ids(&page);
    listed.sort_unstable();
    appended.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        listed,
        appended.iter().map(|m| m.id.as_str()).collect::<Vec<_>>()
    );
}

/// Preferences (XEP-0441 section 2.1): none until set, then replaced whole.
pub async fn archive_prefs(storage: &Storage) {
    let archive = &storage.archive;
    let owner = "erin@archive.example";
    assert_eq!(archive.prefs(owner).await.expect("prefs"), None);
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let empty = ArchivePrefs {
        default: ArchiveDefault::Roster,
        always: vec![],
        never: vec![],
    };
    assert!(
        !archive
            .owners_with_prefs()
            .await
            .expect("owners")
            .contains(&owner.to_string())
    );
    archive.set_prefs(owner, &empty).await.expect("set");
    assert_eq!(archive.prefs(owner).await.expect("prefs"), Some(empty));
    let owners = archive.owners_with_prefs().await.expect("owners");
    assert!(owners.contains(&owner.to_string()), "{owners:?}");
    assert!(!owners.contains(&"frank@archive.example".to_string()));

    let prefs = ArchivePrefs {
        default: ArchiveDefault::Always,
        always: strings(&[
            "romeo@montague.example",
            "a@x.example/res",
            "romeo@montague.example",
        ]),
        never: strings(&[
            "montague@montague.example",
            "Z@x.example",
            "a@x.example/res",
        ]),
    };
    archive.set_prefs(owner, &prefs).await.expect("set");
    assert_eq!(
        archive.prefs(owner).await.expect("prefs"),
        Some(ArchivePrefs {
            default: ArchiveDefault::Always,
            // Sorted, once each, and a JID on both lists only on `never`.
            always: strings(&["romeo@montague.example"]),
            never: strings(&[
                "Z@x.example",
                "a@x.example/res",
                "montague@montague.example"
            ]),
        })
    );
    let replaced = ArchivePrefs {
        default: ArchiveDefault::Never,
        always: strings(&["juliet@capulet.example"]),
        never: vec![],
    };
    archive.set_prefs(owner, &replaced).await.expect("replace");
    assert_eq!(archive.prefs(owner).await.expect("prefs"), Some(replaced));
    assert_eq!(
        archive.prefs("frank@archive.example").await.expect("prefs"),
        None,
        "other owners untouched"
    );
}

/// Retention: everything stamped before the cutoff goes, in batches, from every archive; the rest
/// stays, and new ids never repeat purged ones.
pub async fn archive_retention(storage: &Storage) {
    let archive = &storage.archive;
    let old = "old@retention.example";
    let other = "other@retention.example";
    // Before 1970, so that no other check's messages (which may share the storage) are purged.
    let olds = fill(storage, old, 23, -10_000).await; // -10_000 ..= -9_780
    fill(storage, other, 7, -9_950).await; // -9_950 ..= -9_890
    // Batches of 4: 13 of old's (-10_000..=-9_880) and all 7 of other's go, in 5 batches.
    let purged = archive.purge_older_than(-9_875, 4).await.expect("purge");
    assert_eq!(purged, 13 + 7);
    let page = query(storage, old, forward(None, 50)).await;
    assert_eq!(ids(&page), marks(&olds[13..]));
    let page = query(storage, other, forward(None, 50)).await;
    assert!(page.messages.is_empty());
    assert_eq!(
        archive
            .message(old, &olds[0].mark.id)
            .await
            .expect("message"),
        None
    );
    let outcome = archive
        .query(old, &forward(Some(&olds[0].mark.id), 5))
        .await;
    assert!(
        matches!(outcome, Err(StorageError::UnknownArchiveId(_))),
        "a purged id is unknown: {outcome:?}"
    );
    let metadata = archive
        .metadata(old)
        .await
        .expect("metadata")
        .expect("some");
    assert_eq!(metadata.start, olds[13].mark);
    assert_eq!(archive.metadata(other).await.expect("metadata"), None);
    assert_eq!(archive.purge_older_than(-9_875, 4).await.expect("again"), 0);
    // A batch size of zero still makes progress.
    assert_eq!(archive.purge_older_than(-9_869, 0).await.expect("purge"), 1);

    let newer = fill(storage, old, 1, 1_000).await;
    let page = query(storage, old, forward(None, 50)).await;
    assert_eq!(page.last_id(), Some(newer[0].mark.id.as_str()));
    assert_eq!(page.messages.len(), 23 - 14 + 1);
}

/// Deleting an account deletes its archive and preferences, and nobody else's.
pub async fn archive_deleted_with_account(storage: &Storage) {
    let gone = "gone@archive-cascade.example";
    let stay = "stay@archive-cascade.example";
    let prefs = ArchivePrefs {
        default: ArchiveDefault::Roster,
        always: vec![ROMEO.to_string()],
        never: vec![NURSE.to_string()],
    };
    for (seed, jid) in [(31, gone), (32, stay)] {
        storage
            .accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
        fill(storage, jid, 3, 1).await;
        storage.archive.set_prefs(jid, &prefs).await.expect("prefs");
    }
    assert!(storage.accounts.delete(gone).await.expect("delete"));
    assert_eq!(
        storage.archive.metadata(gone).await.expect("metadata"),
        None
    );
    assert!(
        query(storage, gone, forward(None, 10))
            .await
            .messages
            .is_empty()
    );
    assert_eq!(storage.archive.prefs(gone).await.expect("prefs"), None);

    assert_eq!(
        query(storage, stay, forward(None, 10)).await.messages.len(),
        3
    );
    assert_eq!(
        storage.archive.prefs(stay).await.expect("prefs"),
        Some(prefs)
    );
}
