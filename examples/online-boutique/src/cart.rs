//! `hipstershop.CartService` (upstream: C#, port 7070): shopping carts per user id, in
//! Redis when `REDIS_ADDR` is set (as upstream: a hash per user id whose `cart` field
//! holds the encoded `Cart` message, expiring after an hour without changes) or in memory
//! otherwise. Which store is used is logged at start.

use std::{collections::HashMap, sync::Arc, time::Duration};

use prost::Message as _;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::proto::hipstershop::{
    AddItemRequest, Cart, CartItem, Empty, EmptyCartRequest, GetCartRequest,
    cart_service_server::{CartService, CartServiceServer},
};

pub mod redis;

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 7070;

/// The hash field holding a user's cart, as upstream's `RedisCartStore`.
const CART_FIELD: &str = "cart";

/// How long a cart lives in Redis after its last change, as upstream.
const CART_TTL: Duration = Duration::from_secs(60 * 60);

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] redis::Error),
    /// A stored cart does not decode.
    #[error("the stored cart of {user:?} is corrupt: {source}")]
    Corrupt {
        /// The user id.
        user: String,
        /// The decoding error.
        source: prost::DecodeError,
    },
}

/// Where carts live.
#[derive(Debug, Clone)]
pub enum Store {
    /// In this process; lost at exit.
    Memory(Arc<Mutex<HashMap<String, Vec<CartItem>>>>),
    /// In Redis.
    Redis(Arc<redis::Client>),
}

/// The cart service.
#[derive(Debug, Clone)]
pub struct Carts {
    store: Store,
}

/// The generated server for the cart service over `store`.
pub fn router(store: Store) -> crate::server::Router {
    crate::server::Router::new().add_service(CartServiceServer::new(Carts { store }))
}

// === impl Store ===

impl Store {
    /// An empty in-memory store.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// A store in the Redis server at `addr` (`host:port`).
    pub fn redis(addr: impl Into<String>) -> Self {
        Self::Redis(Arc::new(redis::Client::new(addr)))
    }

    /// The store `REDIS_ADDR` asks for (in memory when unset), logged.
    pub fn from_env() -> Self {
        match std::env::var("REDIS_ADDR") {
            Ok(addr) if !addr.trim().is_empty() => {
                tracing::info!(addr = addr.trim(), "cart store: Redis (REDIS_ADDR)");
                Self::redis(addr.trim())
            }
            _ => {
                tracing::info!(
                    "cart store: in memory (REDIS_ADDR is not set); carts are lost at exit"
                );
                Self::memory()
            }
        }
    }

    /// Checks the store answers (Redis: `PING`).
    pub async fn check(&self) -> Result<(), Error> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(client) => Ok(client.ping().await?),
        }
    }

    /// The items in `user`'s cart.
    pub async fn get(&self, user: &str) -> Result<Vec<CartItem>, Error> {
        match self {
            Self::Memory(carts) => Ok(carts.lock().await.get(user).cloned().unwrap_or_default()),
            Self::Redis(client) => Ok(redis_cart(client, user).await?.items),
        }
    }

    /// Adds `quantity` of `product_id` to `user`'s cart.
    pub async fn add(&self, user: &str, product_id: &str, quantity: i32) -> Result<(), Error> {
        match self {
            Self::Memory(carts) => {
                let mut carts = carts.lock().await;
                add_item(
                    carts.entry(user.to_string()).or_default(),
                    product_id,
                    quantity,
                );
                Ok(())
            }
            Self::Redis(client) => {
                // Read-modify-write as upstream; concurrent adds to one cart may race.
                let mut cart = redis_cart(client, user).await?;
                cart.user_id = user.to_string();
                add_item(&mut cart.items, product_id, quantity);
                store_redis_cart(client, user, &cart).await
            }
        }
    }

    /// Empties `user`'s cart.
    pub async fn empty(&self, user: &str) -> Result<(), Error> {
        match self {
            Self::Memory(carts) => {
                carts.lock().await.remove(user);
                Ok(())
            }
            Self::Redis(client) => store_redis_cart(client, user, &Cart::default()).await,
        }
    }
}

fn add_item(items: &mut Vec<CartItem>, product_id: &str, quantity: i32) {
    match items.iter_mut().find(|i| i.product_id == product_id) {
        Some(item) => item.quantity = item.quantity.saturating_add(quantity),
        None => items.push(CartItem {
            product_id: product_id.to_string(),
            quantity,
        }),
    }
}

async fn redis_cart(client: &redis::Client, user: &str) -> Result<Cart, Error> {
    match client.hget(user, CART_FIELD).await? {
        Some(bytes) => Cart::decode(bytes.as_slice()).map_err(|source| Error::Corrupt {
            user: user.to_string(),
            source,
        }),
        None => Ok(Cart::default()),
    }
}

async fn store_redis_cart(client: &redis::Client, user: &str, cart: &Cart) -> Result<(), Error> {
    client.hset(user, CART_FIELD, &cart.encode_to_vec()).await?;
    client.expire(user, CART_TTL.as_secs()).await?;
    Ok(())
}

// === impl Carts ===

/// Store failures as upstream reports them.
fn unavailable(e: &Error) -> Status {
    tracing::warn!(error = %e, "cart storage failed");
    Status::failed_precondition(format!("can't access cart storage: {e}"))
}

#[tonic::async_trait]
impl CartService for Carts {
    async fn add_item(&self, request: Request<AddItemRequest>) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let item = req
            .item
            .ok_or_else(|| Status::invalid_argument("missing the item to add"))?;
        if item.product_id.is_empty() || item.quantity < 1 {
            return Err(Status::invalid_argument(
                "the item needs a product id and a positive quantity",
            ));
        }
        self.store
            .add(&req.user_id, &item.product_id, item.quantity)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Response::new(Empty {}))
    }

    async fn get_cart(&self, request: Request<GetCartRequest>) -> Result<Response<Cart>, Status> {
        let user_id = request.into_inner().user_id;
        let items = self
            .store
            .get(&user_id)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Response::new(Cart { user_id, items }))
    }

    async fn empty_cart(
        &self,
        request: Request<EmptyCartRequest>,
    ) -> Result<Response<Empty>, Status> {
        let user_id = request.into_inner().user_id;
        self.store
            .empty(&user_id)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Response::new(Empty {}))
    }
}
