//! What the demo runs and where: the Online Boutique's services, one loopback address
//! per "pod", and the local-mode config that describes them to mesh-control.
//!
//! Every pod (an application process and its sidecar) gets its own address in
//! `127.<net>.0.0/24`, so each sidecar can listen on the standard ports (mesh inbound
//! 15008, admin 15000, metrics 15020, health 15021) and each application on its upstream
//! port, as in a cluster: mesh-control is `.1`, the ingress gateway `.2`, the pods `.10`
//! and up. An application reaches the services it calls through its sidecar's explicit
//! `--upstream` listeners on its own address, one port per service (`15100 + index`),
//! named by the usual `*_SERVICE_ADDR` variables.
//!
//! [`Plan::config_files`] writes the local-mode config (v1 Services with virtual IPs,
//! WorkloadEntries, the Gateway and its VirtualService, productcatalogservice's routes) —
//! everything is pure, so tests check it with the same loader mesh-control uses.

use std::net::{Ipv4Addr, SocketAddr};

/// The namespace of the shop.
pub const NAMESPACE: &str = "default";
/// The gateway's namespace, service account and pod name (as `meshctl install` has it).
pub const GATEWAY_NAMESPACE: &str = "mesh-system";
/// The gateway's service account and pod name.
pub const GATEWAY_NAME: &str = "mesh-ingressgateway";
/// The file of the gateway's config in the config directory; `gateway-api.yaml` can
/// replace it.
pub const GATEWAY_FILE: &str = "gateway.yaml";
/// The file of productcatalogservice's routes in the config directory; the canary
/// replaces it.
pub const ROUTES_FILE: &str = "productcatalogservice-routes.yaml";
/// The sidecars' mesh inbound port.
pub const MESH_PORT: u16 = 15008;
/// The proxies' admin port.
pub const ADMIN_PORT: u16 = 15000;
/// The proxies' metrics port.
pub const METRICS_PORT: u16 = 15020;
/// The proxies' health port.
pub const HEALTH_PORT: u16 = 15021;
/// mesh-control's discovery port.
pub const DISCOVERY_PORT: u16 = 15012;
/// mesh-control's debug port.
pub const DEBUG_PORT: u16 = 15014;
/// The first port of the explicit upstream listeners.
const UPSTREAM_BASE: u16 = 15100;

/// How a pod's application is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppCommand {
    /// `boutique <subcommand>`.
    Boutique(&'static str),
    /// `redis-server` (the cart's store).
    Redis,
}

/// One service of the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The Service's name, and the workloads' `app` label and service account.
    pub name: &'static str,
    /// The Service port.
    pub port: u16,
    /// Where the application listens.
    pub target_port: u16,
    /// The Service port's name (`grpc`, `http`, `tcp-redis`: the protocol).
    pub port_name: &'static str,
    /// The variable its clients find it by.
    pub env: &'static str,
    /// The application.
    pub command: AppCommand,
    /// The services it calls.
    pub calls: &'static [&'static str],
}

/// The shop, as upstream's manifests: names, ports, variables and who calls whom.
pub const COMPONENTS: &[Component] = &[
    component(
        "productcatalogservice",
        3550,
        3550,
        "PRODUCT_CATALOG_SERVICE_ADDR",
        "productcatalog",
        &[],
    ),
    component(
        "currencyservice",
        7000,
        7000,
        "CURRENCY_SERVICE_ADDR",
        "currency",
        &[],
    ),
    component(
        "cartservice",
        7070,
        7070,
        "CART_SERVICE_ADDR",
        "cart",
        &["redis-cart"],
    ),
    component(
        "recommendationservice",
        8080,
        8080,
        "RECOMMENDATION_SERVICE_ADDR",
        "recommendation",
        &["productcatalogservice"],
    ),
    component(
        "shippingservice",
        50051,
        50051,
        "SHIPPING_SERVICE_ADDR",
        "shipping",
        &[],
    ),
    component(
        "paymentservice",
        50051,
        50051,
        "PAYMENT_SERVICE_ADDR",
        "payment",
        &[],
    ),
    component(
        "emailservice",
        5000,
        8080,
        "EMAIL_SERVICE_ADDR",
        "email",
        &[],
    ),
    component(
        "checkoutservice",
        5050,
        5050,
        "CHECKOUT_SERVICE_ADDR",
        "checkout",
        &[
            "productcatalogservice",
            "shippingservice",
            "paymentservice",
            "emailservice",
            "currencyservice",
            "cartservice",
        ],
    ),
    component("adservice", 9555, 9555, "AD_SERVICE_ADDR", "ad", &[]),
    Component {
        port_name: "http",
        ..component(
            "frontend",
            80,
            8080,
            "FRONTEND_ADDR",
            "frontend",
            &[
                "productcatalogservice",
                "currencyservice",
                "cartservice",
                "recommendationservice",
                "shippingservice",
                "checkoutservice",
                "adservice",
            ],
        )
    },
    Component {
        name: "redis-cart",
        port: 6379,
        target_port: 6379,
        port_name: "tcp-redis",
        env: "REDIS_ADDR",
        command: AppCommand::Redis,
        calls: &[],
    },
];

