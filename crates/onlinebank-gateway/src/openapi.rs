//! The bank's public contract as an OpenAPI 3.1 document (`GET /api/v1/openapi.json`), and its
//! reference page (`GET /api/docs`), both built into the binary.
//!
//! The gateway's own handlers (legacy, page, document) carry their `#[utoipa::path]` where they
//! are; the routes it forwards to a role, and the health routes every listener adds, are described
//! by the functions of [`forwarded`] (the gateway serves them through one proxy handler, which
//! cannot carry one description per path). Every answer's schema is in [`schemas`]. The error
//! codes are [`onlinebank_core::ErrorCode`]'s own list, and the codes any route may answer are
//! added to every operation by [`AnyRoute`]; the route table test (below) holds the document and
//! the router together.

mod forwarded;
pub(crate) mod schemas;

use crate::page::Asset;
use crate::GatewayState;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use onlinebank_core::{ErrorCode, Reason};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// Where the document is served.
pub(crate) const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// Where its reference page is served.
pub(crate) const PAGE_PATH: &str = "/api/docs";
/// The reference page's script (the page's policy allows no inline script).
pub(crate) const SCRIPT_PATH: &str = "/assets/docs.js";
/// The reference page's style.
pub(crate) const STYLE_PATH: &str = "/assets/docs.css";

const DOCS_HTML: &str = include_str!("../assets/docs.html");
const DOCS_JS: &str = include_str!("../assets/docs.js");
const DOCS_CSS: &str = include_str!("../assets/docs.css");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onlinebank",
        description = "The online bank's public HTTP API, served by the gateway (docs/api.md). \
                       Every error is `{\"error\":{\"code\",\"message\"}}` with the status of its \
                       code; money amounts are integers (won). Answers of no operation: 404 \
                       `not_found` (no such route), 405 `method_not_allowed` (a method the route \
                       does not take; `Allow` lists those it does), 501 `not_implemented` (a \
                       method no route takes), 403 `forbidden` (an internal endpoint without its \
                       token; the gateway never routes them)."
    ),
    paths(
        forwarded::sign_up,
        forwarded::log_in,
        forwarded::log_out,
        forwarded::submit_request,
        forwarded::list_requests,
        forwarded::show_request,
        forwarded::list_accounts,
        forwarded::show_account,
        forwarded::account_transactions,
        forwarded::account_statement,
        forwarded::ping,
        forwarded::live,
        forwarded::ready,
        crate::legacy::submit,
        crate::legacy::list,
        crate::legacy::show,
        crate::legacy::mypage,
        crate::legacy::profile,
        crate::legacy::find_by_account_no,
        crate::index,
        crate::index_html,
        crate::script,
        crate::style,
        document,
        page,
        script,
        style,
    ),
    // Parameters' schemas are not collected from the paths as bodies' are.
    components(schemas(schemas::StatementFormat)),
    modifiers(&Security, &AnyRoute),
    tags(
        (name = "customers", description = "Sign-up, login and logout (auth)"),
        (name = "requests", description = "The write path, and reads by request (request, mypage)"),
        (name = "accounts", description = "Reads from mypage's read model"),
        (name = "legacy", description = "The original Spring system's endpoints"),
        (name = "health", description = "Liveness and readiness"),
        (name = "page", description = "The web page, its assets, this document and its reference page"),
    )
)]
struct ApiDoc;

/// The security schemes the operations name: a bank token, and a legacy client's credentials.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The answers any route may give, whatever it is (docs/api.md: "(any route)"): a request the
/// server refuses before it reaches the route, or a process that cannot serve yet.
const ANY_ROUTE: [(u16, &str); 6] = [
    (400, "`invalid_path` (a dot segment, encoded slash, bad UTF-8 or control character in the path), `invalid_framing` (the request breaks HTTP/1.1 framing)"),
    (408, "`request_timeout`: the body did not arrive whole within 10 s"),
    (414, "`uri_too_long`: the request line is over 8 KiB"),
    (431, "`headers_too_large`: the request head is over its limits"),
    (500, "`internal`: an unexpected fault; safe to retry"),
    (503, "`starting`: the process has not finished starting; `storage_unavailable`; retry shortly"),
];

/// Adds [`ANY_ROUTE`]'s answers to every operation: to a status it already documents, the codes
/// are appended to its description.
struct AnyRoute;

impl Modify for AnyRoute {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for (status, codes) in ANY_ROUTE {
                    add_error(operation, status, codes);
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn add_error(operation: &mut Operation, status: u16, codes: &str) {
    use utoipa::openapi::RefOr;
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(response)) => {
            response.description = format!("{}; {codes}", response.description);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let error = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            let response = ResponseBuilder::new()
                .description(codes)
                .content("application/json", error)
                .build();
            responses.insert(status.to_string(), RefOr::T(response));
        }
    }
}

/// Every error code the API answers, as the wire spells it: [`ErrorCode`]'s own list (a reason
/// as it is answered: `not_owner` is never told).
pub(crate) fn error_codes() -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = Reason::ALL
        .into_iter()
        .filter(|reason| reason.answered() == *reason)
        .map(ErrorCode::Reason)
        .chain(ErrorCode::PROTOCOL)
        .map(ErrorCode::as_str)
        .collect();
    codes.dedup();
    codes
}

