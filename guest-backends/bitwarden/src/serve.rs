//! The Bitwarden CLI's Vault Management API (`bw serve`): locators, response envelopes, item
//! fields and error mapping. Pure functions, unit-tested natively.
//!
//! `bw serve`'s rules, as its source (`apps/cli` in bitwarden/clients) implements them:
//! - every answer is `{"success": true, "data": …}` or, with HTTP 400, `{"success": false,
//!   "message": "…"}` — the status says nothing, the message says what failed (`Not found.`,
//!   `Vault is locked.`, `You are not logged in.`, `More than one result was found. …`);
//! - a request with an `Origin` header, or a `Host` other than `localhost`/`127.0.0.1`/`[::1]`
//!   with its port, is refused with a bare 403 (browser protection). This backend never sends
//!   an `Origin` header, and the host derives `Host` from the configured URL.
//!
//! Locator syntax: `ITEM[#FIELD]`. `ITEM` is an item id (a UUID) or an item's exact name.
//! `FIELD` is `password`, `username`, `notes`, `totp` (the current code), `uri` (the first
//! URI), or the name of a custom field; `custom:NAME` names a custom field even when it is
//! called like a built-in one. Without `#FIELD`: a login's password, a secure note's notes.

use airlock_guest::{BackendError, sanitize_detail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::crypto::is_uuid;

/// The item types of the Bitwarden data model.
pub const TYPE_LOGIN: u64 = 1;
/// A secure note.
pub const TYPE_SECURE_NOTE: u64 = 2;

/// Which part of an item a locator names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// No `#field`: the item type's natural value (login password, secure note notes).
    Default,
    Password,
    Username,
    Notes,
    /// The current TOTP code (`GET /object/totp/{id}`), not the seed.
    Totp,
    /// The first URI of a login.
    Uri,
    /// A custom field, by name.
    Custom(String),
}

/// How the locator names the item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemRef {
    /// By id (a UUID), lowercased as `bw` stores ids.
    Id(String),
    /// By exact name.
    Name(String),
}

/// A parsed `bw serve` locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub item: ItemRef,
    pub field: Field,
}

impl Locator {
    /// Parses `ITEM[#FIELD]`; errors are `invalid-config` naming the locator.
    pub fn parse(text: &str) -> Result<Self, BackendError> {
        let bad = |why: &str| BackendError::invalid_config(format!("locator `{text}`: {why}"));
        let (item, field) = match text.split_once('#') {
            Some((item, field)) => (item.trim(), Some(field)),
            None => (text.trim(), None),
        };
        if item.is_empty() {
            return Err(bad("no item id or name before `#`"));
        }
        let field = match field {
            None => Field::Default,
            Some("") => return Err(bad("nothing after `#` (expected a field)")),
            Some("password") => Field::Password,
            Some("username") => Field::Username,
            Some("notes") => Field::Notes,
            Some("totp") => Field::Totp,
            Some("uri") => Field::Uri,
            Some(f) => match f.strip_prefix("custom:") {
                Some("") => return Err(bad("`custom:` needs a field name")),
                Some(name) => Field::Custom(name.to_string()),
                None => Field::Custom(f.to_string()),
            },
        };
        let item = if is_uuid(item) {
            ItemRef::Id(item.to_ascii_lowercase())
        } else {
            ItemRef::Name(item.to_string())
        };
        Ok(Self { item, field })
    }
}

/// A `bw serve` answer envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub success: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// The unlock instruction every locked-vault error carries.
pub const UNLOCK_HINT: &str = "the Bitwarden vault behind `bw serve` is locked: unlock it with `bw unlock` \
    (then restart `bw serve` with BW_SESSION set) or `POST /unlock` on the bw serve host";

