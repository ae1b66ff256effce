//! The per-process HTTP endpoint: `GET /healthz` (200 while the process is alive and
//! healthy, else 503), `GET /readyz` (200 once it also serves: registered at PD and open for
//! requests, else 503) and `GET /metrics` (Prometheus text format of the process's registry),
//! plus whatever other `GET` paths the process's [`Pages`] answer (PD's status page). It
//! never blocks the actor threads: it runs on tokio tasks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// What `/healthz` and `/readyz` report.
#[derive(Clone)]
pub struct Probes {
    /// Alive and healthy (a failed WAL is not).
    pub healthy: HealthCheck,
    /// Serving; only asked when healthy.
    pub ready: HealthCheck,
}
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// A page a process serves besides the probes and metrics.
pub struct Page {
    pub content_type: &'static str,
    pub body: String,
}

/// Answers `GET` of a path (None: not found). Called on a tokio task: it must be quick.
pub type Pages = Arc<dyn Fn(&str) -> Option<Page> + Send + Sync>;

/// Binds `addr` (port 0 allowed) and serves until the process exits; returns the bound address.
pub async fn serve_http(
    addr: &str,
    registry: SharedRegistry,
    probes: Probes,
    pages: Option<Pages>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if let Ok(mut registry) = registry.lock() {
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector::default()));
    }
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            let probes = probes.clone();
            let pages = pages.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let registry = registry.clone();
                    let probes = probes.clone();
                    let pages = pages.clone();
                    async move { Ok::<_, Infallible>(respond(req, &registry, &probes, pages.as_ref())) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!("http connection ended: {e}");
                }
            });
        }
    });
    Ok(local)
}

fn respond(
    req: Request<Incoming>,
    registry: &SharedRegistry,
    probes: &Probes,
    pages: Option<&Pages>,
) -> Response<Full<Bytes>> {
    let probe = |ok: bool, yes: &str, no: &str| {
        if ok {
            (StatusCode::OK, "text/plain", format!("{yes}\n"))
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{no}\n"),
            )
        }
    };
    let (status, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => probe((probes.healthy)(), "ok", "unhealthy"),
        ("GET", "/readyz") => probe((probes.healthy)() && (probes.ready)(), "ready", "not ready"),
        ("GET", "/metrics") => {
            let mut text = String::new();
            let encoded = match registry.lock() {
                Ok(registry) => prometheus_client::encoding::text::encode(&mut text, &registry),
                Err(_) => Err(std::fmt::Error),
            };
            match encoded {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics encoding failed\n".to_string(),
                ),
            }
        }
        ("GET", path) => match pages.and_then(|pages| pages(path)) {
            Some(page) => (StatusCode::OK, page.content_type, page.body),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
