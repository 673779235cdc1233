//! Two real Runtime processes on loopback, killed with SIGKILL mid-stream several times, the
//! producer and then the consumer (issue 10, item 12): afterwards the consumer's scoped event log
//! equals the producer's public partition exactly (same events, same order, no gap, no
//! duplicate), and a scoped event handler at the consumer has seen every event, again only
//! across a consumer crash. Also SIGHUP, which makes a producer process re-read its consents.

mod horizon;

use std::collections::BTreeSet;

use dolittle_types::{ConsentId, EventProcessorId, ScopeId, TenantId, Uuid};
use horizon::*;

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x4a4a4a4a_0000_4000_8000_000000000002));
const ROUNDS: usize = 3;
/// Batches committed between two kills, each with 8 public events of the subscribed partition,
/// one private event of it and one public event of another partition.
const BATCHES: u64 = 25;

async fn commit_batches(producer: &Process, first: u64) -> u64 {
    let channel = connect(producer.private).await;
    let mut n = first;
    for _ in 0..BATCHES {
        let mut events = Vec::new();
        for _ in 0..8 {
            events.push(event(PARTITION, true, n));
            n += 1;
        }
        events.push(event(PARTITION, false, n));
        n += 1;
        events.push(event(OTHER_PARTITION, true, n));
        n += 1;
        commit(channel.clone(), PRODUCER, TenantId::DEVELOPMENT, events).await;
    }
    n
}

/// Collects what a handler registration sees, checking it never sees an event twice.
fn collect(handler: &mut EventHandler, seen: &mut BTreeSet<u64>, this_run: &mut BTreeSet<u64>) {
    while let Ok((tenant, event)) = handler.handled.try_recv() {
        assert_eq!(tenant, TenantId::DEVELOPMENT);
        assert!(
            this_run.insert(event.sequence_number),
            "event {} handled twice by one registration",
            event.sequence_number
        );
        seen.insert(event.sequence_number);
    }
}

#[tokio::test]
async fn killing_either_runtime_mid_stream_neither_duplicates_nor_skips() {
    let producer_dir = tempfile::tempdir().expect("dir");
    let consumer_dir = tempfile::tempdir().expect("dir");
    let producer_ports = (free_port(), free_port(), free_port());
    let consumer_ports = (free_port(), free_port(), free_port());
    write_files(
        producer_dir.path(),
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[],
            consents: &[ConsentLine::standard()],
        },
    );
    write_files(
        consumer_dir.path(),
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[(PRODUCER, producer_ports.1)],
            consents: &[],
        },
    );
    let start_producer = || {
        Process::start(
            producer_dir.path(),
            PRODUCER,
            producer_ports.0,
            producer_ports.1,
            producer_ports.2,
        )
    };
    let start_consumer = || {
        Process::start(
            consumer_dir.path(),
            CONSUMER,
            consumer_ports.0,
            consumer_ports.1,
            consumer_ports.2,
        )
    };

    let mut producer = start_producer().await;
    let mut filter = PublicFilter::register(connect(producer.private).await, PRODUCER).await;
    let mut consumer = start_consumer().await;
    let response = subscribe(
        connect(consumer.private).await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let mut handler =
        EventHandler::register(connect(consumer.private).await, CONSUMER, HANDLER, SCOPE).await;
    let mut seen = BTreeSet::new();
    let mut this_run = BTreeSet::new();

    let mut next = 0;
    for _ in 0..ROUNDS {
        next = commit_batches(&producer, next).await;
        producer.kill();
        drop(filter);
        producer = start_producer().await;
        filter = PublicFilter::register(connect(producer.private).await, PRODUCER).await;

        next = commit_batches(&producer, next).await;
        collect(&mut handler, &mut seen, &mut this_run);
        consumer.kill();
        drop(handler);
        consumer = start_consumer().await;
        handler =
            EventHandler::register(connect(consumer.private).await, CONSUMER, HANDLER, SCOPE).await;
        this_run.clear();
    }

    // Everything committed reaches the consumer without anyone asking again.
    let expected = (ROUNDS as u64) * 2 * BATCHES * 8;
    while (seen.len() as u64) < expected {
        let Ok(Some((tenant, event))) =
            tokio::time::timeout(PATIENCE, handler.handled.recv()).await
        else {
            drop(handler);
            drop(filter);
            consumer.kill();
            producer.kill();
            let public_store = open_store(producer_dir.path(), TenantId::DEVELOPMENT).await;
            let consumer_store = open_store(consumer_dir.path(), TenantId::DEVELOPMENT).await;
            let state = consumer_store
                .get_subscription_state(&subscription_key(PARTITION))
                .await;
            let public = read_public_partition(&public_store, PARTITION).await;
            let scoped: BTreeSet<u64> = read_scope(&consumer_store, SCOPE)
                .await
                .iter()
                .filter_map(|event| event.event_horizon.map(|m| m.external_sequence_number))
                .collect();
            let missing: Vec<(u64, u64)> = public
                .iter()
                .filter(|event| !scoped.contains(&event.event.sequence_number))
                .map(|event| (event.position, event.event.sequence_number))
                .collect();
            let _ = (producer_dir.keep(), consumer_dir.keep());
            panic!(
                "only {} of {expected} events handled in time; public partition {}, scoped log \
                 {}, subscription state {state:?}; missing (position, sequence number): \
                 {missing:?}",
                seen.len(),
                public.len(),
                scoped.len(),
            );
        };
        assert_eq!(tenant, TenantId::DEVELOPMENT);
        assert!(
            this_run.insert(event.sequence_number),
            "handled twice in one run"
        );
        seen.insert(event.sequence_number);
    }
    assert_eq!(
        seen,
        (0..expected).collect(),
        "the scoped handler saw every event"
    );
    drop(handler);
    drop(filter);
    consumer.kill();
    producer.kill();

    let public = read_public_partition(
        &open_store(producer_dir.path(), TenantId::DEVELOPMENT).await,
        PARTITION,
    )
    .await;
    let consumer_store = open_store(consumer_dir.path(), TenantId::DEVELOPMENT).await;
    let scoped = read_scope(&consumer_store, SCOPE).await;
    assert_eq!(public.len() as u64, expected, "the public filter caught up");
    assert_eq!(scoped.len(), public.len(), "no event missing or duplicated");
    for (index, (received, source)) in scoped.iter().zip(&public).enumerate() {
        assert_eq!(received.sequence_number, index as u64);
        let metadata = received.event_horizon.expect("metadata");
        assert_eq!(
            metadata.external_sequence_number,
            source.event.sequence_number
        );
        assert_eq!(received.content, source.event.content);
        assert_eq!(received.event_source, source.event.event_source);
        assert!(received.public);
    }
    assert!(
        read_scope(&consumer_store, ScopeId::DEFAULT)
            .await
            .is_empty()
    );
    let state = consumer_store
        .get_subscription_state(&subscription_key(PARTITION))
        .await
        .expect("state")
        .expect("stored");
    assert_eq!(state.position, public.last().expect("events").position + 1);
}

