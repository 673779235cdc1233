//! `dolittle.runtime.projections.Projections`: GetOne and GetAll read the read models of a
//! projection in the store of the request's tenant (protocol.md §2.7, §3.5). Failures come back
//! inside the response with status OK, as the SDKs expect.

use dolittle_contracts::convert;
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::protobuf::Uuid as WireUuid;
use dolittle_contracts::runtime::projections::projections_server::Projections;
use dolittle_contracts::runtime::projections::{
    GetAllRequest, GetAllResponse, GetOneRequest, GetOneResponse,
};
use dolittle_contracts::services::CallRequestContext;
use dolittle_store::SharedEventStore;
use dolittle_types::{EventProcessorId, ScopeId};
use tonic::{Request, Response, Status};

use crate::RuntimeContext;
use crate::failures::{invalid_request, projection_read_failure, tenant_failure};
use crate::processing::projections::{get_all, get_one};
use crate::services::projections::current_state_to_wire;

/// The projection store service of the private endpoint.
pub struct ProjectionStoreService {
    context: RuntimeContext,
}

/// What a read is about: the tenant's store, the scope and the projection.
struct Target {
    store: SharedEventStore,
    scope: ScopeId,
    projection: EventProcessorId,
}

impl ProjectionStoreService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }

    fn resolve(
        &self,
        call_context: Option<CallRequestContext>,
        scope: Option<&WireUuid>,
        projection: Option<&WireUuid>,
    ) -> Result<Target, Failure> {
        let execution_context =
            convert::execution_context_from_call_context(call_context).map_err(invalid_request)?;
        let scope = convert::optional_guid::<ScopeId>("scopeId", scope)
            .map_err(invalid_request)?
            .unwrap_or_default();
        let projection = convert::required_guid::<EventProcessorId>("projectionId", projection)
            .map_err(invalid_request)?;
        let store = self
            .context
            .tenants
            .store(execution_context.tenant)
            .map_err(|error| tenant_failure(&error))?
            .clone();
        Ok(Target {
            store,
            scope,
            projection,
        })
    }
}

#[tonic::async_trait]
impl Projections for ProjectionStoreService {
    async fn get_one(
        &self,
        request: Request<GetOneRequest>,
    ) -> Result<Response<GetOneResponse>, Status> {
        let request = request.into_inner();
        let target = match self.resolve(
            request.call_context,
            request.scope_id.as_ref(),
            request.projection_id.as_ref(),
        ) {
            Ok(target) => target,
            Err(failure) => {
                return Ok(Response::new(GetOneResponse {
                    state: None,
                    failure: Some(failure),
                }));
            }
        };
        let response =
            match get_one(&target.store, target.scope, target.projection, &request.key).await {
                Ok(state) => GetOneResponse {
                    state: Some(current_state_to_wire(state)),
                    failure: None,
                },
                Err(error) => GetOneResponse {
                    state: None,
                    failure: Some(projection_read_failure(&error)),
                },
            };
        Ok(Response::new(response))
    }

    async fn get_all(
        &self,
        request: Request<GetAllRequest>,
    ) -> Result<Response<GetAllResponse>, Status> {
        let request = request.into_inner();
        let target = match self.resolve(
            request.call_context,
            request.scope_id.as_ref(),
            request.projection_id.as_ref(),
        ) {
            Ok(target) => target,
            Err(failure) => {
                return Ok(Response::new(GetAllResponse {
                    states: Vec::new(),
                    failure: Some(failure),
                }));
            }
        };
        let response = match get_all(&target.store, target.scope, target.projection).await {
            Ok(states) => GetAllResponse {
                states: states.into_iter().map(current_state_to_wire).collect(),
                failure: None,
            },
            Err(error) => GetAllResponse {
                states: Vec::new(),
                failure: Some(projection_read_failure(&error)),
            },
        };
        Ok(Response::new(response))
    }
}
