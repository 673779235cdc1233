//! Aggregate roots through the SDK against a real Runtime: rehydration, rules, expected
//! versions, retried performs and lasting concurrency conflicts.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::TestRuntime;
use dolittle_sdk::types::{AggregateRootId, EventSourceId, TenantId, UncommittedAggregateEvent};
use dolittle_sdk::{AggregateError, AggregateRoot, Applied, Error, EventType, Events, uuid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "5d0a4f4e-9d2b-4a55-8a3d-6a7b1c2d3e01")]
struct Deposited {
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "5d0a4f4e-9d2b-4a55-8a3d-6a7b1c2d3e02")]
struct Withdrawn {
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Events)]
enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

#[derive(Default)]
struct Account {
    balance: i64,
    applied: Applied<AccountEvent>,
}

#[derive(Debug, PartialEq)]
struct InsufficientFunds;

impl Account {
    fn deposit(&mut self, amount: i64) {
        self.apply(Deposited { amount });
    }

    fn withdraw(&mut self, amount: i64) -> Result<i64, InsufficientFunds> {
        if amount > self.balance {
            return Err(InsufficientFunds);
        }
        self.apply(Withdrawn { amount });
        Ok(self.balance)
    }
}

impl AggregateRoot for Account {
    const ID: AggregateRootId = AggregateRootId(uuid!("8a0c3b1e-2d4f-4a6b-8c0d-1e2f3a4b5c6d"));
    type Events = AccountEvent;

    fn on(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(deposit) => self.balance += deposit.amount,
            AccountEvent::Withdrawn(withdrawal) => self.balance -= withdrawal.amount,
        }
    }

    fn applied(&mut self) -> &mut Applied<AccountEvent> {
        &mut self.applied
    }
}

#[tokio::test]
async fn perform_rehydrates_runs_the_command_and_commits_at_the_expected_version() {
    let runtime = TestRuntime::start().await;
    let account = runtime
        .client
        .aggregate_of::<Account>(TenantId::DEVELOPMENT, "account of Sally");

    account
        .perform(|account| {
            account.deposit(100);
            account.deposit(50);
            Ok::<_, InsufficientFunds>(())
        })
        .await
        .expect("deposit");
    let balance = account
        .perform(|account| account.withdraw(30))
        .await
        .expect("withdraw");

    assert_eq!(balance, 120);
    let (state, version) = account.get().await.expect("get");
    assert_eq!(state.balance, 120);
    assert_eq!(version, 3);
    let events = runtime
        .client
        .event_store(TenantId::DEVELOPMENT)
        .fetch_for_aggregate(Account::ID, "account of Sally")
        .await
        .expect("fetch");
    let versions: Vec<_> = events
        .events
        .iter()
        .map(|event| event.aggregate.map(|metadata| metadata.version))
        .collect();
    assert_eq!(versions, [Some(0), Some(1), Some(2)]);
    runtime.stop().await;
}

#[tokio::test]
async fn a_rejected_command_commits_nothing_and_returns_its_own_error() {
    let runtime = TestRuntime::start().await;
    let account = runtime
        .client
        .aggregate_of::<Account>(TenantId::DEVELOPMENT, "empty account");

    let result = account.perform(|account| account.withdraw(10)).await;

    assert!(matches!(
        result,
        Err(AggregateError::Rejected(InsufficientFunds))
    ));
    let (_, version) = account.get().await.expect("get");
    assert_eq!(version, 0);
    runtime.stop().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_a_concurrency_conflict_variant() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);
    let event = || UncommittedAggregateEvent {
        event_type: Deposited::EVENT_TYPE,
        public: false,
        content: r#"{"amount":1}"#.into(),
    };
    store
        .commit_for_aggregate(Account::ID, "a", 0, vec![event()])
        .await
        .expect("first commit");

    let stale = store
        .commit_for_aggregate(Account::ID, "a", 0, vec![event()])
        .await;

    match stale {
        Err(Error::ConcurrencyConflict {
            aggregate_root,
            event_source,
            expected_version,
            ..
        }) => {
            assert_eq!(aggregate_root, Account::ID);
            assert_eq!(event_source, EventSourceId::from("a"));
            assert_eq!(expected_version, 0);
        }
        other => panic!("expected a concurrency conflict, got {other:?}"),
    }
    runtime.stop().await;
}

/// Commits one deposit for the account behind `perform`'s back, from inside its command.
fn interfere(store: &dolittle_sdk::EventStore, event_source: &str) {
    let store = store.clone();
    let event_source = event_source.to_owned();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async move {
            let (_, version) = store
                .fetch_for_aggregate(Account::ID, event_source.clone())
                .await
                .map(|events| ((), events.events.len() as u64))
                .expect("fetch");
            store
                .commit_for_aggregate(
                    Account::ID,
                    event_source,
                    version,
                    vec![UncommittedAggregateEvent {
                        event_type: Deposited::EVENT_TYPE,
                        public: false,
                        content: r#"{"amount":1000}"#.into(),
                    }],
                )
                .await
                .expect("interfering commit");
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_runs_again_on_fresh_state_after_a_concurrency_conflict() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);
    let account = runtime
        .client
        .aggregate_of::<Account>(TenantId::DEVELOPMENT, "contested");
    account
        .perform(|account| {
            account.deposit(500);
            Ok::<_, InsufficientFunds>(())
        })
        .await
        .expect("opening deposit");
    let runs = AtomicU32::new(0);

    let balance = account
        .perform(|account| {
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                interfere(&store, "contested");
            }
            account.withdraw(400)
        })
        .await
        .expect("second run succeeds");

    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(balance, 1100, "the second run saw the interfering deposit");
    let (state, version) = account.get().await.expect("get");
    assert_eq!((state.balance, version), (1100, 3));
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_outlasts_every_attempt_is_returned_as_an_error() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);
    let account = runtime
        .client
        .aggregate_of::<Account>(TenantId::DEVELOPMENT, "always contested")
        .max_attempts(3);
    let runs = AtomicU32::new(0);

    let result = account
        .perform(|account| {
            runs.fetch_add(1, Ordering::SeqCst);
            interfere(&store, "always contested");
            account.deposit(1);
            Ok::<_, InsufficientFunds>(())
        })
        .await;

    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert!(
        result
            .as_ref()
            .is_err_and(AggregateError::is_concurrency_conflict)
    );
    let (state, version) = account.get().await.expect("get");
    assert_eq!(
        (state.balance, version),
        (3000, 3),
        "only the interfering deposits"
    );
    runtime.stop().await;
}
