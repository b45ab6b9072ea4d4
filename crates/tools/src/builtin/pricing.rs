//! `pricing-calculator`: quotes from the organization's price list, which an
//! admin sets as the integration's settings. Amounts are whole minor units
//! (cents) throughout, so a quote adds up to the cent however it is split.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ToolError;

/// How many items a price list may hold, and lines a quote.
pub const MAX_ITEMS: usize = 500;
pub const MAX_LINES: usize = 50;
/// How many volume tiers one item may have.
pub const MAX_TIERS: usize = 20;
pub const MAX_QUANTITY: u64 = 1_000_000;
pub const MAX_UNIT_PRICE: f64 = 1_000_000_000.0;
/// What an item's id (its SKU) looks like.
pub const SKU_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";

/// Currencies whose amounts have no minor unit (ISO 4217); all others have
/// cents.
const WHOLE_CURRENCIES: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];

/// The integration's settings, as an admin writes them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    /// ISO 4217, three capital letters.
    currency: String,
    #[serde(default)]
    tax_percent: Option<f64>,
    /// What the tax is called on a quote ("VAT").
    #[serde(default)]
    tax_name: Option<String>,
    /// By SKU.
    items: BTreeMap<String, Item>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    name: String,
    unit_price: f64,
    /// What one of it is ("seat per month").
    #[serde(default)]
    unit: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    min_quantity: Option<u64>,
    /// Discounts by quantity: the highest tier reached applies.
    #[serde(default)]
    volume: Vec<Tier>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    #[serde(deserialize_with = "whole_required")]
    from: u64,
    percent_off: f64,
}

