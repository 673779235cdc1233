//! `dolittle.runtime.events.processing.Filters`: `Connect` (private unpartitioned),
//! `ConnectPartitioned` (private partitioned) and `ConnectPublic` (public) reverse calls
//! (protocol.md §3.4).

use std::sync::Arc;

use async_trait::async_trait;
use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::failure_ids;
use dolittle_contracts::protobuf::Uuid as WireUuid;
use dolittle_contracts::runtime::events::processing::filters_server::Filters;
use dolittle_contracts::runtime::events::processing::{
    FilterClientToRuntimeMessage, FilterEventRequest, FilterResponse,
    PartitionedFilterClientToRuntimeMessage, PartitionedFilterResponse,
    PublicFilterClientToRuntimeMessage,
};
use dolittle_types::{CommittedEvent, EventProcessorId, PartitionId, ScopeId, TenantId};
use tonic::{Request, Response, Status, Streaming};

use crate::RuntimeContext;
use crate::failures::failure;
use crate::processing::filters::{
    FilterDecision, FilterHead, FilterKind, FilterRegistration, FilterRegistrationError, register,
};
use crate::processing::stream_processor::{Outcome, RetryState};
use crate::reverse_calls::{
    self, CallError, HeadConnection, OutgoingStream, Registration, ReverseCallProtocol,
};
use crate::services::protocols::{FilterProtocol, PartitionedFilterProtocol, PublicFilterProtocol};
use crate::services::{outcome_of, request_execution_context, retry_to_wire};

pub struct FiltersService {
    context: RuntimeContext,
}

impl FiltersService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }

    fn connect_filter<P>(
        &self,
        incoming: Streaming<P::ClientMessage>,
        kind: FilterKind,
        ids: impl FnOnce(&P::Registration) -> (Option<WireUuid>, Option<WireUuid>) + Send + 'static,
    ) -> OutgoingStream<P>
    where
        P: ReverseCallProtocol<Request = FilterEventRequest>,
        P::ClientMessage: prost::Message + Default,
        P::Response: FilterAnswer,
    {
        let context = self.context.clone();
        reverse_calls::serve::<P, _, _>(
            incoming,
            &self.context,
            move |registration, connection| async move {
                let (filter_id, scope_id) = ids(&registration);
                let registration = match registration_from_wire(filter_id, scope_id, kind) {
                    Ok(registration) => registration,
                    Err(error) => {
                        return Registration::Refused(failure(
                            failure_ids::FAILED_TO_REGISTER_FILTER,
                            format!("Failed to register Filter: {error}"),
                        ));
                    }
                };
                let head = Arc::new(WireFilterHead::<P> {
                    connection: connection.clone(),
                    scope: registration.scope,
                });
                let id = registration.id;
                match register(
                    &context,
                    registration,
                    head,
                    connection.cancellation().clone(),
                )
                .await
                {
                    Ok(()) => {
                        tracing::info!(filter = %id, ?kind, "filter registered");
                        Registration::Accepted
                    }
                    Err(error) => Registration::Refused(refusal(&error)),
                }
            },
        )
    }
}

fn registration_from_wire(
    filter_id: Option<WireUuid>,
    scope_id: Option<WireUuid>,
    kind: FilterKind,
) -> Result<FilterRegistration, ConversionError> {
    Ok(FilterRegistration {
        id: convert::required_guid::<EventProcessorId>("filterId", filter_id.as_ref())?,
        scope: convert::optional_guid::<ScopeId>("scopeId", scope_id.as_ref())?.unwrap_or_default(),
        kind,
    })
}

fn refusal(error: &FilterRegistrationError) -> dolittle_contracts::protobuf::Failure {
    let id = match error {
        FilterRegistrationError::InvalidId(_) => {
            failure_ids::CANNOT_REGISTER_FILTER_ON_NON_WRITEABLE_STREAM
        }
        _ => failure_ids::FAILED_TO_REGISTER_FILTER,
    };
    failure(id, error.to_string())
}

