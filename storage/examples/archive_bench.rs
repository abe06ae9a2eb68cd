//! Archive benchmark (XEP-0313 storage): fills one owner's archive with a million messages over 50
//! contacts, with a second owner's messages interleaved so that every index has neighbours, then
//! reports the latency of page queries (first, middle and last page of 50, with and without a
//! contact), of a time-range page, of the metadata and of an append, on the database `--db` names.
//!
//! ```sh
//! cargo run --release -p herald-storage --example archive_bench -- --db sqlite:///tmp/archive-bench.db
//! cargo run --release -p herald-storage --example archive_bench -- --db postgres://postgres@127.0.0.1/test
//! ```
//!
//! A SQLite file must not exist yet (the benchmark fills it from empty; it is left behind for a look
//! with `sqlite3`). A PostgreSQL URL names the server: the benchmark creates a scratch database there
//! (the role needs CREATEDB), runs `ANALYZE` after the fill as autovacuum would, and drops it at the
//! end. Options: `--messages N` (1,000,000), `--neighbour-messages N` (250,000), `--contacts N` (50),
//! `--iterations N` per query (300), `--batch N` messages per fill transaction (10,000).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use herald_storage::testing::ScratchDatabase;
use herald_storage::{
    ArchiveAppend, ArchivePage, ArchivePaging, ArchiveQuery, Direction, Storage, StorageError,
    new_stanza_id,
};

const OWNER: &str = "alice@bench.example";
const NEIGHBOUR: &str = "bob@bench.example";
/// The page size a client asks for (Conversations and Monal ask for 20 to 50).
const PAGE: usize = 50;
/// The first message's timestamp (2020-09-13); one message a second after it.
const FIRST_MS: i64 = 1_600_000_000_000;
/// Consecutive messages of the owner with the same contact: conversations come in bursts.
const BURST: usize = 20;

struct Options {
    db: String,
    messages: usize,
    neighbour_messages: usize,
    contacts: usize,
    iterations: usize,
    batch: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: String::new(),
        messages: 1_000_000,
        neighbour_messages: 250_000,
        contacts: 50,
        iterations: 300,
        batch: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--db" => options.db = value.clone(),
            "--messages" => options.messages = number()?,
            "--neighbour-messages" => options.neighbour_messages = number()?,
            "--contacts" => options.contacts = number()?.max(1),
            "--iterations" => options.iterations = number()?.max(1),
            "--batch" => options.batch = number()?.max(1),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.db.is_empty() {
        return Err(
            "--db sqlite:///path/new.db or --db postgres://user@host/db is required".into(),
        );
    }
    Ok(options)
}

fn contact(n: usize, contacts: usize) -> String {
    format!("contact{}@peer.example", (n / BURST) % contacts)
}

fn stanza(owner: &str, peer: &str, n: usize, outgoing: bool) -> String {
    let (from, to) = if outgoing {
        (owner, peer)
    } else {
        (peer, owner)
    };
    format!(
        "<message xmlns='jabber:client' from='{from}/phone' to='{to}' type='chat' id='m{n}'>\
         <body>Message number {n}: are we still on for tonight? Bring the charger please.</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/>\
         <request xmlns='urn:xmpp:receipts'/></message>"
    )
}

/// The ids the measured queries start from.
#[derive(Default)]
struct Cursors {
    /// The owner's message in the middle of the archive.
    middle: String,
    middle_ms: i64,
    /// The middle message with contact 0.
    contact_middle: String,
}