/// Maps a failed `bw serve` answer (`status`, and `message` when the body was an envelope)
/// onto a `backend-error`. `context` names the request.
pub fn map_error(status: u16, message: Option<&str>, context: &str) -> BackendError {
    let detail = message.map(sanitize_detail).unwrap_or_default();
    let lower = detail.to_ascii_lowercase();
    if status == 403 && message.is_none() {
        return BackendError::denied(format!(
            "{context}: bw serve refused the request (HTTP 403, its Host/Origin protection): \
             `url` must name the host and port bw serve listens on (localhost or 127.0.0.1)"
        ));
    }
    if lower.starts_with("not found") {
        return BackendError::NotFound;
    }
    if lower.contains("vault is locked") {
        return BackendError::unavailable(format!("{context}: {UNLOCK_HINT}"));
    }
    if lower.contains("not logged in") {
        return BackendError::denied(format!(
            "{context}: bw is not logged in: run `bw login` on the bw serve host"
        ));
    }
    if lower.contains("permission") || lower.contains("restricted") {
        return BackendError::denied(format!("{context}: {detail}"));
    }
    if lower.starts_with("more than one result") {
        return BackendError::invalid_config(format!(
            "{context}: several items match; use the item id in the locator"
        ));
    }
    match status {
        401 | 403 => BackendError::denied(format!("{context}: HTTP {status} {detail}")),
        404 => BackendError::NotFound,
        408 | 429 | 500..=599 => BackendError::unavailable(format!("{context}: HTTP {status} {detail}")),
        _ if detail.is_empty() => BackendError::internal(format!("{context}: unexpected HTTP {status}")),
        _ => BackendError::internal(format!("{context}: {detail}")),
    }
}

/// The `data` of a successful envelope, or the mapped error of a failed one.
pub fn unwrap_envelope(status: u16, body: &[u8], context: &str) -> Result<Value, BackendError> {
    match serde_json::from_slice::<Envelope>(body) {
        // Some successes carry no data (`DELETE`, `POST /lock`): they are `null`.
        Ok(env) if env.success && (200..300).contains(&status) => Ok(env.data.unwrap_or(Value::Null)),
        Ok(env) => Err(map_error(status, env.message.as_deref().or(Some("")), context)),
        Err(_) if (200..300).contains(&status) => {
            Err(BackendError::internal(format!("{context}: the answer is not bw serve's JSON envelope")))
        }
        Err(_) => Err(map_error(status, None, context)),
    }
}

/// The vault status from `GET /status`'s data (`{"object":"template","template":{…}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `unlocked`, `locked` or `unauthenticated`.
    pub status: String,
    pub server_url: Option<String>,
    pub last_sync: Option<String>,
}

/// Parses `GET /status`'s data.
pub fn parse_status(data: &Value) -> Result<Status, BackendError> {
    let t = data.get("template").unwrap_or(data);
    let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
    let status = text("status").ok_or_else(|| BackendError::internal("bw serve /status has no `status`"))?;
    Ok(Status { status, server_url: text("serverUrl"), last_sync: text("lastSync") })
}

/// The items in `GET /list/object/items`'s data (`{"object":"list","data":[…]}`).
pub fn list_items(data: Value) -> Result<Vec<Value>, BackendError> {
    match data {
        Value::Object(mut m) => match m.remove("data") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(BackendError::internal("bw serve list answer has no `data` array")),
        },
        Value::Array(items) => Ok(items),
        _ => Err(BackendError::internal("bw serve list answer is not a list")),
    }
}

/// The one item `item` names among `items`: by id, or by exact name (case-sensitive first,
/// then case-insensitive as `bw get` does). Several items with that name are
/// `invalid-config` (the locator must use the id); none is `not-found`.
pub fn find_item<'a>(items: &'a [Value], item: &ItemRef) -> Result<&'a Value, BackendError> {
    let name_of = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
    let pick = |matches: Vec<&'a Value>, what: &str| match matches.len() {
        0 => Err(BackendError::NotFound),
        1 => Ok(matches[0]),
        n => Err(BackendError::invalid_config(format!(
            "{n} items are named `{what}`; use the item id in the locator"
        ))),
    };
    match item {
        ItemRef::Id(id) => pick(
            items.iter().filter(|v| item_id(v).is_some_and(|i| i.eq_ignore_ascii_case(id))).collect(),
            id,
        ),
        ItemRef::Name(name) => {
            let exact: Vec<&Value> = items.iter().filter(|v| name_of(v).as_deref() == Some(name)).collect();
            if exact.is_empty() {
                pick(
                    items
                        .iter()
                        .filter(|v| name_of(v).is_some_and(|n| n.eq_ignore_ascii_case(name)))
                        .collect(),
                    name,
                )
            } else {
                pick(exact, name)
            }
        }
    }
}