/// The document, as the gateway serves it.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The document and its reference page, rendered once at start.
pub(crate) struct Docs {
    document: Asset,
    page: Asset,
    script: Asset,
    style: Asset,
}

impl Docs {
    pub(crate) fn new() -> anyhow::Result<Docs> {
        Ok(Docs {
            document: Asset::new(openapi().to_json()?, "application/json", None)?,
            page: Asset::new(DOCS_HTML.into(), "text/html; charset=utf-8", None)?,
            script: Asset::new(DOCS_JS.into(), "text/javascript; charset=utf-8", None)?,
            style: Asset::new(DOCS_CSS.into(), "text/css; charset=utf-8", None)?,
        })
    }
}

/// The bank's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "page", security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 304, description = "Not modified (`If-None-Match` named this version)"),
    )
)]
pub(crate) async fn document(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    state.docs.document.respond(&headers)
}

/// The API's reference page (lists every operation of the document).
#[utoipa::path(get, path = "/api/docs", tag = "page", security(()),
    responses(
        (status = 200, description = "The reference page", content_type = "text/html", body = String),
        (status = 304, description = "Not modified"),
    )
)]
pub(crate) async fn page(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    state.docs.page.respond(&headers)
}

/// The reference page's script.
#[utoipa::path(get, path = "/assets/docs.js", tag = "page", security(()),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
        (status = 304, description = "Not modified"),
    )
)]
pub(crate) async fn script(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    state.docs.script.respond(&headers)
}

/// The reference page's style.
#[utoipa::path(get, path = "/assets/docs.css", tag = "page", security(()),
    responses(
        (status = 200, description = "The style sheet", content_type = "text/css", body = String),
        (status = 304, description = "Not modified"),
    )
)]
pub(crate) async fn style(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    state.docs.style.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every (method, path) the document describes.
    fn documented() -> BTreeSet<(String, String)> {
        let document = openapi();
        let mut found = BTreeSet::new();
        for (path, item) in document.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    found.insert((method.to_owned(), path.clone()));
                }
            }
        }
        found
    }

    /// The documented paths a served route covers: itself, or for a wildcard route
    /// (`/x/{*rest}`) every documented path under `/x/`.
    fn covered_by(method: &str, served: &str, documented: &BTreeSet<(String, String)>) -> usize {
        let under = served.split_once("{*").map(|(prefix, _)| prefix);
        documented
            .iter()
            .filter(|(doc_method, doc_path)| {
                doc_method == method
                    && match under {
                        Some(prefix) => doc_path.starts_with(prefix),
                        None => doc_path == served,
                    }
            })
            .count()
    }

    #[test]
    fn every_served_route_is_documented() {
        let documented = documented();
        let missing: Vec<_> = crate::served_routes()
            .into_iter()
            .filter(|route| covered_by(route.method.as_str(), route.path, &documented) == 0)
            .collect();
        assert!(
            missing.is_empty(),
            "served but not in the document: {missing:?}"
        );
    }

    #[test]
    fn every_documented_route_is_served() {
        let served = crate::served_routes();
        let unserved: Vec<_> = documented()
            .into_iter()
            .filter(|(method, path)| {
                !served.iter().any(|route| {
                    let one = BTreeSet::from([(method.clone(), path.clone())]);
                    route.method.as_str() == method && covered_by(method, route.path, &one) == 1
                })
            })
            .collect();
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }

    /// Every `$ref` in `value`.
    fn references(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(object) => {
                if let Some(serde_json::Value::String(target)) = object.get("$ref") {
                    found.push(target.clone());
                }
                object.values().for_each(|inner| references(inner, found));
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|inner| references(inner, found))
            }
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let value: serde_json::Value = serde_json::from_str(&openapi().to_json().unwrap()).unwrap();
        let mut found = Vec::new();
        references(&value, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or(&target);
            assert!(
                value["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
    }

    #[test]
    fn a_wildcard_route_needs_a_documented_path_under_it() {
        let documented = BTreeSet::from([("GET".to_owned(), "/api/v1/accounts".to_owned())]);
        assert_eq!(
            covered_by("GET", "/api/v1/accounts/{*rest}", &documented),
            0
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_error_code() {
        let json = openapi().to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(value["openapi"].as_str().unwrap().starts_with("3.1"));
        let codes = &value["components"]["schemas"]["ErrorCode"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), error_codes().len());
        for code in error_codes() {
            assert!(
                json.contains(&format!("`{code}`")),
                "{code} is named by no response"
            );
        }
        let submit = &value["paths"]["/api/v1/requests"]["post"];
        assert!(
            submit["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|parameter| parameter["name"] == "Idempotency-Key"
                    && parameter["in"] == "header")
        );
        assert!(submit["responses"]["202"]["headers"]["Location"].is_object());
        let schemes = &value["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["basic"]["scheme"], "basic");
    }
}
