//! Stream processing: the registry of processors that heads have registered, the stream
//! processor loop, and the event handlers, filters and projections built on it.

pub mod event_handlers;
pub mod filters;
pub mod projections;
pub mod stream_processor;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use dolittle_store::{ProcessorKey, StreamProcessorState};
use dolittle_types::TenantId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

/// What the registry knows of one registered processor.
#[derive(Clone, Default)]
pub struct RegisteredProcessor {
    /// The live state of the processor per tenant.
    pub states: BTreeMap<TenantId, watch::Receiver<StreamProcessorState>>,
    /// The command channel of the processor per tenant.
    pub commands: BTreeMap<TenantId, mpsc::Sender<stream_processor::Command>>,
}

/// The processors registered by connected heads. A processor id can be registered once per
/// kind and scope at a time; the registration ends when the head disconnects.
#[derive(Default)]
pub struct ProcessorRegistry {
    registered: Mutex<HashMap<ProcessorKey, RegisteredProcessor>>,
    tasks: TaskTracker,
}

impl ProcessorRegistry {
    /// Registers a processor; `None` when it is already registered.
    pub fn try_register(self: &Arc<Self>, key: ProcessorKey) -> Option<RegistrationGuard> {
        let mut registered = self.lock();
        if registered.contains_key(&key) {
            return None;
        }
        registered.insert(key, RegisteredProcessor::default());
        Some(RegistrationGuard {
            registry: self.clone(),
            key,
        })
    }

    /// Records the handles of a registered processor's stream processor for a tenant.
    pub fn publish(
        &self,
        key: &ProcessorKey,
        tenant: TenantId,
        handles: stream_processor::ProcessorHandles,
    ) {
        if let Some(processor) = self.lock().get_mut(key) {
            processor.states.insert(tenant, handles.state);
            processor.commands.insert(tenant, handles.commands);
        }
    }

    fn get(&self, key: &ProcessorKey) -> Option<RegisteredProcessor> {
        self.lock().get(key).cloned()
    }

    /// Every registered processor and its live states.
    pub fn registered(&self) -> Vec<(ProcessorKey, RegisteredProcessor)> {
        let mut list: Vec<_> = self
            .lock()
            .iter()
            .map(|(key, processor)| (*key, processor.clone()))
            .collect();
        list.sort_by_key(|(key, _)| *key);
        list
    }

