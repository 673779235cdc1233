//! Stream processing: the registry of processors that heads have registered, the stream
//! processor loop, and the event handlers, filters and projections built on it.

pub mod event_handlers;
pub mod filters;
pub mod stream_processor;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use dolittle_store::{ProcessorKey, StreamProcessorState};
use dolittle_types::TenantId;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// What the registry knows of one registered processor.
#[derive(Clone, Default)]
pub struct RegisteredProcessor {
    /// The live state of the processor per tenant.
    pub states: BTreeMap<TenantId, watch::Receiver<StreamProcessorState>>,
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

    /// Records the live state of a registered processor for a tenant.
    pub fn publish_state(
        &self,
        key: &ProcessorKey,
        tenant: TenantId,
        state: watch::Receiver<StreamProcessorState>,
    ) {
        if let Some(processor) = self.lock().get_mut(key) {
            processor.states.insert(tenant, state);
        }
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

/// Starts one stream processor per tenant for a registered processor, publishing each one's
/// live state in the registry.
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
    let mut processors = Vec::new();
    for (tenant, store) in context.tenants.iter() {
        let (processor, state) = stream_processor::StreamProcessor::start(
            make(tenant, store),
            store.clone(),
            cancelled.clone(),
        )
        .await
        .map_err(|error| store_error(tenant, error))?;
        context.processors.publish_state(&key, tenant, state);
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
