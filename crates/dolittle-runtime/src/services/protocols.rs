//! How each reverse-call service's oneof messages are taken apart and built: the
//! [`ReverseCallProtocol`] of event handlers, the three kinds of filters and projections.
//! Their messages have the same shape with different names, so one macro writes them all.

use dolittle_contracts::failure_ids;
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::events::processing as wire;
use dolittle_contracts::services::{
    Ping, ReverseCallArgumentsContext, ReverseCallRequestContext, ReverseCallResponseContext,
};
use dolittle_types::Uuid;

use crate::reverse_calls::{FromHead, ReverseCallProtocol};

macro_rules! reverse_call_protocol {
    (
        $(#[$meta:meta])*
        $protocol:ident {
            client: $client:ident / $client_arms:ident,
            server: $server:ident / $server_arms:ident,
            registration: $registration:ident,
            registration_response: $registration_response:ident,
            request: $request:ident => $request_arm:ident,
            response: $response:ident => $response_arm:ident,
            failed_to_register: $failed_to_register:expr,
        }
    ) => {
        $(#[$meta])*
        pub struct $protocol;

        impl ReverseCallProtocol for $protocol {
            type ClientMessage = wire::$client;
            type ServerMessage = wire::$server;
            type Registration = wire::$registration;
            type RegistrationResponse = wire::$registration_response;
            type Request = wire::$request;
            type Response = wire::$response;

            const FAILED_TO_REGISTER: Uuid = $failed_to_register;

            fn classify(
                message: Self::ClientMessage,
            ) -> FromHead<Self::Registration, Self::Response> {
                use wire::$client_arms::Message;
                match message.message {
                    Some(Message::RegistrationRequest(registration)) => {
                        FromHead::Registration(registration)
                    }
                    Some(Message::$response_arm(response)) => FromHead::Response(response),
                    Some(Message::Pong(_)) => FromHead::Pong,
                    None => FromHead::Empty,
                }
            }

            fn arguments(registration: &Self::Registration) -> Option<&ReverseCallArgumentsContext> {
                registration.call_context.as_ref()
            }

            fn response_context(response: &Self::Response) -> Option<&ReverseCallResponseContext> {
                response.call_context.as_ref()
            }

            fn registration_response(failure: Option<Failure>) -> Self::ServerMessage {
                wire::$server {
                    message: Some(wire::$server_arms::Message::RegistrationResponse(
                        wire::$registration_response { failure },
                    )),
                }
            }

            fn request(request: Self::Request) -> Self::ServerMessage {
                wire::$server { message: Some(wire::$server_arms::Message::$request_arm(request)) }
            }

            fn ping() -> Self::ServerMessage {
                wire::$server { message: Some(wire::$server_arms::Message::Ping(Ping {})) }
            }

            fn set_request_context(request: &mut Self::Request, context: ReverseCallRequestContext) {
                request.call_context = Some(context);
            }
        }
    };
}

reverse_call_protocol!(
    /// `dolittle.runtime.events.processing.EventHandlers/Connect`.
    EventHandlerProtocol {
        client: EventHandlerClientToRuntimeMessage / event_handler_client_to_runtime_message,
        server: EventHandlerRuntimeToClientMessage / event_handler_runtime_to_client_message,
        registration: EventHandlerRegistrationRequest,
        registration_response: EventHandlerRegistrationResponse,
        request: HandleEventRequest => HandleRequest,
        response: EventHandlerResponse => HandleResult,
        failed_to_register: failure_ids::FAILED_TO_REGISTER_EVENT_HANDLER,
    }
);

reverse_call_protocol!(
    /// `dolittle.runtime.events.processing.Filters/Connect`.
    FilterProtocol {
        client: FilterClientToRuntimeMessage / filter_client_to_runtime_message,
        server: FilterRuntimeToClientMessage / filter_runtime_to_client_message,
        registration: FilterRegistrationRequest,
        registration_response: FilterRegistrationResponse,
        request: FilterEventRequest => FilterRequest,
        response: FilterResponse => FilterResult,
        failed_to_register: failure_ids::FAILED_TO_REGISTER_FILTER,
    }
);

reverse_call_protocol!(
    /// `dolittle.runtime.events.processing.Filters/ConnectPartitioned`.
    PartitionedFilterProtocol {
        client: PartitionedFilterClientToRuntimeMessage / partitioned_filter_client_to_runtime_message,
        server: FilterRuntimeToClientMessage / filter_runtime_to_client_message,
        registration: PartitionedFilterRegistrationRequest,
        registration_response: FilterRegistrationResponse,
        request: FilterEventRequest => FilterRequest,
        response: PartitionedFilterResponse => FilterResult,
        failed_to_register: failure_ids::FAILED_TO_REGISTER_FILTER,
    }
);

reverse_call_protocol!(
    /// `dolittle.runtime.events.processing.Filters/ConnectPublic`.
    PublicFilterProtocol {
        client: PublicFilterClientToRuntimeMessage / public_filter_client_to_runtime_message,
        server: FilterRuntimeToClientMessage / filter_runtime_to_client_message,
        registration: PublicFilterRegistrationRequest,
        registration_response: FilterRegistrationResponse,
        request: FilterEventRequest => FilterRequest,
        response: PartitionedFilterResponse => FilterResult,
        failed_to_register: failure_ids::FAILED_TO_REGISTER_FILTER,
    }
);

reverse_call_protocol!(
    /// `dolittle.runtime.events.processing.Projections/Connect`.
    ProjectionProtocol {
        client: ProjectionClientToRuntimeMessage / projection_client_to_runtime_message,
        server: ProjectionRuntimeToClientMessage / projection_runtime_to_client_message,
        registration: ProjectionRegistrationRequest,
        registration_response: ProjectionRegistrationResponse,
        request: ProjectionRequest => HandleRequest,
        response: ProjectionResponse => HandleResult,
        failed_to_register: failure_ids::FAILED_TO_REGISTER_PROJECTION,
    }
);
