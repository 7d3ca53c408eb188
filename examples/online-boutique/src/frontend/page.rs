//! The frontend's HTML: one function per page, written with `format!` over [`escape`]d
//! values. Everything that comes from the user (cookies, forms) or from a backend (product
//! names, ad texts, error messages) goes through [`escape`] before it reaches the page; the
//! layout's own markup is the only unescaped text.

use std::fmt::Write as _;

use crate::{
    money,
    proto::hipstershop::{Ad, Money, OrderResult, Product},
};

/// What every page's header and footer show.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chrome<'a> {
    /// The currencies offered in the selector.
    pub(super) currencies: &'a [String],
    /// The session's currency.
    pub(super) currency: &'a str,
    /// The number of items in the cart (sum of quantities).
    pub(super) cart_size: i64,
    /// The session id, shown in the footer as upstream does.
    pub(super) session_id: &'a str,
    /// The trace the request belongs to, shown in the footer.
    pub(super) trace_id: u128,
}

/// One line of the cart page.
#[derive(Debug, Clone)]
pub(super) struct CartLine {
    /// The product.
    pub(super) product: Product,
    /// How many.
    pub(super) quantity: i32,
    /// The line's price (unit price × quantity) in the session currency.
    pub(super) price: Money,
}

/// The priced contents of a non-empty cart.
#[derive(Debug, Clone)]
pub(super) struct CartSummary {
    /// The lines.
    pub(super) lines: Vec<CartLine>,
    /// The shipping quote in the session currency.
    pub(super) shipping: Money,
    /// Lines plus shipping.
    pub(super) total: Money,
}

/// Escapes `s` for HTML text and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `m` for people, escaped (the currency code comes from the user's cookie).
fn price(m: &Money) -> String {
    escape(&money::display(m))
}

/// The whole document around `main`.
fn layout(title: &str, chrome: Option<&Chrome<'_>>, main: &str) -> String {
    let header = chrome.map_or_else(String::new, |c| {
        let mut options = String::new();
        for code in c.currencies {
            let selected = if code == c.currency { " selected" } else { "" };
            let code = escape(code);
            let _ = write!(
                options,
                r#"<option value="{code}"{selected}>{code}</option>"#
            );
        }
        format!(
            r#"<form class="currency" method="post" action="/setCurrency">
<select name="currency_code" aria-label="Currency" onchange="this.form.submit()">{options}</select>
<noscript><button type="submit">Set</button></noscript></form>
<span class="current-currency">{currency}</span>
<a class="cart-link" href="/cart">Cart (<span class="cart-size">{size}</span>)</a>"#,
            currency = escape(c.currency),
            size = c.cart_size,
        )
    });
    let footer = chrome.map_or_else(String::new, |c| {
        format!(
            "<p>session-id: {session} — trace-id: {trace:032x}</p>",
            session = escape(c.session_id),
            trace = c.trace_id,
        )
    });
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | Online Boutique</title>
<link rel="stylesheet" href="/static/styles.css">
</head>
<body>
<header><a class="brand" href="/">Online Boutique</a>{header}</header>
<main>
{main}
</main>
<footer><p>This website is hosted for demo purposes only. It is not an actual shop.</p>{footer}</footer>
</body>
</html>
"#,
        title = escape(title),
    )
}

fn ad_banner(ad: Option<&Ad>) -> String {
    ad.map_or_else(String::new, |ad| {
        format!(
            r#"<aside class="ad"><strong>Ad</strong> <a href="{url}">{text}</a></aside>"#,
            url = escape(&ad.redirect_url),
            text = escape(&ad.text),
        )
    })
}

fn recommendations_section(products: &[Product]) -> String {
    if products.is_empty() {
        return String::new();
    }
    let mut items = String::new();
    for p in products {
        let _ = write!(
            items,
            r#"<li><a href="/product/{id}">{name}</a></li>"#,
            id = escape(&p.id),
            name = escape(&p.name),
        );
    }
    format!(
        r#"<section class="recommendations"><h2>You May Also Like</h2><ul>{items}</ul></section>"#
    )
}

/// `GET /`: every product with its price in the session currency.
pub(super) fn home(chrome: &Chrome<'_>, products: &[(Product, Money)], ad: Option<&Ad>) -> String {
    let mut cards = String::new();
    for (p, cost) in products {
        let _ = write!(
            cards,
            r#"<li class="product"><a href="/product/{id}"><span class="name">{name}</span></a> <span class="price">{price}</span></li>"#,
            id = escape(&p.id),
            name = escape(&p.name),
            price = price(cost),
        );
    }
    let main = format!(
        r#"<h1>Hot Products</h1>
<ul class="products">{cards}</ul>
{ad}"#,
        ad = ad_banner(ad),
    );
    layout("Home", Some(chrome), &main)
}

