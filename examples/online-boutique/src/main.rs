//! `boutique`: runs one Online Boutique service per process, as upstream's images do:
//! `boutique <service> [--listen ADDR]`. Each listens on `0.0.0.0:$PORT` (upstream's
//! default port when `PORT` is unset) unless `--listen` says otherwise, and finds the
//! services it calls through upstream's `*_SERVICE_ADDR` variables. `boutique frontend`
//! serves the shop's web pages (HTTP/1.1, port 8080) and `boutique loadgen` drives them
//! with simulated shoppers.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use online_boutique::{
    ad, cart, checkout,
    client::Channel,
    currency, email, frontend, loadgen, payment, productcatalog, recommendation,
    server::{Router, Server},
    shipping,
};

/// The Online Boutique services, wire-compatible with upstream's `hipstershop` API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Address to listen on (default: 0.0.0.0:$PORT, or the service's upstream port).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Service(Service),
    /// The web frontend (port 8080; PRODUCT_CATALOG, CURRENCY, CART, RECOMMENDATION,
    /// SHIPPING, CHECKOUT and AD _SERVICE_ADDR).
    Frontend,
    /// The load generator: simulated shoppers on the frontend, as upstream's Locust
    /// (FRONTEND_ADDR, USERS, RATE). Exits non-zero when a request failed.
    Loadgen(loadgen::Args),
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Service {
    /// ProductCatalogService (port 3550; EXTRA_LATENCY).
    Productcatalog,
    /// CurrencyService (port 7000).
    Currency,
    /// CartService (port 7070; REDIS_ADDR, in memory when unset).
    Cart,
    /// RecommendationService (port 8080; PRODUCT_CATALOG_SERVICE_ADDR).
    Recommendation,
    /// ShippingService (port 50051).
    Shipping,
    /// PaymentService (port 50051).
    Payment,
    /// EmailService (port 8080).
    Email,
    /// CheckoutService (port 5050; PRODUCT_CATALOG, SHIPPING, PAYMENT, EMAIL, CURRENCY and
    /// CART _SERVICE_ADDR).
    Checkout,
    /// AdService (port 9555).
    Ad,
}

impl Service {
    fn default_port(self) -> u16 {
        match self {
            Self::Productcatalog => productcatalog::DEFAULT_PORT,
            Self::Currency => currency::DEFAULT_PORT,
            Self::Cart => cart::DEFAULT_PORT,
            Self::Recommendation => recommendation::DEFAULT_PORT,
            Self::Shipping => shipping::DEFAULT_PORT,
            Self::Payment => payment::DEFAULT_PORT,
            Self::Email => email::DEFAULT_PORT,
            Self::Checkout => checkout::DEFAULT_PORT,
            Self::Ad => ad::DEFAULT_PORT,
        }
    }

    /// The service's router, from its environment.
    async fn router(self) -> Result<Router> {
        Ok(match self {
            Self::Productcatalog => {
                let config = productcatalog::Config::from_env()?;
                tracing::info!(extra_latency = ?config.extra_latency, "product catalog");
                productcatalog::router(&config)
            }
            Self::Currency => currency::router(),
            Self::Cart => {
                let store = cart::Store::from_env();
                // Redis may start after us (as in Kubernetes): report, keep going.
                if let Err(e) = store.check().await {
                    tracing::warn!(error = %e, "the cart store is not reachable yet");
                }
                cart::router(store)
            }
            Self::Recommendation => {
                let config = recommendation::Config::from_env()?;
                tracing::info!(product_catalog = %config.product_catalog, "recommendation");
                recommendation::router(&config, Channel::new())
            }
            Self::Shipping => shipping::router(),
            Self::Payment => payment::router(),
            Self::Email => email::router(),
            Self::Checkout => {
                let config = checkout::Config::from_env()?;
                tracing::info!(?config, "checkout");
                checkout::router(&config, &Channel::new())
            }
            Self::Ad => ad::router(),
        })
    }
}

/// `0.0.0.0:$PORT`, or `0.0.0.0:<default>` when `PORT` is unset.
fn listen_addr(default_port: u16) -> Result<SocketAddr> {
    let port = match std::env::var("PORT") {
        Ok(p) if !p.trim().is_empty() => p
            .trim()
            .parse::<u16>()
            .with_context(|| format!("PORT={p:?} is not a port number"))?,
        _ => default_port,
    };
    Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Service(service) => serve(service, cli.listen).await,
        Command::Frontend => serve_frontend(cli.listen).await,
        Command::Loadgen(args) => generate_load(&args).await,
    }
}

/// Serves one gRPC service until Ctrl-C.
async fn serve(service: Service, listen: Option<SocketAddr>) -> Result<()> {
    let listen = match listen {
        Some(addr) => addr,
        None => listen_addr(service.default_port())?,
    };
    let router = service
        .router()
        .await
        .with_context(|| format!("starting {}", format!("{service:?}").to_lowercase()))?;
    let server = Server::bind(listen, router).await?;
    tokio::select! {
        () = server.run() => Ok(()),
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            tracing::info!("interrupted, exiting");
            Ok(())
        }
    }
}

/// Serves the frontend until Ctrl-C.
async fn serve_frontend(listen: Option<SocketAddr>) -> Result<()> {
    let listen = match listen {
        Some(addr) => addr,
        None => listen_addr(frontend::DEFAULT_PORT)?,
    };
    let config = frontend::Config::from_env().context("starting frontend")?;
    tracing::info!(?config, "frontend");
    let frontend = frontend::Frontend::new(&config, &Channel::new());
    let server = frontend::Server::bind(listen, frontend).await?;
    tokio::select! {
        () = server.run() => Ok(()),
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            tracing::info!("interrupted, exiting");
            Ok(())
        }
    }
}

/// Generates load until a bound or Ctrl-C, then prints the summary.
async fn generate_load(args: &loadgen::Args) -> Result<()> {
    let config = args.config().context("starting loadgen")?;
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = loadgen::run(&config, stop).await;
    println!("{report}");
    match report.failures() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} requests failed", report.requests()),
    }
}
