//! The Runtime's own test helpers, shared by path (not copied): a whole Runtime in-process
//! with its management endpoint on loopback port 0, and the raw test heads.

#![allow(dead_code)]

use std::net::SocketAddr;

use dolittle_types::{ExecutionContext, MicroserviceId, TenantId, Uuid};
use tonic::transport::Channel;

#[path = "../../../dolittle-runtime/tests/common/heads.rs"]
pub mod heads;
#[path = "../../../dolittle-runtime/tests/common/managed.rs"]
mod managed;
#[path = "../../../dolittle-runtime/tests/common/projection_head.rs"]
pub mod projection_head;

pub use managed::ManagedRuntime;

pub const MICROSERVICE: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x7a1c1f5e_3d2b_4c8e_9f10_2b6d8e4a9c01));

pub trait RuntimeAddress {
    fn address(&self) -> SocketAddr;
}

pub async fn connect(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

pub fn execution_context(tenant: TenantId) -> ExecutionContext {
    ExecutionContext {
        microservice: MICROSERVICE,
        tenant,
        correlation: dolittle_types::CorrelationId::new_random(),
        environment: "Test".into(),
        ..ExecutionContext::default()
    }
}