    pub fn is_registered(&self, key: &ProcessorKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Runs a processing task that shutdown waits for.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits for every processing task to end (after the shutdown token was cancelled).
    pub async fn wait_until_stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessorKey, RegisteredProcessor>> {
        self.registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Unregisters its processor when dropped.
pub struct RegistrationGuard {
    registry: Arc<ProcessorRegistry>,
    key: ProcessorKey,
}

impl RegistrationGuard {
    pub fn key(&self) -> &ProcessorKey {
        &self.key
    }
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

/// Runs an operation for every tenant at once and collects the results in tenant order; the
/// first error wins.
pub(crate) async fn for_every_tenant<T, E, F, Fut>(
    context: &crate::RuntimeContext,
    operation: F,
) -> Result<Vec<T>, E>
where
    F: Fn(TenantId, dolittle_store::SharedEventStore) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    futures::future::try_join_all(
        context
            .tenants
            .iter()
            .map(|(tenant, store)| operation(tenant, store.clone())),
    )
    .await
}

/// Checks a stream definition for every tenant at once (the check says whether the stored
/// definition is new or changed), and only when every tenant accepted it, writes it where it
/// is new or changed. A refusal for one tenant therefore changes no tenant's definition.
pub(crate) async fn check_then_store_definition<E, C, Fut>(
    context: &crate::RuntimeContext,
    scope: dolittle_types::ScopeId,
    definition: &dolittle_store::StreamDefinition,
    check: C,
    store_error: impl Fn(TenantId, dolittle_store::StoreError) -> E,
) -> Result<(), E>
where
    C: Fn(TenantId, dolittle_store::SharedEventStore) -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
{
    let changed = for_every_tenant(context, |tenant, store| {
        let checked = check(tenant, store);
        async move { checked.await.map(|changed| (tenant, changed)) }
    })
    .await?;
    for_every_tenant(context, |tenant, store| {
        let write = changed.contains(&(tenant, true));
        let store_error = &store_error;
        async move {
            if write {
                store
                    .put_stream_definition(scope, definition)
                    .await
                    .map_err(|error| store_error(tenant, error))?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Starts one stream processor per tenant for a registered processor, publishing each one's
/// handles in the registry.
pub(crate) async fn start_for_every_tenant<P, E>(
    context: &crate::RuntimeContext,
    key: ProcessorKey,
    cancelled: &tokio_util::sync::CancellationToken,
    make: impl Fn(TenantId, &dolittle_store::SharedEventStore) -> Arc<P>,
    store_error: impl Fn(TenantId, dolittle_store::StoreError) -> E,
) -> Result<Vec<stream_processor::StreamProcessor<P>>, E>
where
    P: stream_processor::EventProcessor,
{
    let started = for_every_tenant(context, |tenant, store| {
        let processor = make(tenant, &store);
        let store_error = &store_error;
        async move {
            stream_processor::StreamProcessor::start(processor, store, cancelled.clone())
                .await
                .map(|started| (tenant, started))
                .map_err(|error| store_error(tenant, error))
        }
    })
    .await?;
    let mut processors = Vec::with_capacity(started.len());
    for (tenant, (processor, handles)) in started {
        context.processors.publish(&key, tenant, handles);
        processors.push(processor);
    }
    Ok(processors)
}

/// Runs the stream processors of one registration until they stop, then releases the
/// registration. When the head went away in the middle of a call, the whole registration is
/// cancelled so that the other tenants' processors stop too.
pub(crate) fn run_registered<P>(
    context: &crate::RuntimeContext,
    processors: Vec<stream_processor::StreamProcessor<P>>,
    cancelled: tokio_util::sync::CancellationToken,
    guard: RegistrationGuard,
) where
    P: stream_processor::EventProcessor,
{
    let metrics = context.metrics.clone();
    let kind = guard.key().kind.as_str();
    context.processors.spawn(async move {
        let running = processors.into_iter().map(|processor| {
            let gauge = metrics.processor_running(kind);
            async move {
                let stopped = processor.run().await;
                drop(gauge);
                stopped
            }
        });
        let results = futures::future::join_all(running).await;
        if results.contains(&stream_processor::Stopped::Disconnected) {
            cancelled.cancel();
        }
        drop(guard);
    });
}

/// Why a replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error("tenant {tenant}: {error}")]
    Refused {
        tenant: TenantId,
        error: stream_processor::ReplayError,
    },
    #[error("tenant {0} is not configured in this Runtime")]
    UnknownTenant(TenantId),
    #[error("the processor {0:?} has never run for tenant {1}: there is nothing to replay")]
    NeverRan(ProcessorKey, TenantId),
    #[error("the event store of tenant {tenant} failed: {error}")]
    Store {
        tenant: TenantId,
        error: dolittle_store::StoreError,
    },
    #[error("the processor stopped before it could replay")]
    Stopped,
}

/// Makes a processor process again from a position (from the start when `from` is `None`),
/// for every tenant or one, in every partition or one. A running processor replays between
/// two batches; an idle one (no head connected) has its stored state changed and replays when
/// it is registered again. A position past the processor's current one is refused.
pub async fn replay(
    context: &crate::RuntimeContext,
    key: ProcessorKey,
    tenant: Option<TenantId>,
    from: Option<u64>,
    partition: Option<dolittle_types::PartitionId>,
) -> Result<(), ReplayFailure> {
    let tenants = match tenant {
        Some(tenant) => {
            context
                .tenants
                .store(tenant)
                .map_err(|_| ReplayFailure::UnknownTenant(tenant))?;
            vec![tenant]
        }
        None => context.tenants.ids(),
    };
    let from = from.unwrap_or(0);
    let running = context.processors.get(&key);
    for tenant in tenants {
        if let Some(commands) = running
            .as_ref()
            .and_then(|processor| processor.commands.get(&tenant))
        {
            let (done, result) = oneshot::channel();
            let command = stream_processor::Command::Replay {
                from,
                partition: partition.clone(),
                done,
            };
            commands
                .send(command)
                .await
                .map_err(|_| ReplayFailure::Stopped)?;
            result
                .await
                .map_err(|_| ReplayFailure::Stopped)?
                .map_err(|error| ReplayFailure::Refused { tenant, error })?;
            continue;
        }
        let store = context
            .tenants
            .store(tenant)
            .map_err(|_| ReplayFailure::UnknownTenant(tenant))?;
        let store_error = |error| ReplayFailure::Store { tenant, error };
        let Some(mut state) = store.get_processor_state(&key).await.map_err(store_error)? else {
            return Err(ReplayFailure::NeverRan(key, tenant));
        };
        stream_processor::apply_replay(&mut state, from, partition.as_ref())
            .map_err(|error| ReplayFailure::Refused { tenant, error })?;
        store
            .save_processor_state(&key, &state)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}