const fn component(
    name: &'static str,
    port: u16,
    target_port: u16,
    env: &'static str,
    subcommand: &'static str,
    calls: &'static [&'static str],
) -> Component {
    Component {
        name,
        port,
        target_port,
        port_name: "grpc",
        env,
        command: AppCommand::Boutique(subcommand),
        calls,
    }
}

impl Component {
    /// The Service's cluster-local name.
    pub fn fqdn(&self) -> String {
        format!("{}.{NAMESPACE}.svc.cluster.local", self.name)
    }

    /// The port of this service's upstream listener in its clients' sidecars.
    fn upstream_port(&self) -> u16 {
        let index = COMPONENTS
            .iter()
            .position(|c| c.name == self.name)
            .expect("components are from COMPONENTS");
        UPSTREAM_BASE + u16::try_from(index).expect("a few components")
    }
}

fn lookup(name: &str) -> &'static Component {
    COMPONENTS
        .iter()
        .find(|c| c.name == name)
        .expect("calls name components")
}

/// One "pod": an application and its sidecar on their own loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The WorkloadEntry's and the proxy's pod name, e.g. `frontend-v1`.
    pub name: String,
    /// What it runs.
    pub component: &'static Component,
    /// The `version` label.
    pub version: &'static str,
    /// Its address on this machine: the sidecar's admin, metrics and health ports and the
    /// application's port answer here (in transparent mode, forwarded into the pod).
    pub ip: Ipv4Addr,
    /// Its address in the mesh, the WorkloadEntry's: `ip` in explicit mode, the network
    /// namespace's address in transparent mode.
    pub cluster_ip: Ipv4Addr,
    /// More environment for the application (`EXTRA_LATENCY` of the slow canary).
    pub extra_env: Vec<(&'static str, &'static str)>,
}

impl Pod {
    /// Where its application listens.
    pub fn app_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.component.target_port))
    }

    /// Its sidecar's metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, METRICS_PORT))
    }

    /// Its sidecar's health address.
    pub fn health_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HEALTH_PORT))
    }
}

/// The whole demo's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The second octet of the loopback network.
    pub net: u8,
    /// Whether the cart keeps its carts in Redis (`redis-server` found).
    pub redis: bool,
    /// Where the gateway serves the shop.
    pub gateway: SocketAddr,
    /// The pods, in start order.
    pub pods: Vec<Pod>,
}

/// One generated file: its name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The file name.
    pub name: &'static str,
    /// The YAML.
    pub text: String,
}

