//! The load generator (upstream: Locust, `loadgenerator/locustfile.py`): simulated shoppers
//! browsing the [`frontend`](crate::frontend) over HTTP/1.1, to give the mesh traffic to
//! route, secure and observe.
//!
//! Each user has its own cookie jar (so its own session and cart), opens the home page,
//! then loops over upstream's task mix — index 1, setCurrency 2, browseProduct 10,
//! addToCart 2, viewCart 3, checkout 1 — waiting a random time from the wait range between
//! tasks (1–10 s upstream). The users draw their tasks from one shuffled deck holding each
//! task as many times as its weight, reshuffled when empty: the mix is upstream's, exact
//! over every 19 tasks, so even a short run exercises every route. Redirects are followed
//! and count as part of the request that caused them, as Locust counts them.
//!
//! A run ends after `--requests` requests, after `--duration`, or when its `stop` future
//! completes (Ctrl-C in the binary); it prints a one-line [`Report`] periodically and
//! returns the final one.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tokio::task::JoinSet;

use crate::{client, frontend::form, payment};

/// The catalog's product ids, as upstream's locustfile lists them.
pub const PRODUCTS: [&str; 9] = [
    "0PUK6V6EV0",
    "1YMWWN1N4O",
    "2ZYFJ3GM2N",
    "66VCHSJNUP",
    "6E92ZMYYFZ",
    "9SIQT8TOJO",
    "L9ECAV7KIM",
    "LS4PSXUNUM",
    "OLJCESPC7Z",
];

/// The currencies `setCurrency` picks from, as upstream's locustfile.
pub const CURRENCIES: [&str; 6] = ["EUR", "USD", "JPY", "CAD", "GBP", "TRY"];

/// The most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Errors in the load generator's configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The frontend's address is not `host:port`.
    #[error(transparent)]
    Addr(#[from] client::Error),
    /// No users.
    #[error("USERS must be at least 1")]
    NoUsers,
    /// The spawn rate is not a positive number.
    #[error("RATE={0} is not a positive number of users per second")]
    Rate(f64),
    /// A wait range that does not parse.
    #[error(
        "{0:?} is not a wait range: expected seconds as MIN-MAX (e.g. 1-10, 0-0.5) or one number"
    )]
    Wait(String),
    /// A duration that does not parse.
    #[error("{0:?} is not a duration: expected e.g. 90s, 5m, 1h or 500ms")]
    Duration(String),
}

/// The `boutique loadgen` command line.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The frontend's address (host:port).
    #[arg(long, env = "FRONTEND_ADDR")]
    pub frontend_addr: String,
    /// How many users to simulate.
    #[arg(long, env = "USERS", default_value_t = 10)]
    pub users: usize,
    /// How many users to start per second.
    #[arg(long, env = "RATE", default_value_t = 1.0)]
    pub rate: f64,
    /// Stop after this many requests (default: no limit).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop after this long, e.g. 90s, 5m (default: no limit).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seconds each user waits between tasks, as MIN-MAX (upstream: 1-10).
    #[arg(long, default_value = "1-10")]
    pub wait: WaitRange,
}

/// A load generator run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The frontend's origin (`http://host:port`).
    pub frontend: Uri,
    /// How many users to simulate (at least 1).
    pub users: usize,
    /// How many users to start per second (positive).
    pub rate: f64,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The wait between a user's tasks.
    pub wait: WaitRange,
    /// Print a [`Report`] line this often while running.
    pub report_every: Option<Duration>,
}

/// The range a user's wait between tasks is drawn from, uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitRange {
    min: Duration,
    max: Duration,
}

/// A page the load generator requests, under the name its counts are reported by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `GET /`.
    Index,
    /// `POST /setCurrency`.
    SetCurrency,
    /// `GET /product/{id}`.
    Product,
    /// `POST /cart`.
    AddToCart,
    /// `GET /cart`.
    ViewCart,
    /// `POST /cart/checkout`.
    Checkout,
}

/// Requests and failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests completed.
    pub requests: u64,
    /// Of which failed: an error, or a final status other than 2xx.
    pub failures: u64,
}

/// What a run did so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The counts by route; routes not requested are absent.
    pub by_route: BTreeMap<Route, Counts>,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// Upstream's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Index,
    SetCurrency,
    BrowseProduct,
    AddToCart,
    ViewCart,
    Checkout,
}