async fn fill(storage: &Storage, options: &Options) -> Result<Cursors, StorageError> {
    let total = options.messages + options.neighbour_messages;
    // Every k-th message is the neighbour's, spread evenly through the owner's.
    let every = total
        .checked_div(options.neighbour_messages)
        .unwrap_or(usize::MAX);
    let first_contact = contact(0, options.contacts);
    let contact_total = (0..options.messages)
        .filter(|&n| contact(n, options.contacts) == first_contact)
        .count();
    let mut cursors = Cursors::default();
    let (mut owned, mut neighbours, mut contact_seen) = (0_usize, 0_usize, 0_usize);
    let started = Instant::now();
    let mut step = 0_usize;
    while owned + neighbours < total {
        let mut batch = Vec::with_capacity(options.batch);
        while batch.len() < options.batch && owned + neighbours < total {
            step += 1;
            let neighbours_turn = (step.is_multiple_of(every)
                && neighbours < options.neighbour_messages)
                || owned == options.messages;
            let at_ms = FIRST_MS + i64::try_from(step).unwrap_or(i64::MAX) * 1_000;
            let outgoing = step.is_multiple_of(3);
            let (owner, peer, n) = if neighbours_turn {
                neighbours += 1;
                (NEIGHBOUR, contact(neighbours, options.contacts), neighbours)
            } else {
                owned += 1;
                (OWNER, contact(owned - 1, options.contacts), owned - 1)
            };
            let text = stanza(owner, &peer, n, outgoing);
            batch.push((owner, peer, at_ms, outgoing, text, n));
        }
        let ids: Vec<String> = batch.iter().map(|_| new_stanza_id()).collect();
        let appends: Vec<ArchiveAppend<'_>> = batch
            .iter()
            .zip(&ids)
            .map(
                |((owner, peer, at_ms, outgoing, text, _), id)| ArchiveAppend {
                    owner,
                    id,
                    contact: peer,
                    at_ms: *at_ms,
                    direction: if *outgoing {
                        Direction::Outgoing
                    } else {
                        Direction::Incoming
                    },
                    stanza: text,
                },
            )
            .collect();
        let marks = storage.archive.append_all(&appends).await?;
        for ((owner, peer, _, _, _, n), mark) in batch.iter().zip(marks) {
            if *owner != OWNER {
                continue;
            }
            if *n == options.messages / 2 {
                cursors.middle = mark.id.clone();
                cursors.middle_ms = mark.at_ms;
            }
            if *peer == first_contact {
                if contact_seen == contact_total / 2 {
                    cursors.contact_middle = mark.id.clone();
                }
                contact_seen += 1;
            }
        }
        let done = owned + neighbours;
        if done % 100_000 < options.batch || done == total {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("filled {done}/{total} ({rate:.0} messages/s)");
        }
    }
    eprintln!("fill took {:.1} s", started.elapsed().as_secs_f64());
    Ok(cursors)
}

/// Latencies of `iterations` runs of one query (after a few unmeasured ones), and its last page.
async fn measure(
    storage: &Storage,
    query: &ArchiveQuery,
    iterations: usize,
) -> Result<(Vec<Duration>, ArchivePage), StorageError> {
    for _ in 0..10 {
        storage.archive.query(OWNER, query).await?;
    }
    let mut latencies = Vec::with_capacity(iterations);
    let mut last = None;
    for _ in 0..iterations {
        let started = Instant::now();
        let page = storage.archive.query(OWNER, query).await?;
        latencies.push(started.elapsed());
        last = Some(page);
    }
    let page = last.unwrap_or(ArchivePage {
        messages: vec![],
        complete: true,
    });
    Ok((latencies, page))
}

/// The nearest-rank percentile `p` (0-100) of sorted `latencies`, in ms.
fn percentile(latencies: &[Duration], p: usize) -> f64 {
    let rank = (latencies.len() * p).div_ceil(100).max(1);
    latencies[rank.min(latencies.len()) - 1].as_secs_f64() * 1_000.0
}

fn row(name: &str, latencies: &mut [Duration], note: &str) {
    latencies.sort_unstable();
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {note} |",
        percentile(latencies, 50),
        percentile(latencies, 99),
        percentile(latencies, 100),
    );
}

