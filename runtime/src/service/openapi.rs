//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand from one table of
//! operations so that it cannot drift from the router: a test checks that it lists exactly
//! [`super::router::ROUTES`].

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// Every `code` an error response can carry.
pub const ERROR_CODES: &[&str] = &[
    "unauthorized",
    "forbidden",
    "not_found",
    "value_not_found",
    "conflict",
    "validation_failed",
    "malformed_json",
    "unknown_field",
    "invalid_field",
    "unsupported_media_type",
    "payload_too_large",
    "unreadable_body",
    "invalid_path",
    "invalid_query",
    "method_not_allowed",
    "rate_limited",
    "timeout",
    "internal",
    "backend_denied",
    "backend_unavailable",
    "backend_misconfigured",
    "backend_unsupported",
    "backend_error",
    "sandbox_limit",
];

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Admin,
    Toolkit,
    Either,
}

struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [(&'static str, &'static str, &'static str)],
    body: Option<&'static str>,
    ok: (&'static str, &'static str, Option<&'static str>),
    errors: &'static [&'static str],
}

const WRITE_ERRORS: &[&str] = &["400", "401", "403", "404", "409", "413", "415", "422"];
const READ_ERRORS: &[&str] = &["400", "401", "403", "404"];
const RESOLVE_ERRORS: &[&str] = &["401", "403", "404", "429", "501", "502", "503", "504"];

const OPS: &[Op] = &[
    Op {
        method: "get",
        path: "/healthz",
        id: "healthz",
        summary: "Liveness: the process answers",
        auth: Auth::None,
        query: &[],
        body: None,
        ok: ("200", "Alive", Some("Health")),
        errors: &[],
    },
    Op {
        method: "get",
        path: "/readyz",
        id: "readyz",
        summary: "Readiness: the catalog answers; each backend's health by name",
        auth: Auth::None,
        query: &[],
        body: None,
        ok: (
            "200",
            "Ready or degraded (some backend failing)",
            Some("Ready"),
        ),
        errors: &["503"],
    },
    Op {
        method: "get",
        path: "/metrics",
        id: "metrics",
        summary: "Prometheus metrics (text exposition format 0.0.4)",
        auth: Auth::None,
        query: &[],
        body: None,
        ok: ("200", "Metrics", None),
        errors: &[],
    },
    Op {
        method: "get",
        path: "/openapi.json",
        id: "openapi",
        summary: "This document",
        auth: Auth::None,
        query: &[],
        body: None,
        ok: ("200", "OpenAPI 3.1 document", None),
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/credentials",
        id: "listCredentials",
        summary: "List credential metadata (never values). A toolkit key sees only its \
                  toolkit's credentials, without locators.",
        auth: Auth::Either,
        query: &[
            ("api_id", "string", "Only credentials for this API"),
            (
                "toolkit",
                "string",
                "Only credentials visible to this toolkit (a toolkit key: only its own)",
            ),
        ],
        body: None,
        ok: ("200", "Credentials", Some("CredentialList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "post",
        path: "/v1/credentials",
        id: "createCredential",
        summary: "Create a credential's metadata (set its value with PUT …/value)",
        auth: Auth::Admin,
        query: &[],
        body: Some("CredentialInput"),
        ok: ("201", "Created", Some("Credential")),
        errors: WRITE_ERRORS,
    },
    Op {
        method: "get",
        path: "/v1/credentials/{id}",
        id: "getCredential",
        summary: "One credential's metadata (never its value)",
        auth: Auth::Either,
        query: &[],
        body: None,
        ok: ("200", "The credential", Some("Credential")),
        errors: READ_ERRORS,
    },
    Op {
        method: "put",
        path: "/v1/credentials/{id}",
        id: "putCredential",
        summary: "Create or replace a credential's metadata (its backend cannot change)",
        auth: Auth::Admin,
        query: &[],
        body: Some("CredentialInput"),
        ok: ("200", "Updated (201 when created)", Some("Credential")),
        errors: WRITE_ERRORS,
    },
    Op {
        method: "delete",
        path: "/v1/credentials/{id}",
        id: "deleteCredential",
        summary: "Remove a credential; a Fernet value goes with it, another backend's \
                  value only with delete_value=true",
        auth: Auth::Admin,
        query: &[(
            "delete_value",
            "boolean",
            "Also delete the value in a non-Fernet backend",
        )],
        body: None,
        ok: ("204", "Removed", None),
        errors: &["400", "401", "403", "404", "502", "503", "504"],
    },
    Op {
        method: "get",
        path: "/v1/credentials/{id}/value",
        id: "resolveValue",
        summary: "Resolve a credential's value (toolkit key; the credential must be bound \
                  to the key's toolkit)",
        auth: Auth::Toolkit,
        query: &[],
        body: None,
        ok: ("200", "The value", Some("ResolvedCredential")),
        errors: RESOLVE_ERRORS,
    },
    Op {
        method: "put",
        path: "/v1/credentials/{id}/value",
        id: "storeValue",
        summary: "Store a credential's value through the backend that holds it",
        auth: Auth::Admin,
        query: &[],
        body: Some("ValueInput"),
        ok: ("204", "Stored", None),
        errors: &[
            "400", "401", "403", "404", "413", "415", "501", "502", "503", "504",
        ],
    },
    Op {
        method: "delete",
        path: "/v1/credentials/{id}/value",
        id: "deleteValue",
        summary: "Delete a credential's value in its backend (the metadata stays)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("204", "Deleted", None),
        errors: &["401", "403", "404", "501", "502", "503", "504"],
    },
    Op {
        method: "get",
        path: "/v1/toolkits",
        id: "listToolkits",
        summary: "List toolkits",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "Toolkits", Some("ToolkitList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "post",
        path: "/v1/toolkits",
        id: "createToolkit",
        summary: "Create a toolkit",
        auth: Auth::Admin,
        query: &[],
        body: Some("ToolkitInput"),
        ok: ("201", "Created", Some("Toolkit")),
        errors: WRITE_ERRORS,
    },
    Op {
        method: "get",
        path: "/v1/toolkits/{toolkit}",
        id: "getToolkit",
        summary: "One toolkit",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "The toolkit", Some("Toolkit")),
        errors: READ_ERRORS,
    },
    Op {
        method: "put",
        path: "/v1/toolkits/{toolkit}",
        id: "putToolkit",
        summary: "Create or update a toolkit",
        auth: Auth::Admin,
        query: &[],
        body: Some("ToolkitInput"),
        ok: ("200", "Updated (201 when created)", Some("Toolkit")),
        errors: WRITE_ERRORS,
    },
    Op {
        method: "delete",
        path: "/v1/toolkits/{toolkit}",
        id: "deleteToolkit",
        summary: "Remove a toolkit with its bindings and keys (not `default`)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("204", "Removed", None),
        errors: &["401", "403", "404", "422"],
    },
    Op {
        method: "get",
        path: "/v1/toolkits/{toolkit}/credentials",
        id: "listToolkitCredentials",
        summary: "Credentials the toolkit may use (metadata)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "Credentials", Some("CredentialList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "put",
        path: "/v1/toolkits/{toolkit}/credentials/{credential}",
        id: "bind",
        summary: "Let the toolkit use a credential (the credential id may contain `/`)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("201", "Bound (200 when it already was)", Some("Binding")),
        errors: &["401", "403", "404", "422"],
    },
    Op {
        method: "delete",
        path: "/v1/toolkits/{toolkit}/credentials/{credential}",
        id: "unbind",
        summary: "Stop the toolkit using a credential",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("204", "Unbound", None),
        errors: &["401", "403", "404"],
    },
    Op {
        method: "get",
        path: "/v1/toolkits/{toolkit}/keys",
        id: "listKeys",
        summary: "The toolkit's keys (metadata; never the keys)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "Keys", Some("KeyList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "post",
        path: "/v1/toolkits/{toolkit}/keys",
        id: "createKey",
        summary: "Issue a toolkit key; the key is in this response only",
        auth: Auth::Admin,
        query: &[],
        body: Some("KeyInput"),
        ok: ("201", "Created", Some("KeyCreated")),
        errors: WRITE_ERRORS,
    },
    Op {
        method: "delete",
        path: "/v1/toolkits/{toolkit}/keys/{key_id}",
        id: "revokeKey",
        summary: "Revoke a toolkit key (it answers 401 from then on)",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("204", "Revoked", None),
        errors: &["401", "403", "404"],
    },
    Op {
        method: "get",
        path: "/v1/toolkits/{toolkit}/apis/{api_id}/credentials",
        id: "resolveApi",
        summary: "Resolve every credential the toolkit may use for an API, each with its \
                  value or its own error (toolkit key of that toolkit)",
        auth: Auth::Toolkit,
        query: &[],
        body: None,
        ok: ("200", "Resolved credentials", Some("ApiResolution")),
        errors: &["401", "403", "404", "429", "502"],
    },
    Op {
        method: "get",
        path: "/v1/bindings",
        id: "listBindings",
        summary: "Every (toolkit, credential) binding",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "Bindings", Some("BindingList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "get",
        path: "/v1/backends",
        id: "listBackends",
        summary: "Backends: name, kind, health, granted outbound hosts, limits, cache",
        auth: Auth::Admin,
        query: &[],
        body: None,
        ok: ("200", "Backends", Some("BackendList")),
        errors: READ_ERRORS,
    },
    Op {
        method: "get",
        path: "/v1/audit",
        id: "listAudit",
        summary: "Audit events, newest first",
        auth: Auth::Admin,
        query: &[
            ("toolkit", "string", "Toolkit id"),
            ("credential", "string", "Credential id"),
            (
                "action",
                "string",
                "e.g. credential.resolve, credential.create, key.revoke",
            ),
            (
                "outcome",
                "string",
                "ok, unchanged, cancelled or an error code",
            ),
            ("actor", "string", "admin, toolkit or cli"),
            ("key_id", "string", "Toolkit key or admin token id"),
            (
                "since",
                "string",
                "RFC 3339 UTC time, inclusive (2026-12-03 works)",
            ),
            ("until", "string", "RFC 3339 UTC time, exclusive"),
            ("before_id", "integer", "Page: events older than this id"),
            ("limit", "integer", "1..=1000, default 100"),
        ],
        body: None,
        ok: ("200", "Events", Some("AuditPage")),
        errors: READ_ERRORS,
    },
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn status_text(code: &str) -> &'static str {
    match code {
        "400" => "Bad request (malformed JSON, unknown or invalid field, bad path or query)",
        "401" => "Missing, invalid or revoked token",
        "403" => "Valid token that may not do this",
        "404" => "Not found",
        "409" => "Conflict",
        "413" => "Body too large",
        "415" => "Body is not application/json",
        "422" => "Validation failed",
        "429" => "Toolkit over its rate limit (see Retry-After)",
        "501" => "The backend does not support the operation",
        "502" => "The backend failed or was denied upstream",
        "503" => "The backend is unavailable or misconfigured",
        "504" => "Timed out, or the backend was stopped at a sandbox limit",
        _ => "Error",
    }
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = Vec::new();
    for segment in op.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let description = match name {
                "id" => {
                    "Credential id. May contain `/` and `.`, sent as is: a final literal \
                     `/value` segment selects the value. Percent-encode `%` as `%25`, and \
                     the last `/` of an id that ends in `/value` as `%2F`."
                }
                "credential" => "Credential id; may contain `/`, sent as is",
                _ => "A single path segment; percent-encode `/` as `%2F`",
            };
            params.push(json!({
                "name": name, "in": "path", "required": true,
                "description": description, "schema": {"type": "string"}
            }));
        }
    }
    for (name, ty, description) in op.query {
        params.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": {"type": ty}
        }));
    }
    let mut responses = Map::new();
    let (code, description, schema) = op.ok;
    let mut ok = json!({"description": description});
    if let Some(schema) = schema {
        ok["content"] = json!({"application/json": {"schema": schema_ref(schema)}});
    } else if op.path == "/metrics" {
        ok["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
    } else if op.path == "/openapi.json" {
        ok["content"] = json!({"application/json": {"schema": {"type": "object"}}});
    }
    responses.insert(code.into(), ok);
    for code in op.errors {
        responses.insert(
            (*code).into(),
            json!({
                "description": status_text(code),
                "content": {"application/json": {"schema": schema_ref("Error")}}
            }),
        );
    }
    let mut out = json!({
        "operationId": op.id,
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
    });
    let security = match op.auth {
        Auth::None => json!([]),
        Auth::Admin => json!([{"adminToken": []}]),
        Auth::Toolkit => json!([{"toolkitKey": []}]),
        Auth::Either => json!([{"adminToken": []}, {"toolkitKey": []}]),
    };
    out["security"] = security;
    if let Some(body) = op.body {
        out["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema_ref(body)}}
        });
    }
    out
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let opt = |t: &str| json!({"type": [t, "null"]});
    let credential_props = json!({
        "id": s("string"), "label": s("string"), "api_id": opt("string"),
        "auth_type": s("string"), "identity": opt("string"), "backend": s("string"),
        "locator": opt("string"), "description": opt("string"),
        "attributes": {"type": "object"},
        "created_at": s("string"), "updated_at": s("string")
    });
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": ERROR_CODES},
                    "message": s("string")
                }
            }}
        },
        "Health": {"type": "object", "properties": {"status": s("string")}},
        "Ready": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ready", "degraded", "unavailable"]},
            "catalog": s("string"),
            "backends": {"type": "array", "items": {"type": "object", "properties": {
                "name": s("string"), "healthy": s("boolean"), "error": s("string")}}}
        }},
        "Credential": {"type": "object", "properties": credential_props,
                       "required": ["id", "label", "auth_type", "backend"]},
        "CredentialList": {"type": "object", "properties": {
            "credentials": {"type": "array", "items": schema_ref("Credential")}}},
        "CredentialInput": {"type": "object", "additionalProperties": false,
            "required": ["label", "auth_type"],
            "properties": {
                "id": {"type": "string", "description": "Required on POST"},
                "label": s("string"), "api_id": opt("string"), "auth_type": s("string"),
                "identity": opt("string"),
                "backend": {"type": ["string", "null"], "description": "Default: the server's default backend"},
                "locator": opt("string"), "description": opt("string"),
                "attributes": {"type": "object"}
            }},
        "ValueInput": {"type": "object", "additionalProperties": false, "required": ["value"],
            "properties": {"value": {"type": "string", "minLength": 1,
                                     "description": "At most 1 MiB of UTF-8"}}},
        "ResolvedCredential": {"type": "object", "properties": {
            "id": s("string"), "label": s("string"), "api_id": opt("string"),
            "auth_type": s("string"), "identity": opt("string"), "backend": s("string"),
            "attributes": {"type": "object"},
            "value": {"type": "string", "description": "Present when resolved"},
            "error": {"type": "object", "description": "Present when this credential failed",
                      "properties": {"code": {"type": "string", "enum": ERROR_CODES},
                                     "message": s("string")}}
        }},
        "ApiResolution": {"type": "object", "properties": {
            "toolkit": s("string"), "api_id": s("string"),
            "credentials": {"type": "array", "items": schema_ref("ResolvedCredential")}}},
        "Toolkit": {"type": "object", "properties": {
            "id": s("string"), "name": s("string"), "description": opt("string"),
            "credential_count": s("integer"), "created_at": s("string"), "updated_at": s("string")}},
        "ToolkitList": {"type": "object", "properties": {
            "toolkits": {"type": "array", "items": schema_ref("Toolkit")}}},
        "ToolkitInput": {"type": "object", "additionalProperties": false, "properties": {
            "id": {"type": "string", "description": "Required on POST"},
            "name": s("string"), "description": opt("string")}},
        "Binding": {"type": "object", "properties": {"toolkit": s("string"), "credential": s("string")}},
        "BindingList": {"type": "object", "properties": {
            "bindings": {"type": "array", "items": schema_ref("Binding")}}},
        "KeyInput": {"type": "object", "additionalProperties": false, "properties": {
            "label": s("string"),
            "allowed_cidrs": {"type": "array", "items": s("string"), "maxItems": 64,
                              "description": "Client networks allowed to use the key; empty: any"}}},
        "Key": {"type": "object", "properties": {
            "id": s("string"), "toolkit": s("string"), "label": opt("string"),
            "allowed_cidrs": {"type": "array", "items": s("string")},
            "created_at": s("string"), "revoked_at": opt("string")}},
        "KeyCreated": {"allOf": [schema_ref("Key"), {"type": "object", "properties": {
            "key": {"type": "string", "description": "The key (tk_…); shown only here"}}}]},
        "KeyList": {"type": "object", "properties": {
            "keys": {"type": "array", "items": schema_ref("Key")}}},
        "Backend": {"type": "object", "properties": {
            "name": s("string"), "kind": s("string"), "default": s("boolean"),
            "healthy": s("boolean"), "detail": opt("string"), "error": opt("string"),
            "allowed_outbound": {"type": "array", "items": s("string")},
            "allow_private_networks": s("boolean"),
            "limits": {"type": ["object", "null"]}, "isolation": opt("string"),
            "cache": {"type": ["object", "null"]}, "bound_credentials": s("integer")}},
        "BackendList": {"type": "object", "properties": {
            "backends": {"type": "array", "items": schema_ref("Backend")}}},
        "AuditEvent": {"type": "object", "properties": {
            "id": s("integer"), "at": s("string"), "actor": s("string"),
            "key_id": opt("string"), "toolkit": opt("string"), "action": s("string"),
            "credential_id": opt("string"), "api_id": opt("string"), "backend": opt("string"),
            "target": opt("string"), "outcome": s("string"), "status": opt("integer"),
            "latency_us": opt("integer"), "client_ip": opt("string"), "request_id": opt("string")}},
        "AuditPage": {"type": "object", "properties": {
            "events": {"type": "array", "items": schema_ref("AuditEvent")},
            "next_before_id": opt("integer")}}
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let item = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        item[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "airlock",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Credential resolution for agents and services. Management \
                endpoints need the admin token; resolution endpoints a toolkit key. \
                Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The admin token (AIRLOCK_ADMIN_TOKEN, or at_… printed at first start)"},
                "toolkitKey": {"type": "http", "scheme": "bearer",
                               "description": "A toolkit key (tk_…), from `airlock toolkits key create`"}
            }
        }
    })
}

/// The document as served (rendered once).
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| document().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::router::ROUTES;
    use super::*;

    #[test]
    fn documents_exactly_the_routes_the_router_serves() {
        let doc = document();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
