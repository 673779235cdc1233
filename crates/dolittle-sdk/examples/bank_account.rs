//! A bank account with a compensating event (concepts §2 and §9): Sally deposits $100, the
//! bank books $1000 by mistake, and since events cannot be changed or deleted, a correcting
//! event subtracts $900. An unpartitioned event handler prints the ledger; two tellers withdraw
//! at the same moment, and the SDK performs the loser's command again on fresh state.
//!
//! Against a running Runtime (`cargo run -p dolittle-runtime`, private port 50053):
//!
//!     cargo run -p dolittle-sdk --example bank_account
//!
//! With a Runtime inside the example's own process instead:
//!
//!     cargo run -p dolittle-sdk --example bank_account --features in-process -- --in-process
//!
//! Set `DOLITTLE_RUNTIME` to use another address than `http://127.0.0.1:50053`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dolittle_sdk::types::{AggregateRootId, EventProcessorId, TenantId};
use dolittle_sdk::{
    AggregateError, AggregateRoot, Applied, Client, EventContext, EventHandler,
    EventHandlerOptions, EventType, Events, HandledEvent, HandlerError, uuid,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "7e1c0b9a-2f4d-4e8b-9c3a-6d5e4f3a2b01")]
struct AccountOpened {
    owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "7e1c0b9a-2f4d-4e8b-9c3a-6d5e4f3a2b02")]
struct MoneyDeposited {
    amount: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "7e1c0b9a-2f4d-4e8b-9c3a-6d5e4f3a2b03")]
struct MoneyWithdrawn {
    amount: i64,
    teller: String,
}

/// The compensating event: it reverses part of an earlier deposit, which stays in the log.
#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "7e1c0b9a-2f4d-4e8b-9c3a-6d5e4f3a2b04")]
struct DepositCorrected {
    subtracted: i64,
    reason: String,
}

#[derive(Debug, Clone, Events)]
enum AccountEvent {
    AccountOpened(AccountOpened),
    MoneyDeposited(MoneyDeposited),
    MoneyWithdrawn(MoneyWithdrawn),
    DepositCorrected(DepositCorrected),
}

#[derive(Default)]
struct Account {
    owner: Option<String>,
    balance: i64,
    applied: Applied<AccountEvent>,
}

#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the balance is ${balance}, less than ${wanted}")]
    InsufficientFunds { balance: i64, wanted: i64 },
}

impl Account {
    fn open(&mut self, owner: &str) {
        if self.owner.is_none() {
            self.apply(AccountOpened {
                owner: owner.into(),
            });
        }
    }

    fn deposit(&mut self, amount: i64) -> Result<(), AccountError> {
        self.owner.as_ref().ok_or(AccountError::NotOpen)?;
        self.apply(MoneyDeposited { amount });
        Ok(())
    }

    fn correct_deposit(&mut self, booked: i64, intended: i64) -> Result<(), AccountError> {
        self.owner.as_ref().ok_or(AccountError::NotOpen)?;
        self.apply(DepositCorrected {
            subtracted: booked - intended,
            reason: format!("${booked} was booked for a deposit of ${intended}"),
        });
        Ok(())
    }

    fn withdraw(&mut self, amount: i64, teller: &str) -> Result<i64, AccountError> {
        self.owner.as_ref().ok_or(AccountError::NotOpen)?;
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                wanted: amount,
            });
        }
        self.apply(MoneyWithdrawn {
            amount,
            teller: teller.into(),
        });
        Ok(self.balance)
    }
}

impl AggregateRoot for Account {
    const ID: AggregateRootId = AggregateRootId(uuid!("3c9f2e1d-0b8a-4c7d-9e6f-5a4b3c2d1e0f"));
    type Events = AccountEvent;

    fn on(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened(opened) => self.owner = Some(opened.owner.clone()),
            AccountEvent::MoneyDeposited(deposit) => self.balance += deposit.amount,
            AccountEvent::MoneyWithdrawn(withdrawal) => self.balance -= withdrawal.amount,
            AccountEvent::DepositCorrected(correction) => self.balance -= correction.subtracted,
        }
    }

    fn applied(&mut self) -> &mut Applied<AccountEvent> {
        &mut self.applied
    }
}

/// Prints every entry of this run's account, in log order.
struct Ledger {
    account: String,
    printed: mpsc::UnboundedSender<()>,
}

impl EventHandler for Ledger {
    type Events = AccountEvent;