/// Fills, analyses (PostgreSQL: `analyze_url`), measures and prints the table.
async fn run(
    storage: &Storage,
    options: &Options,
    analyze_url: Option<&str>,
) -> Result<(), StorageError> {
    let cursors = fill(storage, options).await?;
    if let Some(url) = analyze_url {
        let started = Instant::now();
        analyze(url).await?;
        eprintln!("ANALYZE took {:.1} s", started.elapsed().as_secs_f64());
    }
    let with = Some(contact(0, options.contacts));
    let page = |with: &Option<String>, paging: ArchivePaging| ArchiveQuery {
        with: with.clone(),
        paging,
        max: PAGE,
        ..ArchiveQuery::default()
    };
    let scenarios = [
        ("first page", page(&None, ArchivePaging::default())),
        (
            "middle page",
            page(
                &None,
                ArchivePaging::Forward {
                    after: Some(cursors.middle.clone()),
                },
            ),
        ),
        (
            "last page (empty `<before/>`)",
            page(&None, ArchivePaging::Backward { before: None }),
        ),
        (
            "first page, with contact",
            page(&with, ArchivePaging::default()),
        ),
        (
            "middle page, with contact",
            page(
                &with,
                ArchivePaging::Forward {
                    after: Some(cursors.contact_middle.clone()),
                },
            ),
        ),
        (
            "last page, with contact",
            page(&with, ArchivePaging::Backward { before: None }),
        ),
        (
            "page before the middle (RSM `<before>`)",
            page(
                &None,
                ArchivePaging::Backward {
                    before: Some(cursors.middle.clone()),
                },
            ),
        ),
        (
            "time range from the middle (`start`)",
            ArchiveQuery {
                start_ms: Some(cursors.middle_ms),
                ..page(&None, ArchivePaging::default())
            },
        ),
        (
            "time range, with contact (`start` and `end`)",
            ArchiveQuery {
                start_ms: Some(cursors.middle_ms),
                end_ms: Some(cursors.middle_ms + 86_400_000),
                ..page(&with, ArchivePaging::default())
            },
        ),
    ];
    println!(
        "\n{} messages for {OWNER} over {} contacts, {} for {NEIGHBOUR} interleaved; {} runs each, \
         pages of {PAGE}\n",
        options.messages, options.contacts, options.neighbour_messages, options.iterations
    );
    println!("| query | p50 ms | p99 ms | max ms | page |");
    println!("|---|---|---|---|---|");
    for (name, query) in &scenarios {
        let (mut latencies, page) = measure(storage, query, options.iterations).await?;
        let note = format!(
            "{} messages, complete={}",
            page.messages.len(),
            page.complete
        );
        row(name, &mut latencies, &note);
    }

    let mut latencies = Vec::with_capacity(options.iterations);
    for _ in 0..options.iterations {
        let started = Instant::now();
        storage.archive.metadata(OWNER).await?;
        latencies.push(started.elapsed());
    }
    row("metadata", &mut latencies, "first and last message");

    let mut latencies = Vec::with_capacity(options.iterations);
    let text = stanza(OWNER, "contact0@peer.example", 0, true);
    for n in 0..options.iterations {
        let id = new_stanza_id();
        let message = ArchiveAppend {
            owner: OWNER,
            id: &id,
            contact: "contact0@peer.example",
            at_ms: FIRST_MS + 10_000_000_000 + i64::try_from(n).unwrap_or(0),
            direction: Direction::Outgoing,
            stanza: &text,
        };
        let started = Instant::now();
        storage.archive.append(&message).await?;
        latencies.push(started.elapsed());
    }
    row("append (one message)", &mut latencies, "autocommit");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("archive_bench: {problem}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = if options.db.starts_with("sqlite:") {
        let path = options
            .db
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        if std::path::Path::new(path).exists() {
            eprintln!("archive_bench: {path} exists; the benchmark fills a new database");
            return ExitCode::FAILURE;
        }
        match Storage::connect(&options.db).await {
            Ok(storage) => run(&storage, &options, None).await,
            Err(e) => Err(e),
        }
    } else {
        run_on_postgres(&options).await
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("archive_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_on_postgres(options: &Options) -> Result<(), StorageError> {
    let scratch = ScratchDatabase::create(&options.db, "herald_archive_bench").await?;
    eprintln!("scratch database {}", scratch.name());
    let outcome = async {
        let storage = Storage::connect(&scratch.url).await?;
        run(&storage, options, Some(&scratch.url)).await
    }
    .await;
    scratch.drop_database().await?;
    outcome
}

/// `ANALYZE` on the archive table, as autovacuum does after a fill this size.
async fn analyze(url: &str) -> Result<(), StorageError> {
    use sqlx::Connection;
    let database = |e: sqlx::Error| StorageError::Database(e.to_string());
    let mut connection = sqlx::PgConnection::connect(url).await.map_err(database)?;
    sqlx::query("ANALYZE archive_messages")
        .execute(&mut connection)
        .await
        .map_err(database)?;
    connection.close().await.map_err(database)
}
