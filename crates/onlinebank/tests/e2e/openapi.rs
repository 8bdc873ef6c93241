//! The API's contract as the bank serves it: `GET /api/v1/openapi.json` is an OpenAPI 3.1
//! document with the main routes, and `GET /api/docs` is its reference page, under the page's
//! policy (its only script is the bank's own file).

use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn the_bank_serves_its_openapi_document_and_reference_page() {
    let bank = TestBank::start().await;
    let client = reqwest::Client::new();

    let answer = client
        .get(format!("{}/api/v1/openapi.json", bank.base))
        .send()
        .await
        .expect("GET openapi.json");
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let document: Value = answer.json().await.expect("JSON");
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = &document["paths"];
    for (path, method) in [
        ("/api/v1/customers", "post"),
        ("/api/v1/sessions", "post"),
        ("/api/v1/sessions/current", "delete"),
        ("/api/v1/requests", "post"),
        ("/api/v1/requests", "get"),
        ("/api/v1/requests/{id}", "get"),
        ("/api/v1/accounts", "get"),
        ("/api/v1/accounts/{account_no}", "get"),
        ("/api/v1/accounts/{account_no}/transactions", "get"),
        ("/api/v1/accounts/{account_no}/statement", "get"),
        ("/requests", "post"),
        ("/requests", "get"),
        ("/mypages/search/findByAccountNo", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/api/docs", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is missing"
        );
    }
    let submit = &paths["/api/v1/requests"]["post"];
    assert!(submit["responses"]["202"]["headers"]["Location"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let page = client
        .get(format!("{}/api/docs", bank.base))
        .send()
        .await
        .expect("GET /api/docs");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/assets/docs.js\""), "{html}");
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    let script = client
        .get(format!("{}/assets/docs.js", bank.base))
        .send()
        .await
        .expect("GET docs.js");
    assert_eq!(script.status(), 200);
    assert!(script
        .text()
        .await
        .unwrap()
        .contains("/api/v1/openapi.json"));
}

/// `TRACE` and `QUERY` are HTTP's own methods, known and served on no route: 405 with `Allow`,
/// as any method a route does not take (schemathesis found them answered 501, which is for a
/// method the server does not recognise). A made-up method stays 501.
#[tokio::test]
async fn trace_and_query_are_known_methods_answered_405() {
    let bank = TestBank::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/openapi.json", bank.base);
    for method in ["TRACE", "QUERY"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = client
            .request(method.clone(), &url)
            .send()
            .await
            .expect("call");
        assert_eq!(answer.status(), 405, "{method}");
        assert!(answer.headers().contains_key("allow"), "{method}");
        let body: Value = answer.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{method}");
    }
    let made_up = reqwest::Method::from_bytes(b"BREW").unwrap();
    let answer = client.request(made_up, &url).send().await.expect("BREW");
    assert_eq!(answer.status(), 501);
}