    async fn handle(
        &self,
        event: HandledEvent<AccountEvent>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if context.event_source.as_str() != self.account {
            return Ok(());
        }
        let line = match event {
            HandledEvent::Known(AccountEvent::AccountOpened(opened)) => {
                format!("account opened for {}", opened.owner)
            }
            HandledEvent::Known(AccountEvent::MoneyDeposited(deposit)) => {
                format!("deposit      +{}", deposit.amount)
            }
            HandledEvent::Known(AccountEvent::MoneyWithdrawn(withdrawal)) => {
                format!(
                    "withdrawal   -{} by {}",
                    withdrawal.amount, withdrawal.teller
                )
            }
            HandledEvent::Known(AccountEvent::DepositCorrected(correction)) => {
                format!(
                    "correction   -{} ({})",
                    correction.subtracted, correction.reason
                )
            }
            HandledEvent::Unknown { event_type, .. } => format!("unknown event {}", event_type.id),
        };
        println!("  [ledger] #{:<3} {line}", context.sequence_number);
        let _ = self.printed.send(());
        Ok(())
    }
}

async fn connect() -> Result<(Client, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    let builder = Client::builder()
        .microservice(uuid!("a14b3e6c-5d2f-4b8a-9c1e-7f6d5c4b3a29"))
        .version(1, 0, 0)
        .environment("Development");
    if std::env::args().any(|argument| argument == "--in-process") {
        #[cfg(feature = "in-process")]
        {
            let folder = tempfile::tempdir()?;
            println!(
                "starting a Runtime in this process, data in {}",
                folder.path().display()
            );
            let client = builder.start_in_process(folder.path(), &[]).await?;
            return Ok((client, Some(folder)));
        }
        #[cfg(not(feature = "in-process"))]
        return Err("--in-process needs the feature: add --features in-process".into());
    }
    let address = std::env::var("DOLITTLE_RUNTIME")
        .unwrap_or_else(|_| dolittle_sdk::DEFAULT_RUNTIME_ADDRESS.to_owned());
    println!("connecting to the Runtime at {address}");
    Ok((
        builder
            .runtime(address)
            .connect_attempts(3)
            .connect()
            .await?,
        None,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _folder) = connect().await?;
    let account_id = format!(
        "account-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    println!("account {account_id}");

    let (printed, mut lines) = mpsc::unbounded_channel();
    let ledger = client.register_event_handler(
        EventHandlerOptions::new(EventProcessorId(uuid!(
            "9b2d6f1a-3e4c-4a5b-8d7e-0c1f2a3b4c5d"
        )))
        .partitioned(false),
        Ledger {
            account: account_id.clone(),
            printed,
        },
    );
    tokio::time::timeout(Duration::from_secs(10), ledger.registered()).await??;

    let account = client.aggregate_of::<Account>(TenantId::DEVELOPMENT, account_id.as_str());
    account
        .perform(|account| {
            account.open("Sally");
            account.deposit(1000)
        })
        .await?;
    println!("  [teller] Sally deposits $100; the bank books $1000 by mistake");
    account
        .perform(|account| account.correct_deposit(1000, 100))
        .await?;
    println!("  [teller] the log cannot change: a compensating event subtracts $900");

    // Two tellers at once: both read the same version, one commit wins, the other's command
    // runs again on the new state.
    let runs = Arc::new(AtomicU32::new(0));
    let teller = |name: &'static str, amount: i64| {
        let account = account.clone();
        let runs = runs.clone();
        async move {
            let result = account
                .perform(|state| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    state.withdraw(amount, name)
                })
                .await;
            (name, amount, result)
        }
    };
    let (first, second) = tokio::join!(teller("Alice", 30), teller("Bob", 50));
    for (name, amount, result) in [first, second] {
        match result {
            Ok(balance) => println!("  [teller] {name} paid out ${amount}; balance ${balance}"),
            Err(error) => println!("  [teller] {name} could not pay out ${amount}: {error}"),
        }
    }
    println!(
        "  [teller] the two withdrawals ran their command {} times in all",
        runs.load(Ordering::SeqCst)
    );

    match account.perform(|state| state.withdraw(500, "Alice")).await {
        Err(AggregateError::Rejected(rule)) => println!("  [teller] $500 refused: {rule}"),
        Err(error) => return Err(error.into()),
        Ok(_) => println!("  [teller] $500 paid out (unexpected)"),
    }

    let (state, version) = account.get().await?;
    for _ in 0..version {
        tokio::time::timeout(Duration::from_secs(10), lines.recv()).await?;
    }
    println!(
        "{} has ${} after {version} events",
        state.owner.unwrap_or_default(),
        state.balance
    );
    client.shutdown().await;
    Ok(())
}