/// What the users share.
#[derive(Debug)]
struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    frontend: Uri,
    wait: WaitRange,
    schedule: Mutex<Schedule>,
    /// Becomes true when the budget is spent (so the spawner stops at once).
    stopped: tokio::sync::watch::Sender<bool>,
    counts: Mutex<BTreeMap<Route, Counts>>,
}

/// The deck of tasks and the request budget.
#[derive(Debug)]
struct Schedule {
    deck: Vec<Task>,
    /// Requests left to reserve; `None` is unlimited.
    budget: Option<u64>,
    stopped: bool,
}

/// One simulated user.
#[derive(Debug)]
struct User {
    shared: Arc<Shared>,
    cookies: BTreeMap<String, String>,
}

// === impl Args ===

impl Args {
    /// The run the arguments describe, reporting every 10 s.
    pub fn config(&self) -> Result<Config, Error> {
        let config = Config {
            frontend: client::origin("FRONTEND_ADDR", &self.frontend_addr)?,
            users: self.users,
            rate: self.rate,
            requests: self.requests,
            duration: self.duration,
            wait: self.wait,
            report_every: Some(Duration::from_secs(10)),
        };
        config.validate()?;
        Ok(config)
    }
}

// === impl Config ===

impl Config {
    /// Checks the user count and spawn rate.
    pub fn validate(&self) -> Result<(), Error> {
        if self.users == 0 {
            return Err(Error::NoUsers);
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(Error::Rate(self.rate));
        }
        Ok(())
    }
}

// === impl WaitRange ===

impl WaitRange {
    /// No wait at all: for tests and for measuring throughput.
    pub const ZERO: Self = Self {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// A uniform draw from the range.
    fn sample(self) -> Duration {
        self.min + (self.max - self.min).mul_f64(fastrand::f64())
    }
}

impl FromStr for WaitRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Wait(s.to_string());
        let secs = |v: &str| {
            let v = v.trim().parse::<f64>().map_err(|_| invalid())?;
            Duration::try_from_secs_f64(v).map_err(|_| invalid())
        };
        let (min, max) = match s.split_once('-') {
            Some((min, max)) => (secs(min)?, secs(max)?),
            None => (secs(s)?, secs(s)?),
        };
        if min > max {
            return Err(invalid());
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for WaitRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min.as_secs_f64(), self.max.as_secs_f64())
    }
}

/// Parses `90s`, `5m`, `1h`, `500ms` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let invalid = || Error::Duration(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number = number.parse::<f64>().map_err(|_| invalid())?;
    let secs = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| invalid())
}

// === impl Route ===

impl Route {
    /// Every route, in report order.
    pub const ALL: [Self; 6] = [
        Self::Index,
        Self::SetCurrency,
        Self::Product,
        Self::AddToCart,
        Self::ViewCart,
        Self::Checkout,
    ];

    /// The route's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "GET /",
            Self::SetCurrency => "POST /setCurrency",
            Self::Product => "GET /product/{id}",
            Self::AddToCart => "POST /cart",
            Self::ViewCart => "GET /cart",
            Self::Checkout => "POST /cart/checkout",
        }
    }
}

// === impl Report ===

impl Report {
    /// All requests.
    pub fn requests(&self) -> u64 {
        self.by_route.values().map(|c| c.requests).sum()
    }

    /// All failures.
    pub fn failures(&self) -> u64 {
        self.by_route.values().map(|c| c.failures).sum()
    }
}

/// One line: totals, the rate, then `route requests/failures` for each route.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
        let rate = if secs > 0.0 {
            self.requests() as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "requests={} failures={} elapsed={secs:.1}s rate={rate:.1}/s |",
            self.requests(),
            self.failures(),
        )?;
        for (route, counts) in &self.by_route {
            write!(
                f,
                " {}={}/{}",
                route.name(),
                counts.requests,
                counts.failures
            )?;
        }
        Ok(())
    }
}

// === impl Task ===

impl Task {
    /// Upstream's weights.
    const WEIGHTS: [(Self, usize); 6] = [
        (Self::Index, 1),
        (Self::SetCurrency, 2),
        (Self::BrowseProduct, 10),
        (Self::AddToCart, 2),
        (Self::ViewCart, 3),
        (Self::Checkout, 1),
    ];

