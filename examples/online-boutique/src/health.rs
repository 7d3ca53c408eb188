//! `grpc.health.v1.Health` on every server: `Check` and `Watch` answer `SERVING` for the
//! whole server (`""`) and for each service it serves, as Kubernetes' gRPC probes and
//! `grpc_health_probe` (what upstream's manifests use) expect.

use std::{pin::Pin, sync::Arc};

use tonic::{
    Request, Response, Status,
    codegen::tokio_stream::{self, Stream, StreamExt as _},
};

use crate::proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health as HealthApi, HealthServer},
};

/// The health service of one server.
#[derive(Debug, Clone)]
pub struct Health {
    services: Arc<[String]>,
}

/// The generated server for [`Health`], reporting `services` (fully qualified names) and
/// the health service itself.
pub fn server(mut services: Vec<String>) -> HealthServer<Health> {
    services.push(crate::proto::health::v1::health_server::SERVICE_NAME.to_string());
    HealthServer::new(Health {
        services: services.into(),
    })
}

impl Health {
    fn knows(&self, service: &str) -> bool {
        service.is_empty() || self.services.iter().any(|s| s == service)
    }
}

#[tonic::async_trait]
impl HealthApi for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !self.knows(&service) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let status = if self.knows(&service) {
            ServingStatus::Serving
        } else {
            ServingStatus::ServiceUnknown
        };
        // The status never changes while the process runs: send it, then keep the stream
        // open until the client goes away.
        let first = tokio_stream::once(Ok(HealthCheckResponse {
            status: status.into(),
        }));
        Ok(Response::new(Box::pin(
            first.chain(tokio_stream::pending()),
        )))
    }
}