#[tonic::async_trait]
impl Filters for FiltersService {
    type ConnectStream = OutgoingStream<FilterProtocol>;
    type ConnectPartitionedStream = OutgoingStream<PartitionedFilterProtocol>;
    type ConnectPublicStream = OutgoingStream<PublicFilterProtocol>;

    async fn connect(
        &self,
        request: Request<Streaming<FilterClientToRuntimeMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        Ok(Response::new(self.connect_filter::<FilterProtocol>(
            request.into_inner(),
            FilterKind::Unpartitioned,
            |registration| {
                (
                    registration.filter_id.clone(),
                    registration.scope_id.clone(),
                )
            },
        )))
    }

    async fn connect_partitioned(
        &self,
        request: Request<Streaming<PartitionedFilterClientToRuntimeMessage>>,
    ) -> Result<Response<Self::ConnectPartitionedStream>, Status> {
        Ok(Response::new(
            self.connect_filter::<PartitionedFilterProtocol>(
                request.into_inner(),
                FilterKind::Partitioned,
                |registration| {
                    (
                        registration.filter_id.clone(),
                        registration.scope_id.clone(),
                    )
                },
            ),
        ))
    }

    async fn connect_public(
        &self,
        request: Request<Streaming<PublicFilterClientToRuntimeMessage>>,
    ) -> Result<Response<Self::ConnectPublicStream>, Status> {
        Ok(Response::new(self.connect_filter::<PublicFilterProtocol>(
            request.into_inner(),
            FilterKind::Public,
            |registration| (registration.filter_id.clone(), None),
        )))
    }
}

/// Reads a filter's decision from its response message.
pub trait FilterAnswer: Send + 'static {
    fn into_outcome(self) -> Outcome<FilterDecision>;
}

impl FilterAnswer for FilterResponse {
    fn into_outcome(self) -> Outcome<FilterDecision> {
        outcome_of(
            self.failure,
            FilterDecision {
                included: self.is_included,
                partition: PartitionId::unpartitioned(),
            },
        )
    }
}

impl FilterAnswer for PartitionedFilterResponse {
    fn into_outcome(self) -> Outcome<FilterDecision> {
        if self.failure.is_some() || !self.is_included {
            return outcome_of(
                self.failure,
                FilterDecision {
                    included: false,
                    partition: PartitionId::unpartitioned(),
                },
            );
        }
        match convert::partition_from_wire(self.partition_id_string, self.partition_id.as_ref()) {
            Ok(partition) => Outcome::Succeeded(FilterDecision {
                included: true,
                partition,
            }),
            // A head can send a Uuid that is not 16 bytes (SDK 17 does, given a concept object
            // instead of a Guid). Putting the event in some other partition would corrupt the
            // stream, so the answer counts as a failure that the filter's state shows.
            Err(error) => Outcome::Failed {
                reason: format!("the filter's answer is invalid: {error}"),
                retry_after: Some(std::time::Duration::from_secs(5)),
            },
        }
    }
}

/// Sends events to a head's filter over its reverse call.
struct WireFilterHead<P: ReverseCallProtocol> {
    connection: Arc<HeadConnection<P>>,
    scope: ScopeId,
}

#[async_trait]
impl<P> FilterHead for WireFilterHead<P>
where
    P: ReverseCallProtocol<Request = FilterEventRequest>,
    P::Response: FilterAnswer,
{
    async fn filter(
        &self,
        tenant: TenantId,
        event: &CommittedEvent,
        retry: Option<RetryState>,
    ) -> Result<Outcome<FilterDecision>, CallError> {
        let request = FilterEventRequest {
            call_context: None,
            event: Some(event.clone().into()),
            scope_id: Some(self.scope.into()),
            retry_processing_state: retry_to_wire(retry),
        };
        let execution_context = request_execution_context(&self.connection.head_context, tenant);
        let response = self.connection.call(request, &execution_context).await?;
        Ok(response.into_outcome())
    }
}
