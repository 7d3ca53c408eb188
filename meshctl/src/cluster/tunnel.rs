//! Byte streams to a pod's port: what `check` uses to reach mesh-control's webhook (15017)
//! and debug API (15014).
//!
//! [`Dial`] abstracts how: [`PortForward`] opens a port-forward through the API server as
//! `kubectl port-forward` does (the `control::kubernetes` machinery); tests dial servers on
//! 127.0.0.1 instead, since a websocket upgrade cannot travel through a `tower-test` mock.

use crate::control::kubernetes::{self, Forward, Stream};

/// Opens byte streams to pods' ports.
pub trait Dial {
    /// A stream to `port` of pod `namespace/pod`.
    fn dial(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> impl Future<Output = Result<Tunnel, kubernetes::Error>>;
}

/// An open stream to a pod's port, and the port-forward carrying it (if any), which must
/// live as long as the stream is used.
pub struct Tunnel {
    stream: Box<dyn Stream>,
    forward: Option<Forward>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.forward {
            Some(forward) => write!(f, "Tunnel({forward:?})"),
            None => f.write_str("Tunnel(direct)"),
        }
    }
}

impl Tunnel {
    /// A stream that needs nothing kept alive (a TCP connection).
    pub fn direct(stream: impl Stream) -> Self {
        Self {
            stream: Box::new(stream),
            forward: None,
        }
    }

    /// A stream carried by a port-forward.
    pub fn forwarded(forward: Forward, stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            forward: Some(forward),
        }
    }

    /// Runs `use_stream` on the stream until it finishes, or the port-forward reports that
    /// it failed (nothing listens on the port, the pod went away), whichever is first.
    pub async fn run<T, F>(
        self,
        use_stream: impl FnOnce(Box<dyn Stream>) -> F,
    ) -> Result<T, kubernetes::Error>
    where
        F: Future<Output = T>,
    {
        match self.forward {
            Some(mut forward) => forward.guard(use_stream(self.stream)).await,
            None => Ok(use_stream(self.stream).await),
        }
    }
}

/// Dials through a Kubernetes port-forward.
#[derive(Clone)]
pub struct PortForward {
    client: kube::Client,
}

impl std::fmt::Debug for PortForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortForward")
    }
}

impl PortForward {
    /// Port-forwards with `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl Dial for PortForward {
    async fn dial(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<Tunnel, kubernetes::Error> {
        let (forward, stream) =
            kubernetes::port_forward(&self.client, namespace, pod, port).await?;
        Ok(Tunnel::forwarded(forward, stream))
    }
}