#[tokio::test]
async fn sighup_makes_the_producer_read_its_consents_again() {
    let producer_dir = tempfile::tempdir().expect("dir");
    let consumer_dir = tempfile::tempdir().expect("dir");
    let ports = (free_port(), free_port(), free_port());
    write_files(
        producer_dir.path(),
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[],
            consents: &[ConsentLine::standard()],
        },
    );
    let producer = Process::start(producer_dir.path(), PRODUCER, ports.0, ports.1, ports.2).await;
    let _filter = PublicFilter::register(connect(producer.private).await, PRODUCER).await;
    let consumer = Node::start(
        consumer_dir.path(),
        CONSUMER,
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[(PRODUCER, ports.1)],
            consents: &[],
        },
        0,
    )
    .await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert_eq!(response.consent_id, Some(CONSENT.into()));
    let store = consumer.store(TenantId::DEVELOPMENT);
    let producer_channel = connect(producer.private).await;
    let consent_of_event = |n: u64| {
        let (store, channel) = (store.clone(), producer_channel.clone());
        async move {
            commit(
                channel,
                PRODUCER,
                TenantId::DEVELOPMENT,
                vec![event(PARTITION, true, n)],
            )
            .await;
            let received = wait_for_scope(&store, SCOPE, n as usize + 1).await;
            received[n as usize]
                .event_horizon
                .expect("metadata")
                .consent
        }
    };
    assert_eq!(consent_of_event(0).await, CONSENT);

    // Replace the consent id in place, keeping the file's length and modification time, so
    // that only a SIGHUP makes the producer notice.
    let file = producer_dir
        .path()
        .join(".dolittle")
        .join("event-horizon-consents.json");
    let modified = std::fs::metadata(&file)
        .expect("metadata")
        .modified()
        .expect("mtime");
    let renewed = ConsentId(Uuid::from_u128(0xc0c0c0c0_0000_4000_8000_000000000002));
    write_consents(
        producer_dir.path(),
        &[ConsentLine {
            consent: renewed,
            ..ConsentLine::standard()
        }],
    );
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|opened| opened.set_modified(modified))
        .expect("set modification time");
    // Longer than the producer's check of the file (1 s): it has looked and seen no change.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        consent_of_event(1).await,
        CONSENT,
        "no change without SIGHUP"
    );

    producer.hang_up();
    // The subscription under the old consent ends; the consumer subscribes again and events
    // cross under the new consent.
    let mut n = 2;
    loop {
        let consent = consent_of_event(n).await;
        if consent == renewed {
            break;
        }
        assert_eq!(consent, CONSENT);
        assert!(n < 50, "the new consent never took effect");
        n += 1;
    }
    consumer.stop().await;
    producer.kill();
}
