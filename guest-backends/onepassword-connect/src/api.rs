//! The 1Password Connect API (server API reference, OpenAPI 1.5.7) as pure functions:
//! URLs, response shapes, field selection, JSON Patch bodies, error mapping.
//!
//! Invariant: no error message quotes a field value; `Debug` of [`Field`] omits it.

use std::fmt;

use airlock_guest::{BackendError, Request, encode_component, json, sanitize_detail, status_error};
use serde::Deserialize;
use serde_json::json;

/// Whether `s` looks like a 1Password id: 26 characters of `[0-9a-z]`.
pub fn is_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `filter=<attr> eq "<value>"`, the SCIM filter Connect accepts, with `"` and `\` escaped
/// inside the string and the whole expression percent-encoded.
pub fn filter_query(attr: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("filter={}", encode_component(&format!("{attr} eq \"{escaped}\"")))
}

/// `GET /v1/vaults?filter=name eq "…"`.
pub fn vaults_by_name_url(base: &str, name: &str) -> String {
    format!("{base}/v1/vaults?{}", filter_query("name", name))
}

/// `GET /v1/vaults` (every vault the token sees).
pub fn vaults_url(base: &str) -> String {
    format!("{base}/v1/vaults")
}

/// `GET /v1/vaults/{id}`.
pub fn vault_url(base: &str, vault_id: &str) -> String {
    format!("{base}/v1/vaults/{}", encode_component(vault_id))
}

/// `GET /v1/vaults/{vault}/items?filter=title eq "…"`.
pub fn items_by_title_url(base: &str, vault_id: &str, title: &str) -> String {
    format!("{base}/v1/vaults/{}/items?{}", encode_component(vault_id), filter_query("title", title))
}

/// `/v1/vaults/{vault}/items/{item}` (GET the full item, PATCH it).
pub fn item_url(base: &str, vault_id: &str, item_id: &str) -> String {
    format!("{base}/v1/vaults/{}/items/{}", encode_component(vault_id), encode_component(item_id))
}

/// A vault as listed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Vault {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// An item as listed (no fields).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ItemSummary {
    pub id: String,
    #[serde(default)]
    pub title: String,
}

/// A section of an item.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Section {
    pub id: String,
    #[serde(default)]
    pub label: Option<String>,
}

/// The section reference inside a field.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SectionRef {
    pub id: String,
}

/// A field of a full item.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct Field {
    pub id: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub section: Option<SectionRef>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Absent when the field is empty (Connect omits it).
    #[serde(default)]
    pub value: Option<String>,
}

impl fmt::Debug for Field {
    /// Everything but the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("purpose", &self.purpose)
            .field("section", &self.section)
            .field("type", &self.kind)
            .field("has_value", &self.value.is_some())
            .finish()
    }
}

/// A full item (`GET /v1/vaults/{v}/items/{i}`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub sections: Vec<Section>,
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// Connect's `{"status": N, "message": "..."}` text, if the body has it.
pub fn error_detail(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorResponse {
        message: Option<String>,
    }
    serde_json::from_slice::<ErrorResponse>(body).ok()?.message.map(|m| sanitize_detail(&m))
}

/// Maps a Connect error answer with the contract's status mapping and Connect's message.
pub fn connect_error(status: u16, context: &str, body: &[u8]) -> BackendError {
    status_error(status, context, error_detail(body).as_deref())
}

/// Parses a 2xx JSON answer, or maps the error.
pub fn parse_ok<T: serde::de::DeserializeOwned>(
    status: u16,
    body: &[u8],
    context: &str,
) -> Result<T, BackendError> {
    if (200..300).contains(&status) {
        json::parse(body, context)
    } else {
        Err(connect_error(status, context, body))
    }
}

/// The one element of `list`, `not-found` for none, `invalid-config` for several (`what`
/// names the kind and name, e.g. `vaults named "Prod"`).
pub fn exactly_one<T>(mut list: Vec<T>, what: &str) -> Result<T, BackendError> {
    match list.len() {
        0 => Err(BackendError::NotFound),
        1 => list.pop().ok_or(BackendError::NotFound),
        n => Err(BackendError::invalid_config(format!("{n} {what}: use the id in the locator instead"))),
    }
}

/// The purpose a keyword names (`password` ⇒ `PASSWORD`, ...), case-insensitively.
fn purpose_for(keyword: &str) -> Option<&'static str> {
    match keyword.to_ascii_lowercase().as_str() {
        "password" => Some("PASSWORD"),
        "username" => Some("USERNAME"),
        "notes" | "notesplain" => Some("NOTES"),
        _ => None,
    }
}

/// The ids of the sections of `item` that `section` names (by id or label).
fn section_ids<'a>(item: &'a Item, section: &str) -> Vec<&'a str> {
    item.sections
        .iter()
        .filter(|s| s.id == section || s.label.as_deref() == Some(section))
        .map(|s| s.id.as_str())
        .collect()
}

/// The field of `item` the locator names.
///
/// Candidates are the item's fields, or those in `section` (matched by section id or label)
/// when given. Then, in order, the first rule that matches anything decides: field id; exact
/// label; label ignoring ASCII case; purpose keyword (`password`, `username`, `notes`). A rule
/// matching several fields (e.g. two `host` fields in different sections) is
/// `invalid-config`, so an ambiguous reference never silently picks one. No match is
/// `not-found`.
pub fn select_field<'a>(
    item: &'a Item,
    section: Option<&str>,
    field: &str,
) -> Result<&'a Field, BackendError> {
    let candidates: Vec<&Field> = match section {
        None => item.fields.iter().collect(),
        Some(s) => {
            let ids = section_ids(item, s);
            if ids.is_empty() {
                return Err(BackendError::NotFound);
            }
            item.fields
                .iter()
                .filter(|f| f.section.as_ref().is_some_and(|r| ids.contains(&r.id.as_str())))
                .collect()
        }
    };
    let purpose = purpose_for(field);
    let rules: [&dyn Fn(&Field) -> bool; 4] = [
        &|f| f.id == field,
        &|f| f.label.as_deref() == Some(field),
        &|f| f.label.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(field)),
        &|f| purpose.is_some() && f.purpose.as_deref() == purpose,
    ];
    for rule in rules {
        let hits: Vec<&Field> = candidates.iter().copied().filter(|f| rule(f)).collect();
        match hits.as_slice() {
            [] => continue,
            [one] => return Ok(one),
            many => {
                return Err(BackendError::invalid_config(format!(
                    "item `{}` has {} fields matching `{field}`: name the section (op://vault/item/section/field) or use the field id",
                    item.title,
                    many.len()
                )));
            }
        }
    }
    Err(BackendError::NotFound)
}

/// The value of `field`; an empty field (no value) is `not-found`.
pub fn field_value(field: &Field) -> Result<String, BackendError> {
    field.value.clone().ok_or(BackendError::NotFound)
}

/// JSON Patch setting an existing field's value (`add` replaces an existing member,
/// RFC 6902 §4.1, and also works when the field has no value yet).
pub fn set_value_patch(url: String, field_id: &str, value: &str) -> Result<Request, BackendError> {
    Request::patch(url)
        .json(&json!([{ "op": "add", "path": format!("/fields/{field_id}/value"), "value": value }]))
}

/// JSON Patch adding a new concealed field, in `section_id` if given (Connect appends a
/// value added at `/fields`, as its reference documents).
pub fn add_field_patch(
    url: String,
    label: &str,
    section_id: Option<&str>,
    value: &str,
) -> Result<Request, BackendError> {
    let mut field = json!({ "label": label, "type": "CONCEALED", "value": value });
    if let Some(id) = section_id {
        field["section"] = json!({ "id": id });
    }
    Request::patch(url).json(&json!([{ "op": "add", "path": "/fields", "value": field }]))
}

/// JSON Patch removing a field.
pub fn remove_field_patch(url: String, field_id: &str) -> Result<Request, BackendError> {
    Request::patch(url).json(&json!([{ "op": "remove", "path": format!("/fields/{field_id}") }]))
}

/// The section id a new field goes to: `None` without a section in the locator; the named
/// section's id when exactly one matches; otherwise `not-found` / `invalid-config`.
pub fn section_for_new_field(item: &Item, section: Option<&str>) -> Result<Option<String>, BackendError> {
    match section {
        None => Ok(None),
        Some(s) => {
            let ids = section_ids(item, s);
            exactly_one(ids, &format!("sections named `{s}` in item `{}`", item.title))
                .map(|id| Some(id.to_string()))
        }
    }
}

/// `/health`: server name and version (no auth needed).
#[derive(Debug, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// One dependency reported by `/health`.
#[derive(Debug, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        json::parse(
            br#"{"id":"ueq6dbr2ihqoyqcp7nk5dncejq","title":"Database","version":3,
            "sections":[{"id":"S1","label":"Primary"},{"id":"S2","label":"Replica"}],
            "fields":[
              {"id":"username","type":"STRING","purpose":"USERNAME","label":"username","value":"u"},
              {"id":"password","type":"CONCEALED","purpose":"PASSWORD","label":"password","value":"p"},
              {"id":"notesPlain","type":"STRING","purpose":"NOTES","label":"notesPlain","value":"n"},
              {"id":"h1","section":{"id":"S1"},"type":"STRING","label":"host","value":"primary"},
              {"id":"h2","section":{"id":"S2"},"type":"STRING","label":"Host","value":"replica"},
              {"id":"p2","section":{"id":"S2"},"type":"CONCEALED","label":"password","value":"p-replica"},
              {"id":"e","type":"STRING","label":"empty"}]}"#,
            "item",
        )
        .expect("item")
    }

    fn pick(section: Option<&str>, field: &str) -> Result<String, String> {
        let it = item();
        select_field(&it, section, field).and_then(field_value).map_err(|e| e.kind().to_string())
    }

    #[test]
    fn field_selection_rules() {
        assert_eq!(pick(None, "password"), Ok("p".into()), "id beats the replica's label");
        assert_eq!(pick(Some("Replica"), "password"), Ok("p-replica".into()));
        assert_eq!(pick(Some("S2"), "password"), Ok("p-replica".into()), "section by id");
        assert_eq!(pick(None, "host"), Ok("primary".into()), "exact label beats case-insensitive");
        assert_eq!(pick(None, "HOST"), Err("invalid-config".into()), "two case-insensitive matches");
        assert_eq!(pick(Some("Replica"), "host"), Ok("replica".into()));
        assert_eq!(pick(None, "notes"), Ok("n".into()), "purpose keyword");
        assert_eq!(pick(None, "h2"), Ok("replica".into()), "field id");
        assert_eq!(pick(None, "empty"), Err("not-found".into()));
        assert_eq!(pick(None, "nope"), Err("not-found".into()));
        assert_eq!(pick(Some("Nope"), "host"), Err("not-found".into()));
        let it = item();
        let e = select_field(&it, None, "HOST").expect_err("ambiguous");
        assert!(!e.message().contains("primary") && !e.message().contains("replica"), "{e}");
        assert!(!format!("{:?}", it.fields).contains("p-replica"));
    }

    #[test]
    fn urls_and_filters() {
        assert!(is_id("ueq6dbr2ihqoyqcp7nk5dncejq"));
        assert!(!is_id("Production") && !is_id("UEQ6DBR2IHQOYQCP7NK5DNCEJQ"));
        assert_eq!(filter_query("title", r#"Say "hi""#), "filter=title%20eq%20%22Say%20%5C%22hi%5C%22%22");
        assert_eq!(
            vaults_by_name_url("http://c", "Prod"),
            "http://c/v1/vaults?filter=name%20eq%20%22Prod%22"
        );
        assert_eq!(item_url("http://c", "v", "i/x"), "http://c/v1/vaults/v/items/i%2Fx");
    }

    #[test]
    fn errors_and_patches() {
        let e = connect_error(401, "list vaults", br#"{"status":401,"message":"Invalid token signature"}"#);
        assert_eq!((e.kind(), e.message()), ("denied", "list vaults: HTTP 401: Invalid token signature"));
        assert_eq!(
            connect_error(404, "x", br#"{"status":404,"message":"vault v not found"}"#),
            BackendError::NotFound
        );
        assert_eq!(connect_error(503, "x", b"").kind(), "unavailable");
        assert_eq!(exactly_one(vec![1, 2], "vaults named `a`").expect_err("two").kind(), "invalid-config");
        let r = set_value_patch("http://c/i".into(), "password", "new").expect("patch");
        assert_eq!(
            r.body.as_deref(),
            Some(&br#"[{"op":"add","path":"/fields/password/value","value":"new"}]"#[..])
        );
        let r = add_field_patch("http://c/i".into(), "api key", Some("S1"), "v").expect("patch");
        let body: serde_json::Value = json::parse(r.body.as_deref().unwrap_or_default(), "b").expect("json");
        assert_eq!(
            body,
            json!([{"op":"add","path":"/fields","value":{"label":"api key","type":"CONCEALED","value":"v","section":{"id":"S1"}}}])
        );
        assert_eq!(section_for_new_field(&item(), Some("Replica")).ok(), Some(Some("S2".into())));
        assert_eq!(section_for_new_field(&item(), Some("Nope")), Err(BackendError::NotFound));
    }
}