/// An item's id.
pub fn item_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// The value `field` names in `item` (TOTP excepted: its code comes from `/object/totp`).
/// An absent or empty field is `not-found`: the store has no value there.
pub fn field_value(item: &Value, field: &Field) -> Result<String, BackendError> {
    let kind = item.get("type").and_then(Value::as_u64).unwrap_or(0);
    let text = |v: Option<&Value>| match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(BackendError::NotFound),
    };
    let login = item.get("login");
    match field {
        Field::Default if kind == TYPE_LOGIN => text(login.and_then(|l| l.get("password"))),
        Field::Default if kind == TYPE_SECURE_NOTE => text(item.get("notes")),
        Field::Default => Err(BackendError::invalid_config(
            "this item is neither a login nor a secure note: name the field in the locator (`#field`)",
        )),
        Field::Password => text(login.and_then(|l| l.get("password"))),
        Field::Username => text(login.and_then(|l| l.get("username"))),
        Field::Notes => text(item.get("notes")),
        Field::Uri => {
            text(login.and_then(|l| l.get("uris")).and_then(|u| u.get(0)).and_then(|u| u.get("uri")))
        }
        Field::Totp => {
            Err(BackendError::internal("the TOTP code is read from /object/totp, not from the item"))
        }
        Field::Custom(name) => {
            let fields = item.get("fields").and_then(Value::as_array);
            let found =
                fields.into_iter().flatten().find(|f| f.get("name").and_then(Value::as_str) == Some(name));
            match found.and_then(|f| f.get("value")) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Bool(b)) => Ok(b.to_string()),
                _ => Err(BackendError::NotFound),
            }
        }
    }
}

/// `item` with `field` set to `value` (or cleared when `None`), for `PUT /object/item/{id}`.
/// A new custom field is added as a hidden field (type 1). Clearing an absent field is
/// `not-found`. TOTP writes the seed (`login.totp`), not a code.
pub fn with_field(mut item: Value, field: &Field, value: Option<&str>) -> Result<Value, BackendError> {
    let kind = item.get("type").and_then(Value::as_u64).unwrap_or(0);
    let obj = item.as_object_mut().ok_or_else(|| BackendError::internal("a bw item is not a JSON object"))?;
    let new = value.map_or(Value::Null, |v| Value::String(v.to_string()));
    let login_key = |obj: &mut Map<String, Value>, key: &str, new: Value| -> Result<(), BackendError> {
        if kind != TYPE_LOGIN {
            return Err(BackendError::invalid_config(format!(
                "`#{key}` is a login field and this item is not a login"
            )));
        }
        let login = obj.entry("login").or_insert_with(|| json!({}));
        let login =
            login.as_object_mut().ok_or_else(|| BackendError::internal("a bw login is not an object"))?;
        if new.is_null() && login.get(key).is_none_or(Value::is_null) {
            return Err(BackendError::NotFound);
        }
        login.insert(key.to_string(), new);
        Ok(())
    };
    match field {
        Field::Default if kind == TYPE_LOGIN => login_key(obj, "password", new)?,
        Field::Password => login_key(obj, "password", new)?,
        Field::Username => login_key(obj, "username", new)?,
        Field::Totp => login_key(obj, "totp", new)?,
        Field::Notes => set_notes(obj, new)?,
        Field::Default if kind == TYPE_SECURE_NOTE => set_notes(obj, new)?,
        Field::Default => {
            return Err(BackendError::invalid_config(
                "this item is neither a login nor a secure note: name the field in the locator (`#field`)",
            ));
        }
        Field::Uri => {
            return Err(BackendError::unsupported("writing `#uri` is not offered (URIs carry match rules)"));
        }
        Field::Custom(name) => {
            let fields = obj.entry("fields").or_insert_with(|| json!([]));
            if fields.is_null() {
                *fields = json!([]);
            }
            let fields = fields
                .as_array_mut()
                .ok_or_else(|| BackendError::internal("bw item fields are not a list"))?;
            let pos = fields.iter().position(|f| f.get("name").and_then(Value::as_str) == Some(name));
            match (pos, value) {
                (Some(i), Some(v)) => {
                    if let Some(f) = fields[i].as_object_mut() {
                        f.insert("value".into(), Value::String(v.to_string()));
                    }
                }
                (None, Some(v)) => fields.push(json!({ "name": name, "value": v, "type": 1 })),
                (Some(i), None) => {
                    fields.remove(i);
                }
                (None, None) => return Err(BackendError::NotFound),
            }
        }
    }
    Ok(item)
}