    /// How many requests the task makes.
    fn requests(self) -> u64 {
        match self {
            Self::Index | Self::SetCurrency | Self::BrowseProduct | Self::ViewCart => 1,
            Self::AddToCart => 2,
            Self::Checkout => 3,
        }
    }
}

// === impl Schedule ===

impl Schedule {
    /// Reserves `requests` from the budget; once one reservation fails, all do.
    fn reserve(&mut self, requests: u64) -> bool {
        if self.stopped {
            return false;
        }
        match &mut self.budget {
            Some(left) if *left < requests => {
                self.stopped = true;
                false
            }
            Some(left) => {
                *left -= requests;
                true
            }
            None => true,
        }
    }

    /// The next task from the deck, with its requests reserved.
    fn next_task(&mut self) -> Option<Task> {
        if self.deck.is_empty() {
            self.deck = Task::WEIGHTS
                .iter()
                .flat_map(|&(task, weight)| std::iter::repeat_n(task, weight))
                .collect();
            fastrand::shuffle(&mut self.deck);
        }
        let task = self.deck.pop().expect("refilled above");
        self.reserve(task.requests()).then_some(task)
    }
}

// === impl Shared ===

impl Shared {
    fn report(&self, started: Instant) -> Report {
        Report {
            by_route: self.counts.lock().expect("not poisoned").clone(),
            elapsed: started.elapsed(),
        }
    }

    /// Reserves `requests` from the budget.
    fn reserve(&self, requests: u64) -> bool {
        let mut schedule = self.schedule.lock().expect("not poisoned");
        let reserved = schedule.reserve(requests);
        if schedule.stopped {
            self.stopped.send_replace(true);
        }
        reserved
    }

    /// The next task, with its requests reserved; `None` once the budget is spent.
    fn next_task(&self) -> Option<Task> {
        let mut schedule = self.schedule.lock().expect("not poisoned");
        let task = schedule.next_task();
        if schedule.stopped {
            self.stopped.send_replace(true);
        }
        task
    }
}

// === impl User ===