impl PriceList {
    /// The settings an admin gave, checked: the same rules as the API's
    /// schema for them states.
    pub fn parse(settings: &Value) -> Result<Self, String> {
        // serde would also read the struct from an array of its fields.
        let items = settings.get("items").and_then(Value::as_object);
        let nested_objects = items
            .into_iter()
            .flat_map(|items| items.values())
            .all(|item| {
                let tiers = item.get("volume").and_then(Value::as_array);
                item.is_object() && tiers.is_none_or(|tiers| tiers.iter().all(Value::is_object))
            });
        if !settings.is_object() || !nested_objects {
            return Err(
                "price list: must be a JSON object, as must each item and volume tier".into(),
            );
        }
        let list: Self =
            serde_json::from_value(settings.clone()).map_err(|e| format!("price list: {e}"))?;
        let currency = &list.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("price list: currency must be an ISO 4217 code such as EUR".into());
        }
        percent("tax_percent", list.tax_percent)?;
        if let Some(name) = &list.tax_name {
            label("tax_name", name, 40)?;
        }
        if list.items.is_empty() || list.items.len() > MAX_ITEMS {
            return Err(format!("price list: between 1 and {MAX_ITEMS} items"));
        }
        for (sku, item) in &list.items {
            if !is_sku(sku) {
                return Err(format!(
                    "price list: item ids are 1 to 64 lowercase letters, digits, '.', '_' or '-', first a letter or digit: {sku:?} is not"
                ));
            }
            label(&format!("{sku}.name"), &item.name, 200)?;
            if let Some(unit) = &item.unit {
                label(&format!("{sku}.unit"), unit, 40)?;
            }
            if !(0.0..=MAX_UNIT_PRICE).contains(&item.unit_price) {
                return Err(format!(
                    "price list: {sku}.unit_price must be between 0 and {MAX_UNIT_PRICE}"
                ));
            }
            if item
                .min_quantity
                .is_some_and(|min| !(1..=MAX_QUANTITY).contains(&min))
            {
                return Err(format!(
                    "price list: {sku}.min_quantity must be between 1 and {MAX_QUANTITY}"
                ));
            }
            if item.volume.len() > MAX_TIERS {
                return Err(format!(
                    "price list: {sku}.volume has at most {MAX_TIERS} tiers"
                ));
            }
            for tier in &item.volume {
                if !(2..=MAX_QUANTITY).contains(&tier.from) {
                    return Err(format!(
                        "price list: {sku}.volume tiers start from 2 to {MAX_QUANTITY}"
                    ));
                }
                percent(&format!("{sku}.volume.percent_off"), Some(tier.percent_off))?;
            }
        }
        Ok(list)
    }

    /// The `price_list` tool's answer: every item, its price and tiers.
    pub fn describe(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|(sku, item)| {
                json!({
                    "sku": sku,
                    "name": item.name,
                    "unit_price": self.amount(self.minor(item.unit_price)),
                    "unit": item.unit,
                    "min_quantity": item.min_quantity,
                    "volume": item.volume.iter().map(|tier| json!({
                        "from": tier.from, "percent_off": tier.percent_off,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "currency": self.currency,
            "tax_name": self.tax_name,
            "tax_percent": self.tax_percent,
            "items": items,
        })
    }

    /// The `quote` tool's answer for `input` (`{"lines": [{"sku", "quantity"}]}`).
    pub fn quote(&self, input: &Map<String, Value>) -> Result<Value, ToolError> {
        let refused = |why: String| ToolError(why);
        if let Some(field) = input.keys().find(|k| *k != "lines") {
            return Err(refused(format!("unknown field {field}")));
        }
        let lines = input
            .get("lines")
            .and_then(Value::as_array)
            .filter(|lines| (1..=MAX_LINES).contains(&lines.len()))
            .ok_or_else(|| refused(format!("lines: a list of 1 to {MAX_LINES} items")))?;
        let mut quoted = Vec::new();
        let mut subtotal: u128 = 0;
        for line in lines {
            let sku = line["sku"]
                .as_str()
                .ok_or_else(|| refused("each line needs a sku, a string".into()))?;
            let quantity = line["quantity"]
                .as_f64()
                .filter(|q| q.fract() == 0.0 && (1.0..=MAX_QUANTITY as f64).contains(q))
                .map(|q| q as u64)
                .ok_or_else(|| {
                    refused(format!(
                        "{sku}: quantity must be a whole number from 1 to {MAX_QUANTITY}"
                    ))
                })?;
            if quoted.iter().any(|q: &Value| q["sku"] == sku) {
                return Err(refused(format!("{sku} is named twice: one line per item")));
            }
            let item = self.items.get(sku).ok_or_else(|| {
                let known: Vec<&str> = self.items.keys().take(20).map(String::as_str).collect();
                refused(format!(
                    "no item {sku:?} on the price list; its items include {}",
                    known.join(", ")
                ))
            })?;
            if let Some(min) = item.min_quantity.filter(|min| quantity < *min) {
                return Err(refused(format!(
                    "{sku} is sold from {min} {}",
                    item.unit.as_deref().unwrap_or("units")
                )));
            }
            let unit = self.minor(item.unit_price);
            let gross = unit * u128::from(quantity);
            let tier = item
                .volume
                .iter()
                .filter(|tier| tier.from <= quantity)
                .max_by(|a, b| {
                    a.from
                        .cmp(&b.from)
                        .then(a.percent_off.total_cmp(&b.percent_off))
                });
            let percent_off = tier.map_or(0.0, |tier| tier.percent_off);
            let discount = share(gross, percent_off);
            let net = gross - discount;
            subtotal += net;
            quoted.push(json!({
                "sku": sku,
                "name": item.name,
                "quantity": quantity,
                "unit": item.unit,
                "unit_price": self.amount(unit),
                "percent_off": percent_off,
                "discount": self.amount(discount),
                "amount": self.amount(net),
            }));
        }
        let tax = share(subtotal, self.tax_percent.unwrap_or(0.0));
        Ok(json!({
            "currency": self.currency,
            "lines": quoted,
            "subtotal": self.amount(subtotal),
            "tax_name": self.tax_name,
            "tax_percent": self.tax_percent.unwrap_or(0.0),
            "tax": self.amount(tax),
            "total": self.amount(subtotal + tax),
        }))
    }

    fn decimals(&self) -> u32 {
        if WHOLE_CURRENCIES.contains(&self.currency.as_str()) {
            0
        } else {
            2
        }
    }

    /// A price in minor units.
    fn minor(&self, price: f64) -> u128 {
        (price * 10f64.powi(self.decimals() as i32)).round() as u128
    }

    /// Minor units written as the currency writes them: "1234.50".
    fn amount(&self, minor: u128) -> String {
        match self.decimals() {
            0 => minor.to_string(),
            d => {
                let scale = 10u128.pow(d);
                format!(
                    "{}.{:0width$}",
                    minor / scale,
                    minor % scale,
                    width = d as usize
                )
            }
        }
    }
}

/// `percent` of `amount`, rounded half up to a minor unit; the percent is
/// taken to a hundredth.
fn share(amount: u128, percent: f64) -> u128 {
    let basis_points = (percent * 100.0).round() as u128;
    (amount * basis_points + 5_000) / 10_000
}

fn is_sku(sku: &str) -> bool {
    let mut bytes = sku.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && sku.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn percent(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(p) if !(0.0..=100.0).contains(&p) => {
            Err(format!("price list: {field} must be between 0 and 100"))
        }
        _ => Ok(()),
    }
}

/// A name shown to people: 1 to `max` characters, not only spaces, no
/// control characters.
fn label(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(format!(
            "price list: {field} must be 1 to {max} characters, not only spaces, without control characters"
        ));
    }
    Ok(())
}

/// A whole number that JSON may also spell as a whole float (`6.0`), as
/// JSON Schema counts it.
fn whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a whole number")))
}

fn whole_required<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole(deserializer)?.ok_or_else(|| serde::de::Error::custom("a whole number is required"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> PriceList {
        PriceList::parse(&json!({
            "currency": "EUR",
            "tax_name": "VAT",
            "tax_percent": 20,
            "items": {
                "basic": { "name": "Basic plan", "unit_price": 19.99, "unit": "seat per month",
                           "volume": [{ "from": 10, "percent_off": 5 }, { "from": 50.0, "percent_off": 12.5 }] },
                "onboarding": { "name": "Onboarding day", "unit_price": 900, "min_quantity": 2 }
            }
        }))
        .unwrap()
    }

    fn quote(lines: Value) -> Result<Value, ToolError> {
        list().quote(json!({ "lines": lines }).as_object().unwrap())
    }

    #[test]
    fn a_quote_applies_the_highest_volume_tier_reached_and_the_tax() {
        let quoted = quote(json!([
            { "sku": "basic", "quantity": 12 },
            { "sku": "onboarding", "quantity": 2.0 }
        ]))
        .unwrap();
        // 12 × 19.99 = 239.88, 5% off = 11.99 (11.994 rounded), 227.89.
        assert_eq!(quoted["lines"][0]["discount"], "11.99");
        assert_eq!(quoted["lines"][0]["amount"], "227.89");
        assert_eq!(quoted["lines"][1]["amount"], "1800.00");
        assert_eq!(quoted["subtotal"], "2027.89");
        assert_eq!(quoted["tax"], "405.58");
        assert_eq!(quoted["total"], "2433.47");

        let fifty = quote(json!([{ "sku": "basic", "quantity": 50 }])).unwrap();
        assert_eq!(fifty["lines"][0]["percent_off"], 12.5);
        assert_eq!(fifty["lines"][0]["amount"], "874.56"); // 999.50 − 124.94
    }

    #[test]
    fn a_quote_says_what_is_wrong_with_its_lines() {
        let refused = |lines: Value, expected: &str| {
            let error = quote(lines).unwrap_err().0;
            assert!(error.contains(expected), "{error}");
        };
        refused(
            json!([{ "sku": "gold", "quantity": 1 }]),
            "its items include basic, onboarding",
        );
        refused(
            json!([{ "sku": "onboarding", "quantity": 1 }]),
            "sold from 2 units",
        );
        refused(
            json!([{ "sku": "basic", "quantity": 0 }]),
            "whole number from 1",
        );
        refused(json!([{ "sku": "basic", "quantity": 1.5 }]), "whole number");
        refused(
            json!([{ "sku": "basic", "quantity": 1 }, { "sku": "basic", "quantity": 2 }]),
            "named twice",
        );
        refused(json!([]), "1 to 50");
        refused(json!([{ "quantity": 1 }]), "needs a sku");
    }

    #[test]
    fn whole_currencies_have_no_cents() {
        let yen = PriceList::parse(&json!({
            "currency": "JPY", "items": { "tea": { "name": "Tea", "unit_price": 480.4 } }
        }))
        .unwrap();
        let quoted = yen
            .quote(
                json!({ "lines": [{ "sku": "tea", "quantity": 3 }] })
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(quoted["total"], "1440");
    }

    #[test]
    fn the_largest_quote_does_not_overflow() {
        let list = PriceList::parse(&json!({
            "currency": "EUR", "tax_percent": 100,
            "items": { "x": { "name": "X", "unit_price": MAX_UNIT_PRICE } }
        }))
        .unwrap();
        let quoted = list
            .quote(
                json!({ "lines": [{ "sku": "x", "quantity": MAX_QUANTITY }] })
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(quoted["total"], "2000000000000000.00");
    }

    #[test]
    fn price_lists_are_checked_when_set() {
        let refused = |settings: Value, expected: &str| {
            let error = PriceList::parse(&settings).unwrap_err();
            assert!(error.contains(expected), "{error}");
        };
        let item = json!({ "name": "X", "unit_price": 1 });
        refused(
            json!({ "currency": "eur", "items": { "x": item } }),
            "ISO 4217",
        );
        refused(
            json!({ "currency": "EUR", "items": {} }),
            "between 1 and 500 items",
        );
        refused(
            json!({ "currency": "EUR", "items": { "X": item } }),
            "item ids",
        );
        refused(
            json!({ "currency": "EUR", "tax_percent": 101, "items": { "x": item } }),
            "tax_percent",
        );
        refused(
            json!({ "currency": "EUR", "items": { "x": { "name": " ", "unit_price": 1 } } }),
            "x.name",
        );
        refused(
            json!({ "currency": "EUR", "items": { "x": { "name": "X", "unit_price": -1 } } }),
            "unit_price",
        );
        refused(
            json!({ "currency": "EUR", "items": { "x": { "name": "X", "unit_price": 1, "volume": [{ "from": 1, "percent_off": 5 }] } } }),
            "tiers start from 2",
        );
        refused(
            json!({ "currency": "EUR", "items": { "x": item }, "discount": 5 }),
            "unknown field",
        );
        refused(json!({ "currency": "EUR" }), "missing field");
        refused(json!(["EUR", null, null, { "x": item }]), "JSON object");
        refused(
            json!({ "currency": "EUR", "items": { "x": ["X", 1] } }),
            "JSON object",
        );
        refused(
            json!({ "currency": "EUR", "items": { "x": { "name": "X", "unit_price": 1, "volume": [[2, 5]] } } }),
            "JSON object",
        );
    }
}
