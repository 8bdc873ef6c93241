//! The customer's web page: its headers and languages over plain HTTP, and the whole customer
//! journey in a real browser (Debian's Chromium driven by playwright-core, tests/browser/web.mjs)
//! at phone and desktop sizes in Korean and English.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("GET")
}

#[tokio::test]
async fn the_page_speaks_the_customers_language_under_a_strict_policy() {
    let bank = TestBank::start().await;
    let page = |headers: &'static [(&'static str, &'static str)]| {
        let url = format!("{}/", bank.base);
        async move { get(&url, headers).await }
    };

    let en = page(&[]).await;
    assert_eq!(en.status(), 200);
    let headers = en.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["content-language"], "en");
    assert!(headers["vary"]
        .to_str()
        .unwrap()
        .contains("Accept-Language"));
    let body = en.text().await.unwrap();
    assert!(body.contains("<html lang=\"en\">"));
    // No inline script: the only <script> that runs is the bank's own file.
    assert_eq!(
        body.matches("<script").count(),
        2,
        "the data block and app.js"
    );
    assert!(body.contains("<script type=\"application/json\" id=\"messages\">"));
    assert!(body.contains("<script src=\"/assets/app.js?v="));
    assert!(!body.contains(" style=\""), "no inline style");

    let ko = page(&[("accept-language", "ko-KR,ko;q=0.9,en-US;q=0.8")]).await;
    assert_eq!(ko.headers()["content-language"], "ko");
    let body = ko.text().await.unwrap();
    assert!(body.contains("<html lang=\"ko\">"));
    assert!(body.contains("<h2>로그인</h2>"), "Korean texts");
    assert!(body.contains("\"money\":\"{n}원\""), "amounts in 원");

    // The switch's cookie beats Accept-Language.
    let chosen = page(&[
        ("accept-language", "ko-KR"),
        ("cookie", "onlinebank_lang=en"),
    ])
    .await;
    assert_eq!(chosen.headers()["content-language"], "en");

    // The script and the style: right types, revalidated, 304 on a matching ETag.
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let url = format!("{}{path}", bank.base);
        let first = get(&url, &[]).await;
        assert_eq!(first.status(), 200, "{path}");
        assert!(
            first.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert_eq!(first.headers()["x-content-type-options"], "nosniff");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        let again = get(&url, &[("if-none-match", etag.as_str())]).await;
        assert_eq!(again.status(), 304, "{path}");
    }
    // API answers are never sniffed either.
    let api = get(&format!("{}/api/v1/accounts", bank.base), &[]).await;
    assert_eq!(api.status(), 401);
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test]
#[ignore = "needs Chromium and playwright-core (npm ci in tests/browser): run ./.ci/run"]
async fn a_customer_banks_in_a_real_browser_on_a_phone_and_a_desktop_in_korean_and_english() {
    let chromium = std::env::var("ONLINEBANK_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: apt-get install chromium fonts-noto-cjk (./.ci/run does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: npm ci --prefix {} (./.ci/run does)",
        browser_dir().display()
    );
    let bank = TestBank::start().await;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    let _ = std::fs::remove_dir_all(&out);
    println!("web: screenshots of every step go to {}", out.display());
    let mut command = tokio::process::Command::new("node");
    command
        .arg(browser_dir().join("web.mjs"))
        .args(["--url", &bank.base, "--chromium", &chromium])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the browser test finished within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nscreenshots: {}\nbank log (last lines):\n{}",
        output.status,
        out.display(),
        bank.log().lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