/// Sets or clears (`null`) an item's notes; clearing absent notes is `not-found`.
fn set_notes(obj: &mut Map<String, Value>, new: Value) -> Result<(), BackendError> {
    if new.is_null() && obj.get("notes").is_none_or(Value::is_null) {
        return Err(BackendError::NotFound);
    }
    obj.insert("notes".into(), new);
    Ok(())
}

/// A new login item named `name` holding `value` in `field`, for `POST /object/item`.
pub fn new_login_item(name: &str, field: &Field, value: &str) -> Result<Value, BackendError> {
    let base = json!({
        "type": TYPE_LOGIN,
        "name": name,
        "notes": null,
        "favorite": false,
        "fields": [],
        "login": { "username": null, "password": null, "totp": null, "uris": [] },
        "organizationId": null,
        "folderId": null,
        "collectionIds": [],
        "reprompt": 0
    });
    with_field(base, field, Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> Value {
        json!({
            "object": "item", "id": "2b5b9f2e-1111-4a2b-9c3d-abcdefabcdef", "type": 1, "name": "GitHub",
            "notes": "n", "fields": [{"name": "api_key", "value": "k-1", "type": 1}, {"name": "flag", "value": true, "type": 2}],
            "login": {"username": "octo", "password": "pw", "totp": "JBSWY3DPEHPK3PXP", "uris": [{"match": null, "uri": "https://github.com"}]}
        })
    }

    #[test]
    fn locators() {
        let l = Locator::parse("GitHub").expect("name");
        assert_eq!(l, Locator { item: ItemRef::Name("GitHub".into()), field: Field::Default });
        let l = Locator::parse("2B5B9F2E-1111-4A2B-9C3D-ABCDEFABCDEF#totp").expect("id");
        assert_eq!(l.item, ItemRef::Id("2b5b9f2e-1111-4a2b-9c3d-abcdefabcdef".into()));
        assert_eq!(l.field, Field::Totp);
        assert_eq!(Locator::parse("x#api_key").expect("custom").field, Field::Custom("api_key".into()));
        assert_eq!(
            Locator::parse("x#custom:password").expect("forced").field,
            Field::Custom("password".into())
        );
        for bad in ["", "#password", "x#", "x#custom:"] {
            assert_eq!(Locator::parse(bad).expect_err(bad).kind(), "invalid-config", "{bad}");
        }
    }

    #[test]
    fn fields() {
        let item = login();
        assert_eq!(field_value(&item, &Field::Default).as_deref(), Ok("pw"));
        assert_eq!(field_value(&item, &Field::Username).as_deref(), Ok("octo"));
        assert_eq!(field_value(&item, &Field::Notes).as_deref(), Ok("n"));
        assert_eq!(field_value(&item, &Field::Uri).as_deref(), Ok("https://github.com"));
        assert_eq!(field_value(&item, &Field::Custom("api_key".into())).as_deref(), Ok("k-1"));
        assert_eq!(field_value(&item, &Field::Custom("flag".into())).as_deref(), Ok("true"));
        assert_eq!(field_value(&item, &Field::Custom("nope".into())), Err(BackendError::NotFound));
        let note = json!({"type": 2, "name": "n", "notes": "the note"});
        assert_eq!(field_value(&note, &Field::Default).as_deref(), Ok("the note"));
        assert_eq!(field_value(&note, &Field::Password), Err(BackendError::NotFound));
        let card = json!({"type": 3, "name": "c"});
        assert_eq!(field_value(&card, &Field::Default).expect_err("card").kind(), "invalid-config");
    }

    #[test]
    fn item_lookup() {
        let items = vec![
            login(),
            json!({"id": "x2", "name": "github", "type": 1}),
            json!({"id": "x3", "name": "Dup", "type": 1}),
            json!({"id": "x4", "name": "Dup", "type": 1}),
        ];
        assert_eq!(
            find_item(&items, &ItemRef::Name("GitHub".into())).ok().and_then(item_id),
            Some("2b5b9f2e-1111-4a2b-9c3d-abcdefabcdef")
        );
        assert_eq!(
            find_item(&items, &ItemRef::Name("GITHUB".into())).expect_err("two case-insensitive").kind(),
            "invalid-config"
        );
        assert_eq!(
            find_item(&items, &ItemRef::Name("Dup".into())).expect_err("dup").kind(),
            "invalid-config"
        );
        assert_eq!(find_item(&items, &ItemRef::Name("none".into())), Err(BackendError::NotFound));
        assert_eq!(find_item(&items, &ItemRef::Id("x4".into())).ok().and_then(item_id), Some("x4"));
    }

    #[test]
    fn edits() {
        let item = with_field(login(), &Field::Password, Some("new")).expect("set");
        assert_eq!(item["login"]["password"], "new");
        let item = with_field(item, &Field::Custom("api_key".into()), Some("k-2")).expect("custom");
        assert_eq!(field_value(&item, &Field::Custom("api_key".into())).as_deref(), Ok("k-2"));
        let item = with_field(item, &Field::Custom("added".into()), Some("v")).expect("add");
        assert_eq!(field_value(&item, &Field::Custom("added".into())).as_deref(), Ok("v"));
        let item = with_field(item, &Field::Custom("added".into()), None).expect("remove");
        assert_eq!(field_value(&item, &Field::Custom("added".into())), Err(BackendError::NotFound));
        assert_eq!(
            with_field(item.clone(), &Field::Custom("added".into()), None).err(),
            Some(BackendError::NotFound)
        );
        assert_eq!(with_field(item, &Field::Uri, Some("x")).expect_err("uri").kind(), "unsupported");
        let note = with_field(json!({"type": 2, "notes": null}), &Field::Default, Some("t")).expect("note");
        assert_eq!(note["notes"], "t");
        assert_eq!(
            with_field(json!({"type": 2}), &Field::Password, Some("x")).expect_err("not login").kind(),
            "invalid-config"
        );
        let created = new_login_item("New", &Field::Custom("token".into()), "t").expect("new");
        assert_eq!(created["name"], "New");
        assert_eq!(field_value(&created, &Field::Custom("token".into())).as_deref(), Ok("t"));
    }

    #[test]
    fn envelopes_and_errors() {
        let ok = br#"{"success":true,"data":{"object":"item","id":"x"}}"#;
        assert_eq!(
            unwrap_envelope(200, ok, "c").ok().and_then(|d| d["id"].as_str().map(str::to_string)).as_deref(),
            Some("x")
        );
        let nf = br#"{"success":false,"message":"Not found."}"#;
        assert_eq!(unwrap_envelope(400, nf, "c"), Err(BackendError::NotFound));
        let locked = br#"{"success":false,"message":"Vault is locked."}"#;
        let e = unwrap_envelope(400, locked, "c").expect_err("locked");
        assert_eq!(e.kind(), "unavailable");
        assert!(e.message().contains("bw unlock"), "{e}");
        let out = br#"{"success":false,"message":"You are not logged in."}"#;
        assert_eq!(unwrap_envelope(400, out, "c").expect_err("logged out").kind(), "denied");
        let many = br#"{"success":false,"message":"More than one result was found. Try getting a specific object by `id` instead."}"#;
        assert_eq!(unwrap_envelope(400, many, "c").expect_err("many").kind(), "invalid-config");
        assert_eq!(unwrap_envelope(403, b"", "c").expect_err("origin").kind(), "denied");
        assert_eq!(unwrap_envelope(503, b"busy", "c").expect_err("down").kind(), "unavailable");
        assert_eq!(unwrap_envelope(200, b"<html>", "c").expect_err("not json").kind(), "internal");
        let other = br#"{"success":false,"message":"Unknown object."}"#;
        assert_eq!(unwrap_envelope(400, other, "c").expect_err("other").kind(), "internal");
    }

    #[test]
    fn status_and_lists() {
        let s = parse_status(&json!({"object":"template","template":{"serverUrl":null,"lastSync":"2024-01-01T00:00:00.000Z","userEmail":"a@b","userId":"u","status":"locked"}})).expect("status");
        assert_eq!(s.status, "locked");
        assert_eq!(s.last_sync.as_deref(), Some("2024-01-01T00:00:00.000Z"));
        assert_eq!(list_items(json!({"object":"list","data":[{"id":"a"}]})).map(|v| v.len()), Ok(1));
        assert!(list_items(json!({"object":"list"})).is_err());
    }
}