/// `GET /product/{id}`: the product, a form to add it to the cart, recommendations and an ad.
pub(super) fn product(
    chrome: &Chrome<'_>,
    product: &Product,
    cost: &Money,
    recommendations: &[Product],
    ad: Option<&Ad>,
) -> String {
    let mut quantities = String::new();
    for q in [1, 2, 3, 4, 5, 10] {
        let _ = write!(quantities, r#"<option value="{q}">{q}</option>"#);
    }
    let main = format!(
        r#"<article class="product-detail">
<h1>{name}</h1>
<p class="price">{price}</p>
<p class="description">{description}</p>
<p class="categories">{categories}</p>
<form method="post" action="/cart">
<input type="hidden" name="product_id" value="{id}">
<label>Quantity <select name="quantity">{quantities}</select></label>
<button type="submit">Add to Cart</button>
</form>
</article>
{recommendations}
{ad}"#,
        name = escape(&product.name),
        price = price(cost),
        description = escape(&product.description),
        categories = escape(&product.categories.join(", ")),
        id = escape(&product.id),
        recommendations = recommendations_section(recommendations),
        ad = ad_banner(ad),
    );
    layout(&product.name, Some(chrome), &main)
}

/// `GET /cart`: the items, shipping and total, and the checkout form with upstream's
/// default values (the card expires in January of `year + 1`, as upstream preselects).
pub(super) fn cart(
    chrome: &Chrome<'_>,
    summary: Option<&CartSummary>,
    recommendations: &[Product],
    year: i32,
) -> String {
    let Some(summary) = summary else {
        let main = format!(
            r#"<h1>Your shopping cart is empty!</h1>
<p>Items you add to your shopping cart will appear here.</p>
<p><a href="/">Continue Shopping</a></p>
{}"#,
            recommendations_section(recommendations)
        );
        return layout("Shopping Cart", Some(chrome), &main);
    };
    let mut lines = String::new();
    for line in &summary.lines {
        let _ = write!(
            lines,
            r#"<tr class="cart-item"><td><a href="/product/{id}">{name}</a></td><td class="quantity">{quantity}</td><td class="price">{price}</td></tr>"#,
            id = escape(&line.product.id),
            name = escape(&line.product.name),
            quantity = line.quantity,
            price = price(&line.price),
        );
    }
    let mut months = String::new();
    for m in 1..=12 {
        let selected = if m == 1 { " selected" } else { "" };
        let _ = write!(months, r#"<option value="{m}"{selected}>{m}</option>"#);
    }
    let mut years = String::new();
    for y in year..year + 5 {
        let selected = if y == year + 1 { " selected" } else { "" };
        let _ = write!(years, r#"<option value="{y}"{selected}>{y}</option>"#);
    }
    let main = format!(
        r#"<h1>Cart ({size})</h1>
<form method="post" action="/cart/empty"><button type="submit">Empty Cart</button></form>
<table class="cart">
<thead><tr><th>Product</th><th>Quantity</th><th>Price</th></tr></thead>
<tbody>{lines}</tbody>
<tfoot>
<tr class="shipping"><td colspan="2">Shipping</td><td class="price">{shipping}</td></tr>
<tr class="total"><td colspan="2">Total</td><td class="price">{total}</td></tr>
</tfoot>
</table>
<form class="checkout" method="post" action="/cart/checkout">
<h2>Shipping Address</h2>
<label>E-mail Address <input type="email" name="email" value="someone@example.com" required></label>
<label>Street Address <input type="text" name="street_address" value="1600 Amphitheatre Parkway" required></label>
<label>Zip Code <input type="text" name="zip_code" value="94043" required pattern="\d{{4,5}}"></label>
<label>City <input type="text" name="city" value="Mountain View" required></label>
<label>State <input type="text" name="state" value="CA" required></label>
<label>Country <input type="text" name="country" value="United States" required></label>
<h2>Payment Method</h2>
<label>Credit Card Number <input type="text" name="credit_card_number" value="4432-8015-6152-0454" required></label>
<label>Month <select name="credit_card_expiration_month">{months}</select></label>
<label>Year <select name="credit_card_expiration_year">{years}</select></label>
<label>CVV <input type="password" name="credit_card_cvv" value="672" required pattern="\d{{3}}"></label>
<button type="submit">Place Order</button>
</form>
{recommendations}"#,
        size = chrome.cart_size,
        shipping = price(&summary.shipping),
        total = price(&summary.total),
        recommendations = recommendations_section(recommendations),
    );
    layout("Shopping Cart", Some(chrome), &main)
}

/// `POST /cart/checkout`: the order confirmation.
pub(super) fn order(
    chrome: &Chrome<'_>,
    order: &OrderResult,
    total: &Money,
    recommendations: &[Product],
) -> String {
    let main = format!(
        r#"<h1>Your order is complete!</h1>
<p>We've sent you a confirmation email.</p>
<dl class="order">
<dt>Confirmation #</dt><dd class="order-id">{order_id}</dd>
<dt>Tracking #</dt><dd class="tracking-id">{tracking_id}</dd>
<dt>Total Paid</dt><dd class="total-paid">{total}</dd>
</dl>
<p><a href="/">Continue Shopping</a></p>
{recommendations}"#,
        order_id = escape(&order.order_id),
        tracking_id = escape(&order.shipping_tracking_id),
        total = price(total),
        recommendations = recommendations_section(recommendations),
    );
    layout("Order Confirmation", Some(chrome), &main)
}

/// An error page: the status and what went wrong.
pub(super) fn error(status: http::StatusCode, message: &str, trace_id: u128) -> String {
    let main = format!(
        r#"<h1>Uh, oh!</h1>
<p>Something has failed. Below are some details for debugging.</p>
<p class="status">HTTP Status: {code} {reason}</p>
<pre class="error">{message}</pre>
<p class="trace">trace-id: {trace_id:032x}</p>"#,
        code = status.as_u16(),
        reason = status.canonical_reason().unwrap_or(""),
        message = escape(message),
    );
    layout(status.canonical_reason().unwrap_or("Error"), None, &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>Salt & Pepper</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Salt &amp; Pepper&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn the_header_escapes_the_currency() {
        let currencies = ["USD".to_string()];
        let chrome = Chrome {
            currencies: &currencies,
            currency: "\"><script>x</script>",
            cart_size: 2,
            session_id: "<s>",
            trace_id: 1,
        };
        let page = home(&chrome, &[], None);
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&quot;&gt;&lt;script&gt;x&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.contains("session-id: &lt;s&gt;"), "{page}");
        assert!(
            page.contains(r#"<span class="cart-size">2</span>"#),
            "{page}"
        );
    }
}