impl User {
    /// Runs the user: the home page, then tasks until the schedule says stop.
    async fn run(mut self) {
        if !self.shared.reserve(1) {
            return;
        }
        self.index().await;
        while let Some(task) = self.shared.next_task() {
            match task {
                Task::Index => self.index().await,
                Task::SetCurrency => self.set_currency().await,
                Task::BrowseProduct => self.browse_product().await,
                Task::AddToCart => self.add_to_cart().await,
                Task::ViewCart => self.view_cart().await,
                Task::Checkout => self.checkout().await,
            }
            let wait = self.shared.wait.sample();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn index(&mut self) {
        self.request(Route::Index, Method::GET, "/", None).await;
    }

    async fn set_currency(&mut self) {
        let currency = CURRENCIES[fastrand::usize(..CURRENCIES.len())];
        let body = form::encode([("currency_code", currency)]);
        self.request(Route::SetCurrency, Method::POST, "/setCurrency", Some(body))
            .await;
    }

    async fn browse_product(&mut self) {
        let path = format!("/product/{}", random_product());
        self.request(Route::Product, Method::GET, &path, None).await;
    }

    async fn view_cart(&mut self) {
        self.request(Route::ViewCart, Method::GET, "/cart", None)
            .await;
    }

    /// Views a product and adds it to the cart.
    async fn add_to_cart(&mut self) {
        let product = random_product();
        let path = format!("/product/{product}");
        self.request(Route::Product, Method::GET, &path, None).await;
        let quantity = fastrand::u32(1..=10).to_string();
        let body = form::encode([("product_id", product), ("quantity", quantity.as_str())]);
        self.request(Route::AddToCart, Method::POST, "/cart", Some(body))
            .await;
    }

    /// Adds a product, then checks out with made-up but valid details.
    async fn checkout(&mut self) {
        self.add_to_cart().await;
        let year = payment::current_year_month().0 + 1;
        let n = fastrand::u32(1..10_000);
        let fields = [
            ("email", format!("shopper{n}@example.com")),
            ("street_address", format!("{n} Main Street")),
            ("zip_code", fastrand::u32(10_000..100_000).to_string()),
            (
                "city",
                pick(&["Springfield", "Riverside", "Fairview", "Madison"]),
            ),
            ("state", pick(&["CA", "NY", "TX", "WA", "OR"])),
            (
                "country",
                pick(&["United States", "Canada", "France", "Japan"]),
            ),
            ("credit_card_number", visa_number()),
            (
                "credit_card_expiration_month",
                fastrand::u32(1..=12).to_string(),
            ),
            (
                "credit_card_expiration_year",
                fastrand::i32(year..=year + 70).to_string(),
            ),
            ("credit_card_cvv", fastrand::u32(100..1000).to_string()),
        ];
        let body = form::encode(fields.iter().map(|(k, v)| (*k, v.as_str())));
        self.request(Route::Checkout, Method::POST, "/cart/checkout", Some(body))
            .await;
    }

    /// Sends one request (following redirects) and counts it under `route`.
    async fn request(&mut self, route: Route, method: Method, path: &str, form: Option<String>) {
        let result = self.exchange(method, path, form).await;
        if let Err(e) = &result {
            tracing::warn!(route = route.name(), path, error = %e, "request failed");
        }
        let mut counts = self.shared.counts.lock().expect("not poisoned");
        let counts = counts.entry(route).or_default();
        counts.requests += 1;
        counts.failures += u64::from(result.is_err());
    }

    async fn exchange(
        &mut self,
        mut method: Method,
        path: &str,
        mut form: Option<String>,
    ) -> Result<(), String> {
        let mut path = path.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri = format!(
                "{}{}",
                self.shared.frontend.to_string().trim_end_matches('/'),
                path
            );
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if !self.cookies.is_empty() {
                let cookies: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                req = req.header(header::COOKIE, cookies.join("; "));
            }
            if form.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let body = form
                .take()
                .map_or_else(Full::default, |f| Full::new(Bytes::from(f)));
            let req = req
                .body(body)
                .map_err(|e| format!("building the request: {e}"))?;
            let response = self
                .shared
                .client
                .request(req)
                .await
                .map_err(|e| format!("{method} {path}: {}", error_chain(&e)))?;
            for value in response.headers().get_all(header::SET_COOKIE) {
                self.store_cookie(value);
            }
            let status = response.status();
            let location = response.headers().get(header::LOCATION).cloned();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
            if status.is_success() {
                return Ok(());
            }
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                return Err(format!("{method} {path}: {status}"));
            };
            path = location_path(&location)
                .ok_or_else(|| format!("{method} {path}: {status} to {location:?}"))?;
            if status != StatusCode::TEMPORARY_REDIRECT && status != StatusCode::PERMANENT_REDIRECT
            {
                method = Method::GET;
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    fn store_cookie(&mut self, value: &HeaderValue) {
        let Ok(value) = value.to_str() else { return };
        let mut attrs = value.split(';');
        let Some((name, value)) = attrs.next().and_then(|p| p.trim().split_once('=')) else {
            return;
        };
        let expired = attrs.any(|a| {
            a.trim().split_once('=').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
            })
        });
        if expired || value.is_empty() {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }
}

/// Runs the load described by `config` until a bound is reached or `stop` completes, and
/// returns what it did.
pub async fn run(config: &Config, stop: impl Future<Output = ()>) -> Report {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let shared = Arc::new(Shared {
        client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
        frontend: config.frontend.clone(),
        wait: config.wait,
        schedule: Mutex::new(Schedule {
            deck: Vec::new(),
            budget: config.requests,
            stopped: false,
        }),
        stopped: tokio::sync::watch::Sender::new(false),
        counts: Mutex::new(BTreeMap::new()),
    });
    let started = Instant::now();
    tracing::info!(
        frontend = %config.frontend,
        users = config.users,
        rate = config.rate,
        requests = ?config.requests,
        duration = ?config.duration,
        wait = %config.wait,
        "generating load"
    );

    let spawn_every = Duration::from_secs_f64(1.0 / config.rate);
    let users = config.users;
    let spawner_shared = shared.clone();
    let mut spawner = tokio::spawn(async move {
        let mut running = JoinSet::new();
        let mut stopped = spawner_shared.stopped.subscribe();
        for i in 0..users {
            if i > 0 {
                tokio::select! {
                    () = tokio::time::sleep(spawn_every) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            if *stopped.borrow() {
                break;
            }
            let user = User {
                shared: spawner_shared.clone(),
                cookies: BTreeMap::new(),
            };
            running.spawn(user.run());
        }
        while running.join_next().await.is_some() {}
    });

    let deadline = async {
        match config.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut ticker = config.report_every.map(|every| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    tokio::pin!(stop, deadline);
    let finished = loop {
        tokio::select! {
            _ = &mut spawner => break true,
            () = &mut stop => break false,
            () = &mut deadline => break false,
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                println!("{}", shared.report(started));
            }
        }
    };
    if !finished {
        // Aborting the spawner drops its JoinSet, which aborts the users.
        spawner.abort();
        let _ = spawner.await;
    }
    shared.report(started)
}

/// `e` and its sources: hyper's errors say little at the top ("client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn random_product() -> &'static str {
    PRODUCTS[fastrand::usize(..PRODUCTS.len())]
}

fn pick(choices: &[&str]) -> String {
    choices[fastrand::usize(..choices.len())].to_string()
}

/// A random 16-digit VISA number with a valid Luhn check digit.
fn visa_number() -> String {
    let mut digits: Vec<u32> = std::iter::once(4)
        .chain((0..14).map(|_| fastrand::u32(0..10)))
        .collect();
    // The check digit makes the Luhn sum a multiple of 10; doubling starts at the digit
    // left of it.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits
        .into_iter()
        .map(|d| char::from_digit(d, 10).expect("a digit"))
        .collect()
}

/// The path (and query) a `Location` points to on the frontend.
fn location_path(location: &HeaderValue) -> Option<String> {
    let uri: Uri = location.to_str().ok()?.parse().ok()?;
    let path = uri.path_and_query()?.as_str();
    path.starts_with('/').then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visa_numbers_pass_payment_validation() {
        for _ in 0..200 {
            let number = visa_number();
            assert!(payment::luhn_valid(&number), "{number}");
            assert_eq!(payment::card_type(&number), payment::CardType::Visa);
        }
    }

    #[test]
    fn the_deck_keeps_upstreams_weights() {
        let mut schedule = Schedule {
            deck: Vec::new(),
            budget: None,
            stopped: false,
        };
        let tasks: Vec<Task> = (0..19 * 3).map(|_| schedule.next_task().unwrap()).collect();
        for (task, weight) in Task::WEIGHTS {
            assert_eq!(
                tasks.iter().filter(|t| **t == task).count(),
                weight * 3,
                "{task:?}"
            );
        }
    }

    #[test]
    fn the_budget_stops_every_user_once_spent() {
        let mut schedule = Schedule {
            deck: vec![Task::Checkout, Task::Index],
            budget: Some(3),
            stopped: false,
        };
        assert_eq!(schedule.next_task(), Some(Task::Index));
        // Three requests are needed, two are left: no checkout, and nothing after it.
        assert_eq!(schedule.next_task(), None);
        assert!(!schedule.reserve(1));
    }

    #[test]
    fn parses_waits_and_durations() {
        let wait: WaitRange = "1-10".parse().unwrap();
        assert_eq!(
            (wait.min, wait.max),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
        assert_eq!("0".parse::<WaitRange>().unwrap(), WaitRange::ZERO);
        let sample = "0.5-0.75".parse::<WaitRange>().unwrap().sample();
        assert!((Duration::from_millis(500)..=Duration::from_millis(750)).contains(&sample));
        for bad in ["", "10-1", "a-b", "-1"] {
            assert!(bad.parse::<WaitRange>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn reports_fit_on_one_line() {
        let mut report = Report {
            elapsed: Duration::from_secs(2),
            ..Report::default()
        };
        report.by_route.insert(
            Route::Index,
            Counts {
                requests: 3,
                failures: 1,
            },
        );
        report.by_route.insert(
            Route::Checkout,
            Counts {
                requests: 1,
                failures: 0,
            },
        );
        assert_eq!(
            report.to_string(),
            "requests=4 failures=1 elapsed=2.0s rate=2.0/s | GET /=3/1 POST /cart/checkout=1/0"
        );
    }
}