impl Plan {
    /// The layout on `127.<net>.0.0/24`, the gateway serving on `gateway`, with or
    /// without Redis.
    pub fn new(net: u8, gateway: SocketAddr, redis: bool) -> Self {
        let mut pods = Vec::new();
        let mut host = 10u8;
        let mut add = |component: &'static Component, version, extra_env| {
            pods.push(Pod {
                name: format!("{}-{version}", component.name),
                component,
                version,
                ip: Ipv4Addr::new(127, net, 0, host),
                cluster_ip: Ipv4Addr::new(127, net, 0, host),
                extra_env,
            });
            host += 1;
        };
        for c in COMPONENTS {
            if c.command == AppCommand::Redis && !redis {
                continue;
            }
            add(c, "v1", Vec::new());
        }
        // The canary: slower, so its share shows in the latency columns.
        add(
            lookup("productcatalogservice"),
            "v2",
            vec![("EXTRA_LATENCY", "50ms")],
        );
        Self {
            net,
            redis,
            gateway,
            pods,
        }
    }

    /// mesh-control's discovery address.
    pub fn discovery(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(127, self.net, 0, 1), DISCOVERY_PORT))
    }

    /// mesh-control's debug address.
    pub fn debug(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(127, self.net, 0, 1), DEBUG_PORT))
    }

    /// The gateway proxy's own address (admin, metrics, health).
    pub fn gateway_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net, 0, 2)
    }

    /// The services that run (Redis only with `redis`).
    pub fn components(&self) -> impl Iterator<Item = &'static Component> + '_ {
        COMPONENTS
            .iter()
            .filter(|c| self.redis || c.command != AppCommand::Redis)
    }

    /// The services `pod`'s application calls (Redis only when it runs).
    pub fn calls(&self, pod: &Pod) -> Vec<&'static Component> {
        pod.component
            .calls
            .iter()
            .map(|name| lookup(name))
            .filter(|c| self.redis || c.command != AppCommand::Redis)
            .collect()
    }

    /// `pod`'s sidecar's explicit upstream listeners, as `--upstream` values, and the
    /// environment that points its application at them.
    pub fn upstreams(&self, pod: &Pod) -> (Vec<String>, Vec<(String, String)>) {
        let mut flags = Vec::new();
        let mut env = Vec::new();
        for c in self.calls(pod) {
            let listen = SocketAddr::from((pod.ip, c.upstream_port()));
            flags.push(format!("{listen}={}:{}", c.fqdn(), c.port));
            env.push((c.env.to_owned(), listen.to_string()));
        }
        (flags, env)
    }

    /// The Service's virtual IP (`clusterIP`), which a captured application dials.
    pub fn vip(&self, component: &Component) -> Ipv4Addr {
        let index = self
            .components()
            .position(|c| c.name == component.name)
            .expect("a component of the plan");
        Ipv4Addr::new(
            10,
            96,
            0,
            10 + u8::try_from(index).expect("a few components"),
        )
    }

    /// The environment that points `pod`'s application at the Service VIPs of what it
    /// calls (transparent mode: its sidecar captures the connections).
    pub fn service_env(&self, pod: &Pod) -> Vec<(String, String)> {
        self.calls(pod)
            .into_iter()
            .map(|c| {
                let vip = SocketAddr::from((self.vip(c), c.port));
                (c.env.to_owned(), vip.to_string())
            })
            .collect()
    }

    /// Moves every pod into the mesh at `cluster_ip(pod name)` (transparent mode); the
    /// addresses on this machine stay.
    pub fn place(&mut self, cluster_ip: impl Fn(&str) -> Ipv4Addr) {
        for pod in &mut self.pods {
            pod.cluster_ip = cluster_ip(&pod.name);
        }
    }

    /// The config directory's files.
    pub fn config_files(&self) -> Vec<File> {
        let services: Vec<String> = self.components().map(|c| service(c, self.vip(c))).collect();
        let workloads: Vec<String> = self.pods.iter().map(workload_entry).collect();
        vec![
            File {
                name: "services.yaml",
                text: services.join("---\n"),
            },
            File {
                name: "workloads.yaml",
                text: workloads.join("---\n"),
            },
            File {
                name: GATEWAY_FILE,
                text: GATEWAY.to_owned(),
            },
            File {
                name: ROUTES_FILE,
                text: routes(100, 0),
            },
        ]
    }
}

fn service(c: &Component, vip: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  clusterIP: {vip}
  selector:
    app: {name}
  ports:
  - name: {port_name}
    port: {port}
    targetPort: {target_port}
",
        name = c.name,
        port_name = c.port_name,
        port = c.port,
        target_port = c.target_port,
    )
}

fn workload_entry(pod: &Pod) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  address: {ip}
  labels:
    app: {app}
    version: {version}
  serviceAccount: {app}
",
        name = pod.name,
        ip = pod.cluster_ip,
        app = pod.component.name,
        version = pod.version,
    )
}

/// The shop through the ingress gateway (as `examples/online-boutique/gateway.yaml`).
const GATEWAY: &str =
    "# The shop through the ingress gateway: every host on port 80 goes to the frontend.
apiVersion: networking.mesh.dev/v1alpha1
kind: Gateway
metadata:
  name: frontend-gateway
  namespace: default
spec:
  selector:
    mesh: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"*\"
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata:
  name: frontend-ingress
  namespace: default
spec:
  hosts:
  - \"*\"
  gateways:
  - frontend-gateway
  http:
  - route:
    - destination:
        host: frontend
        port:
          number: 80
";

/// The shop through the ingress gateway with Gateway API resources:
/// `examples/online-boutique/gateway-api.yaml` itself, a `Gateway` of class `mesh` and an
/// `HTTPRoute` to the frontend. It can replace [`GATEWAY`] in the config directory.
pub const GATEWAY_API: &str = include_str!("../../../examples/online-boutique/gateway-api.yaml");

/// The 90/10 canary with Gateway API resources (GAMMA):
/// `examples/online-boutique/canary-90-10-gateway-api.yaml` itself, a Service per version
/// and a `GRPCRoute` attached to productcatalogservice that splits its requests by weight.
/// It can replace [`routes`] in the config directory.
pub const CANARY_GATEWAY_API: &str =
    include_str!("../../../examples/online-boutique/canary-90-10-gateway-api.yaml");

/// productcatalogservice's subsets and a `v1`/`v2` weighted route.
pub fn routes(v1: u32, v2: u32) -> String {
    format!(
        "# productcatalogservice: subsets by version, {v1} % to v1 and {v2} % to v2.
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata:
  name: productcatalogservice
  namespace: {NAMESPACE}
spec:
  host: productcatalogservice
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata:
  name: productcatalogservice
  namespace: {NAMESPACE}
spec:
  hosts:
  - productcatalogservice
  http:
  - route:
    - destination:
        host: productcatalogservice
        subset: v1
      weight: {v1}
    - destination:
        host: productcatalogservice
        subset: v2
      weight: {v2}
"
    )
}
